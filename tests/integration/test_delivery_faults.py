"""Delivery under faults the sandbox injects, and delivery killed with SIGKILL: every message ends accepted
exactly once, in order, and the ledger's delivery state agrees with the registry."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import time

import duckdb

from tests.delivery_support import (
    KTT,
    accepted_count,
    assert_exactly_once_in_order,
    copy_written,
    ktt,
    sandbox,
    setup_sandbox,
    write_faults,
)

LAST = "2017-02-28"  # about 120 messages of the demo world: long enough for every fault to strike
KILL_LAST = "2017-12-31"  # enough messages for ten kills on an idle machine too (each kill lets up to ~50 through)


def _expected_messages(root, last: str = LAST) -> int:
    with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM written_days WHERE file IS NOT NULL AND day <= ?",
                           [last]).fetchone()[0]


def _failures(root) -> dict[str, int]:
    with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
        return dict(con.execute("SELECT coalesce(code, 'none'), count(*) FROM deliveries WHERE event = 'failed' "
                                "GROUP BY ALL").fetchall())


def _deliver_until_done(root, runs: int = 8) -> list[int]:
    codes = []
    for _ in range(runs):
        codes.append(ktt("deliver", "--data-root", str(root), "--to", LAST).returncode)
        if codes[-1] == 0:
            break
    return codes


def test_faults_and_a_restart_mid_run_end_with_every_message_accepted_once_in_order(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    # the client waits 1 s for an answer; slow answers take 2.5 s
    setup_sandbox(root, tmp_path, timeout_s=1.0, backoff_initial_s=0.05, backoff_max_s=1.0, max_attempts=8)
    write_faults(root, seed=7, fail_rate=0.2, slow_rate=0.05, slow_s=2.5, drop_rate=0.05, busy_rate=0.02,
                 token_max_uses=25)
    expected = _expected_messages(root)
    with sandbox(root) as first:
        delivery = subprocess.Popen([KTT, "deliver", "--data-root", str(root), "--to", LAST],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        deadline = time.monotonic() + 120
        while accepted_count(root) < expected // 3 and time.monotonic() < deadline and delivery.poll() is None:
            time.sleep(0.05)
        assert delivery.poll() is None, "delivery ended before the sandbox could be restarted under it"
        os.killpg(first.pid, signal.SIGKILL)  # the registry goes away mid-run ...
        first.wait()
    with sandbox(root):  # ... and comes back on the same port with what it had stored
        delivery.wait(300)
        codes = _deliver_until_done(root)
    assert codes[-1] == 0, codes
    held = assert_exactly_once_in_order(root)
    assert sum(1 for _ in held) == 3 and accepted_count(root) == expected
    failures = _failures(root)
    # each injected fault reached the client and was survived
    for code in ("sandbox.fault", "timeout", "connection", "invalid_token", "sandbox.busy"):
        assert failures.get(code, 0) > 0, (code, failures)
    # retries after lost answers were recognised by MessageId, not stored twice
    with contextlib.closing(sqlite3.connect(root / "sandbox" / "registry.sqlite")) as db:
        assert db.execute("SELECT sum(repeats) FROM accepted").fetchone()[0] > 0


def test_delivery_killed_at_ten_random_moments_ends_exactly_once_in_order(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    setup_sandbox(root, tmp_path, timeout_s=5.0)
    expected = _expected_messages(root, KILL_LAST)
    chance = random.Random(12)
    kills = 0
    with sandbox(root):
        while kills < 10:
            before = accepted_count(root)
            process = subprocess.Popen([KTT, "deliver", "--data-root", str(root), "--to", KILL_LAST],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
            deadline = time.monotonic() + 60
            # wait until this run is sending, then kill it somewhere in the next quarter second
            while accepted_count(root) == before and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(chance.uniform(0.0, 0.25))
            if process.poll() is not None:
                break  # everything was delivered before this kill
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        final = ktt("deliver", "--data-root", str(root), "--to", KILL_LAST)
    assert kills == 10, "delivery finished before it was killed ten times"
    assert final.returncode == 0, final.stdout + final.stderr
    assert_exactly_once_in_order(root)
    assert accepted_count(root) == expected
