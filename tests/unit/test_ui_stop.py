"""Stopping `ktt ui`'s process group: every member ends, also when members end on their own."""

import subprocess
import sys
import time

from pipelines.ui import _group_alive, stop

# a leader that exits at once on SIGTERM and a member that ignores SIGTERM, like a code server
# waiting for its heartbeat timeout
GROUP = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "time.sleep(60)"])
time.sleep(60)
"""


def test_stop_ends_the_whole_group_including_members_that_outlive_the_leader():
    leader = subprocess.Popen([sys.executable, "-c", GROUP], start_new_session=True)
    time.sleep(1.0)
    started = time.monotonic()
    stop(leader, grace=3)
    assert not _group_alive(leader.pid)
    assert time.monotonic() - started < 10


def test_stop_of_a_group_that_already_ended_is_quiet():
    leader = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    leader.wait()
    assert stop(leader, grace=1) == 0
