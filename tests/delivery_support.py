"""Helpers of the delivery tests: a written data root copied, a sandbox around it, what each side holds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb

from transforms.sandbox.pki import SandboxFiles, free_port, init_sandbox
from transforms.sandbox.registry import accepted_notifications
from transforms.sandbox.server import running_sandbox

KTT = str(Path(sys.executable).with_name("ktt"))


def ktt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([KTT, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ})


def copy_written(written: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(written, root, ignore=shutil.ignore_patterns("sandbox", "reports", ".dagster"))
    return root


def setup_sandbox(root: Path, tmp_path: Path, timeout_s: float = 10.0, **settings: object) -> SandboxFiles:
    """`ktt sandbox init` for `root` (secrets under tmp_path), with delivery settings overridden."""
    files = init_sandbox(root, port=free_port(), secrets=tmp_path / "secrets", timeout_s=timeout_s, parallel=3)
    toml = root / "config" / "delivery.toml"
    rows = [r for r in toml.read_text().splitlines() if r.split(" =")[0] not in settings]
    # the file ends with its [kneik-api] table: the settings go there
    toml.write_text("\n".join([*rows, *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]) + "\n")
    return files


def write_faults(root: Path, **faults: object) -> None:
    path = root / "sandbox" / "faults.json"
    path.write_text(json.dumps(faults))
    stamp = path.stat().st_mtime + 1  # a new mtime even within the file system's time resolution
    os.utime(path, (stamp, stamp))


@contextlib.contextmanager
def sandbox(root: Path) -> Iterator[subprocess.Popen]:
    with running_sandbox(root, log=root / "sandbox" / "sandbox.log") as process:
        yield process


def ledger_notifications(root: Path, kommune: str | None = None, last_seq: dict[str, int] | None = None) -> list:
    """(kommune, seq, guid, previous_guid, status, ref_guid, event_type, event_guid) by municipality and number."""
    with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT kommune, seq, guid, previous_guid, status, ref_guid, event_type, event_guid "
                           "FROM notifications ORDER BY kommune, seq").fetchall()
    if last_seq is not None:
        rows = [r for r in rows if r[1] <= last_seq.get(r[0], 0)]
    return [r for r in rows if kommune is None or r[0] == kommune]


def sandbox_notifications(root: Path) -> list:
    """The sandbox's accepted notifications, per municipality in the order it accepted them."""
    rows = accepted_notifications(root / "sandbox")
    return sorted(rows, key=lambda r: r[0])  # stable: keeps the acceptance order within a municipality


def accepted_count(root: Path) -> int:
    path = root / "sandbox" / "registry.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        return db.execute("SELECT count(*) FROM accepted").fetchone()[0]


def delivery_state(root: Path) -> list[tuple]:
    with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
        return con.execute("SELECT kommune, first_seq, last_seq, state, ref_id, message_id FROM delivery_state "
                           "WHERE kind = 'stream' ORDER BY kommune, first_seq").fetchall()


def assert_exactly_once_in_order(root: Path) -> dict[str, int]:
    """The sandbox holds each municipality's notifications 1..n once, in order, equal to the ledger's, and the
    ledger's delivery state says accepted for exactly the messages the sandbox accepted, with its refIds."""
    held = sandbox_notifications(root)
    last: dict[str, int] = {}
    for row in held:
        assert row[1] == last.get(row[0], 0) + 1, f"{row[0]}: notification {row[1]} out of order or repeated"
        last[row[0]] = row[1]
    assert held == ledger_notifications(root, last_seq=last)
    with contextlib.closing(sqlite3.connect(root / "sandbox" / "registry.sqlite")) as db:
        accepted = {(k, f): (ref, mid) for k, f, ref, mid in db.execute(
            "SELECT kommune, first_seq, ref_id, message_id FROM accepted")}
    state = delivery_state(root)
    ledger_accepted = {(k, f): (ref, mid) for k, f, _, s, ref, mid in state if s == "accepted"}
    assert ledger_accepted == accepted
    assert all(s != "accepted" for k, f, _, s, _, _ in state if (k, f) not in accepted)
    return last
