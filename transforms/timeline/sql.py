"""Running multi-statement SQL scripts with named parameters in DuckDB."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import duckdb

_PARAM = re.compile(r"\$([a-z_]+)")
log = logging.getLogger(__name__)


def run_script(con: duckdb.DuckDBPyConnection, script: str, params: dict[str, Any] | None = None) -> None:
    """Execute each statement of `script` with the parameters it names (DuckDB binds them per statement)."""
    params = params or {}
    for statement in (s.strip() for s in script.split(";\n")):
        if not statement or all(line.strip().startswith("--") for line in statement.splitlines()):
            continue
        used = {name: params[name] for name in _PARAM.findall(statement)}
        started = time.perf_counter()
        con.execute(statement, used or None)
        log.debug("%.2f s  %s", time.perf_counter() - started, " ".join(statement.split())[:90])
