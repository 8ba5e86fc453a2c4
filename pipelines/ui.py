"""`ktt ui`: the Dagster webserver and daemon on loopback, with a project-local instance.

`dagster dev` without DAGSTER_HOME keeps run history in a temporary folder that is gone at the
next start; here the instance lives beside the data it describes (`<data root>/.dagster`), so the
ledger and the run history that wrote it stay together. The instance configuration is copied from
a committed template the first time and never overwritten, so local edits survive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psutil

INSTANCE_TEMPLATES = {"sqlite": "dagster.yaml", "postgres": "dagster-postgres.yaml"}
CODE_LOCATION_MODULE = "pipelines.definitions"
STOP_GRACE_SECONDS = 30
KILL_WAIT_SECONDS = 5


class UiError(RuntimeError):
    """A reason the UI cannot start that the user can act on."""


def instance_template(kind: str) -> str:
    """The committed dagster.yaml template text (`sqlite` or `postgres`)."""
    if kind not in INSTANCE_TEMPLATES:
        raise UiError(f"unknown instance kind {kind!r}; choose one of {sorted(INSTANCE_TEMPLATES)}")
    return resources.files("pipelines.instance").joinpath(INSTANCE_TEMPLATES[kind]).read_text()


def default_dagster_home(data_root: Path) -> Path:
    return data_root / ".dagster"


@dataclass(frozen=True)
class PreparedInstance:
    home: Path
    config: Path
    created: bool
    differs_from_template: bool


def prepare_instance(home: Path, kind: str = "sqlite") -> PreparedInstance:
    """Create DAGSTER_HOME and its dagster.yaml from the template unless one is there already."""
    template = instance_template(kind)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    created = False
    if not config.exists():
        tmp = config.with_suffix(".yaml.tmp")
        tmp.write_text(template)
        tmp.replace(config)
        created = True
    if kind == "postgres" and not os.environ.get("KTT_DAGSTER_PG_URL"):
        raise UiError("the postgres instance reads its connection from KTT_DAGSTER_PG_URL "
                      "(postgresql://user:password@host:5432/db); it is not set")
    return PreparedInstance(home=home, config=config, created=created,
                            differs_from_template=config.read_text() != template)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def dev_command(host: str, port: int) -> list[str]:
    """`dagster dev`: webserver, daemon (schedules, sensors, run queue, backfills) and code server."""
    return [sys.executable, "-m", "dagster", "dev", "-m", CODE_LOCATION_MODULE, "--host", host, "--port", str(port)]


def _default_signals() -> None:
    """In the child: a parent started in the background may ignore INT/TERM, and exec keeps that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UiError(f"dagster dev exited with code {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise UiError(f"{url} did not answer within {timeout:.0f} s")


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group: zombies wait for a reaper, which in
    a container may never come, and they hold no port, file or lock."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _signal_group(pgid: int, signum: int) -> None:
    """Signal what is left of the group; it may have ended since we last looked."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> int:
    """SIGTERM to the whole process group (webserver, daemon, code servers, run workers).

    `dagster dev` exits before its code servers do (they wait for a heartbeat timeout), so
    the group is waited for as a whole; what is left after `grace` seconds gets SIGKILL.
    """
    pgid = process.pid
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon the group
    try:
        deadline = time.monotonic() + grace
        _signal_group(pgid, signal.SIGTERM)
        stragglers_told = False
        while _group_alive(pgid) and time.monotonic() < deadline:
            if process.poll() is not None and not stragglers_told:
                _signal_group(pgid, signal.SIGTERM)  # code servers outlive dagster dev
                stragglers_told = True
            time.sleep(0.2)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            # SIGKILL is delivered at once but a process takes a moment to die; wait so that no member
            # of the group is left running when this returns
            killed_by = time.monotonic() + KILL_WAIT_SECONDS
            while _group_alive(pgid) and time.monotonic() < killed_by:
                time.sleep(0.05)
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def run_ui(data_root: Path, home: Path, kind: str, host: str, port: int,
           announce: Callable[[str], None], start_timeout: float = 180.0) -> int:
    """Start `dagster dev`, announce the URL once it answers, run until Ctrl-C or SIGTERM, stop it."""
    if shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)) is None:
        raise UiError("dagster-webserver is not installed in this environment (pip install dagster-webserver)")
    if not port_is_free(host, port):
        raise UiError(f"{host}:{port} is in use (another `ktt ui`?); choose another with --port")
    prepared = prepare_instance(home, kind)
    announce(f"DAGSTER_HOME {prepared.home} ({'created from the ' + kind + ' template' if prepared.created else 'kept'}"
             f"{'; differs from the template' if prepared.differs_from_template else ''})")
    env = {**os.environ, "DAGSTER_HOME": str(prepared.home), "KTT_DATA_ROOT": str(data_root)}
    log_path = prepared.home / "ui.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(dev_command(host, port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_default_signals)

    def on_stop(signum, frame):
        raise KeyboardInterrupt

    # both, explicitly: a shell that starts us in the background hands SIGINT down as ignored
    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    url = f"http://{host}:{port}"
    try:
        wait_until_serving(url, process, start_timeout)
        announce(f"Dagster UI at {url} for data root {data_root} (log: {log_path}). Ctrl-C stops it.")
        return process.wait()
    except KeyboardInterrupt:
        announce("stopping the webserver and daemon ...")
        stop(process)
        announce("stopped")
        return 0
    except UiError:
        stop(process)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
