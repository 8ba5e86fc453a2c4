"""Running multi-statement SQL scripts with named parameters in DuckDB."""

from __future__ import annotations

import logging
import re
import resource
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
        started, cpu = time.perf_counter(), _cpu_seconds()
        con.execute(statement, used or None)
        # CPU seconds of all DuckDB threads next to the wall time: on a shared machine the wall time
        # says more about the neighbours than about the statement
        log.debug("%.2f s (cpu %.2f s)  %s", time.perf_counter() - started, _cpu_seconds() - cpu,
                  " ".join(statement.split())[:90])


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
