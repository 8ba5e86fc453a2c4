"""End to end through the real UI: `ktt ui`, a backfill launched in headless Chromium, and
`ktt backfill --via-daemon` racing a second overlapping backfill; every file must equal what
the in-process `ktt backfill` writes for the same days.

Needs Debian's chromium (`/usr/bin/chromium`, installed by `.ci/run`); without it the browser
test is skipped, unless KTT_REQUIRE_BROWSER=1 (as in CI) makes that a failure.
"""

import datetime as dt
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipelines.remote import follow_backfill, graphql, launch_backfill
from tests.browser import ARTIFACTS, launch, require_chromium
from transforms.submit.ledger import integrity_problems, open_ledger

KTT = str(Path(sys.executable).with_name("ktt"))
JANUARY = (dt.date(2017, 1, 1), dt.date(2017, 1, 31))
FEBRUARY = (dt.date(2017, 2, 1), dt.date(2017, 2, 28))
BACKFILL_TIMEOUT = 900


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _copy_ingested(demo_root: Path, target: Path) -> Path:
    shutil.copytree(demo_root, target, ignore=shutil.ignore_patterns(
        "timeline", "ledger", "submissions", "outbox", ".dagster", "warehouse.duckdb"))
    return target


@pytest.fixture(scope="module")
def reference_root(demo_root, tmp_path_factory) -> Path:
    """January and February written by the in-process `ktt backfill`."""
    root = _copy_ingested(demo_root, tmp_path_factory.mktemp("reference") / "data")
    result = subprocess.run([KTT, "backfill", "--data-root", str(root), "--from", "2017-01-01", "--to", "2017-02-28"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def ui_root(demo_root, tmp_path_factory, key_file) -> Path:
    """The ingested demo with timelines and events built into the UI's own instance (so the UI knows
    the upstream of daily_submissions is there), and no message written yet."""
    from pipelines.run import Runner
    from pipelines.ui import default_dagster_home, prepare_instance

    root = _copy_ingested(demo_root, tmp_path_factory.mktemp("ui") / "data")
    home = prepare_instance(default_dagster_home(root)).home
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        runner = Runner(root, key_file)
        runner.ingest()
        runner.timeline()
        runner.events()
    return root


class UiServer:
    def __init__(self, root: Path):
        self.root, self.port, self.stopped = root, _free_port(), False
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = root / ".dagster"
        self.output = root.parent / "ktt-ui.out"
        with self.output.open("w") as out:
            self.process = subprocess.Popen([KTT, "ui", "--data-root", str(root), "--port", str(self.port)],
                                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + 300
        while f"Dagster UI at {self.url}" not in self.output.read_text():
            assert self.process.poll() is None, self.output.read_text()
            assert time.monotonic() < deadline, f"ktt ui did not come up: {self.output.read_text()}"
            time.sleep(0.5)

    def processes(self) -> list[str]:
        """Live processes started for this instance: their command lines name its DAGSTER_HOME or port.

        Read whole from /proc (psutil), not from `ps -eo pid,args`: ps cuts every line at $COLUMNS when
        that is set, even into a pipe, and each line starts with the checkout's venv python
        (`<checkout>/.venv/bin/python -m dagster_webserver --port N`; the daemon and code servers name
        DAGSTER_HOME only hundreds of characters in). With COLUMNS=80, a checkout at /work/main leaves
        the port inside the cut, a clone in `mktemp -d` (/tmp/tmp.XXXXXXXXXX/ktt) pushes it out: every
        line is cut before the port, and the test saw "nothing of the UI is running" while all of it ran.
        """
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            line = " ".join(proc.info["cmdline"] or ())
            if proc.info["status"] != psutil.STATUS_ZOMBIE and (str(self.home) in line or
                                                                 f"--port {self.port}" in line):
                found.append(f"{proc.info['pid']} {line[:300]}")
        return found

    def exited_on_its_own(self) -> str:
        """Why the UI is gone if no test stopped it: its exit code and the ends of its output and log."""
        log = self.home / "ui.log"
        return (f"ktt ui exited with {self.process.returncode} without being stopped:\n"
                f"{self.output.read_text()[-4000:]}\n--- {log}:\n{log.read_text()[-8000:] if log.exists() else ''}")

    def ctrl_c(self) -> int:
        self.stopped = True
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=120)


@pytest.fixture(scope="module")
def ui_servers(ui_root):
    """The module's `ktt ui` processes, newest last; every one still running is stopped at the end."""
    servers: list[UiServer] = []
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.ctrl_c()


@pytest.fixture
def ui(ui_servers, ui_root) -> UiServer:
    """The UI on the module's data root, started on first use and again after the Ctrl-C test stopped
    it: so each test holds in any order and alone. A UI that exited by itself fails the test that finds
    it so, with its log, instead of being quietly restarted."""
    if ui_servers and ui_servers[-1].process.poll() is not None and not ui_servers[-1].stopped:
        pytest.fail(ui_servers[-1].exited_on_its_own())
    if not ui_servers or ui_servers[-1].stopped:
        ui_servers.append(UiServer(ui_root))
    return ui_servers[-1]


def _message_files(root: Path, first: dt.date, last: dt.date) -> dict[str, bytes]:
    with open_ledger(root, read_only=True) as con:
        rows = con.execute("SELECT file FROM written_days WHERE file IS NOT NULL AND day BETWEEN ? AND ? ORDER BY 1",
                           [first, last]).fetchall()
    return {rel: (root / rel).read_bytes() for (rel,) in rows}


def _days_written(root: Path, first: dt.date, last: dt.date) -> dict[str, int]:
    with open_ledger(root, read_only=True) as con:
        return dict(con.execute("SELECT kommune, count(*) FROM written_days WHERE day BETWEEN ? AND ? GROUP BY 1",
                                [first, last]).fetchall())


def _assert_same_messages(root: Path, reference: Path, first: dt.date, last: dt.date) -> int:
    """The range's messages equal the reference's, and every municipality has every day of it written.

    Days after `last` may be written too: the UI tests share one data root and hold in any order."""
    ours, theirs = _message_files(root, first, last), _message_files(reference, first, last)
    assert theirs, "the reference wrote no message"
    assert sorted(ours) == sorted(theirs)
    differing = [rel for rel in theirs if ours[rel] != theirs[rel]]
    assert differing == []
    days = (last - first).days + 1
    assert _days_written(root, first, last) == _days_written(reference, first, last)
    assert set(_days_written(root, first, last).values()) == {days}
    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0
    return len(ours)


def _daily_submissions(first: dt.date, last: dt.date) -> dict:
    """A launch target: the daily_submissions partitions first..last."""
    return {"assetKey": {"path": ["daily_submissions"]},
            "partitions": {"range": {"start": str(first), "end": str(last)}}}


def test_ui_serves_on_loopback_with_a_project_local_instance(ui):
    text = ui.output.read_text()
    assert f"DAGSTER_HOME {ui.home} (kept)" in text
    assert (ui.home / "dagster.yaml").exists()
    info = graphql(ui.url, "{ version }", {})
    assert info["version"]


# about 50 s, most of it waiting for the backfill daemon's 30 s ticks: in `make test-slow` with the race below, so
# that the default run stays within its ten minutes; the default run serves the UI, and stops it with Ctrl-C
@pytest.mark.slow
def test_browser_backfill_of_one_month_equals_ktt_backfill(ui, reference_root):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)

        page.goto(f"{ui.url}/asset-groups", wait_until="networkidle")
        expect(page.get_by_text("Global asset lineage")).to_be_visible()
        expect(page.get_by_text("submissions").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))

        page.goto(f"{ui.url}/assets/daily_submissions", wait_until="networkidle")
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_role("button", name="Latest")).to_be_visible()  # partitions loaded
        page.screenshot(path=str(ARTIFACTS / "launch-dialog.png"))
        show_all = dialog.get_by_role("button", name="Show all partitions")
        if show_all.count():  # only offered once the asset has partitions beyond the last 90 days' window
            show_all.click()
        selection = dialog.get_by_role("textbox").first
        selection.fill(f"[{JANUARY[0]}...{JANUARY[1]}]")
        selection.press("Enter")
        expect(dialog.get_by_text("31 partitions")).to_be_visible()
        dialog.get_by_role("button", name="Launch backfill").click()
        view = page.locator("a[href^='/runs/b/']").first  # the toast's "View" link to the new backfill
        expect(view).to_be_visible()
        backfill_id = view.get_attribute("href").rsplit("/", 1)[-1]

        final = follow_backfill(ui.url, backfill_id, lambda _: None, timeout=BACKFILL_TIMEOUT)
        assert final.succeeded, final
        page.goto(f"{ui.url}/runs/b/{backfill_id}", wait_until="networkidle")
        expect(page.get_by_text("Succeeded").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "backfill-page.png"), full_page=True)

        page.goto(f"{ui.url}/assets/coverage", wait_until="networkidle")
        page.locator("tr", has_text="coverage_chart").first.get_by_text("[Show Markdown]").click()
        chart = page.get_by_role("dialog").locator("img").first
        expect(chart).to_be_visible()
        assert chart.evaluate("image => image.naturalWidth") > 400
        page.screenshot(path=str(ARTIFACTS / "coverage-chart.png"))
        browser.close()

    assert _assert_same_messages(ui.root, reference_root, *JANUARY) > 31


