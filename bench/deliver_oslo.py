"""Benchmark: the `oslo` nine-year backfill delivered to the sandbox registry, both sides on this machine.

Usage: python bench/deliver_oslo.py [--data-root DIR] [--prepare]

DIR (default data/bench-oslo) must hold a backfilled oslo world; --prepare makes one first if it has no
ledger (`ktt generate --scale oslo`, then `ktt backfill`). Each run starts from nothing delivered: the
ledger's delivery rows and the sandbox's memory are cleared, the sandbox's PKI and `config/delivery.toml`
are (re)written by `ktt sandbox init`, the sandbox is started on a free loopback port, and the command a
user runs, `ktt deliver`, is timed as a child process: wall time, messages per second, its peak RSS
(the delivering client) and its CPU seconds, and the sandbox's CPU seconds. Goal: under 60 s.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KTT = str(Path(sys.executable).with_name("ktt"))


def prepare(data_root: Path) -> None:
    for args in (["generate", "--scale", "oslo"], ["backfill"]):
        print(f"ktt {' '.join(args)} ...", flush=True)
        subprocess.run([KTT, *args, "--data-root", str(data_root)], check=True, stdout=subprocess.DEVNULL)


def reset(data_root: Path) -> int:
    """Nothing delivered: delivery rows gone, the sandbox's memory gone; returns the messages to deliver."""
    import duckdb

    for name in ("registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm"):
        (data_root / "sandbox" / name).unlink(missing_ok=True)
    with duckdb.connect(str(data_root / "ledger" / "ledger.duckdb")) as con:
        if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'deliveries'").fetchone()[0]:
            con.execute("DELETE FROM deliveries")
        return con.execute("SELECT count(*) FROM written_days WHERE file IS NOT NULL").fetchone()[0]


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a running process and of its running descendants (the sandbox's worker processes)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pending += [int(c) for c in children]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "bench-oslo")
    parser.add_argument("--prepare", action="store_true", help="generate and backfill the oslo world if absent")
    args = parser.parse_args()
    os.environ.setdefault("KTT_KEY_FILE", str(Path(tempfile.gettempdir()) / "ktt-bench-keys.json"))
    os.environ["KTT_ALLOW_SYNTHETIC_IDS"] = "1"
    data_root = args.data_root.resolve()
    if not (data_root / "ledger" / "ledger.duckdb").exists():
        if not args.prepare:
            sys.exit(f"{data_root} has no ledger: run with --prepare (or `ktt generate --scale oslo` and "
                     f"`ktt backfill` there)")
        subprocess.run([KTT, "keys", "init"], check=True, stdout=subprocess.DEVNULL)
        prepare(data_root)

    from transforms.sandbox.pki import free_port, init_sandbox
    from transforms.sandbox.registry import accepted_messages
    from transforms.sandbox.server import running_sandbox

    messages = reset(data_root)
    init_sandbox(data_root, port=free_port(), secrets=Path(tempfile.gettempdir()) / "ktt-bench-sandbox-secrets")
    with running_sandbox(data_root, log=data_root / "sandbox" / "sandbox.log") as server:
        started = time.perf_counter()
        client = subprocess.Popen([KTT, "deliver", "--data-root", str(data_root)], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(client.pid, 0)
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server.pid)
    accepted = len(accepted_messages(data_root / "sandbox"))
    print(f"ktt deliver exit code {os.waitstatus_to_exitcode(status)}; the sandbox accepted {accepted:,} of "
          f"{messages:,} messages")
    print(f"{accepted:,} messages in {elapsed:.1f} s: {accepted / elapsed:,.0f} messages/s "
          f"(goal: under 60 s)")
    print(f"client peak RSS {usage.ru_maxrss / 1024:,.0f} MiB, client CPU {usage.ru_utime + usage.ru_stime:.1f} s, "
          f"sandbox CPU {server_cpu:.1f} s")


if __name__ == "__main__":
    main()