def _ledger_runs(home: Path) -> list:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        return [record for record in instance.get_run_records()
                if "daily_submissions" in {k.to_user_string() for k in record.dagster_run.asset_selection or ()}]
    finally:
        instance.dispose()


# about 270 s, nearly all of it waiting: Dagster's backfill daemon looks at a backfill every 30 s (a constant,
# `DEFAULT_DAEMON_INTERVAL_SECONDS`, not a setting) and the graph has six waves, three backfills of them here.
# `make test-slow` runs this and the browser's backfill above.
@pytest.mark.slow
def test_via_daemon_with_an_overlapping_backfill_waits_and_equals_ktt_backfill(ui, reference_root):
    """The CLI submits Jan..Feb with every upstream asset; a second backfill of February races it.

    The rival's February run may take the ledger before the CLI's (whose upstream runs come first), so
    January must be written already; this test writes it through the daemon itself rather than count on
    the browser test (skipped without chromium, or run later). If January is there, that run verifies it.
    """
    first, last = JANUARY[0], FEBRUARY[1]
    january = launch_backfill(ui.url, [_daily_submissions(*JANUARY)], "January, before the race")
    assert follow_backfill(ui.url, january, lambda _: None, timeout=BACKFILL_TIMEOUT).succeeded
    cli = subprocess.Popen([KTT, "backfill", "--via-daemon", "--url", ui.url, "--data-root", str(ui.root),
                            "--from", str(first), "--to", str(last)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    time.sleep(5)
    rival = launch_backfill(ui.url, [_daily_submissions(*FEBRUARY)], "overlapping February")
    output, _ = cli.communicate(timeout=BACKFILL_TIMEOUT)
    assert cli.returncode == 0, output
    assert "completed_success" in output and "messages written" in output
    assert follow_backfill(ui.url, rival, lambda _: None, timeout=BACKFILL_TIMEOUT).succeeded

    runs = sorted(_ledger_runs(ui.home), key=lambda r: r.start_time)
    assert len(runs) >= 3  # this test's January, the CLI's, the rival's (and the browser test's, if it ran)
    for earlier, later in itertools.pairwise(runs):
        assert earlier.end_time <= later.start_time, "two runs wrote the ledger at the same time"
    assert _assert_same_messages(ui.root, reference_root, first, last) > 59


def test_ctrl_c_stops_webserver_daemon_and_code_servers(ui):
    assert ui.process.poll() is None, ui.exited_on_its_own()
    assert ui.processes(), "nothing of the UI is running"
    assert ui.ctrl_c() == 0
    deadline = time.monotonic() + 60
    while ui.processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ui.processes() == []
    assert "stopped" in ui.output.read_text()
