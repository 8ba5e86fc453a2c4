"""`ktt sandbox`: the sandbox registry as a real HTTPS server (Starlette on uvicorn) on 127.0.0.1.

Routes: `POST /helseid/connect/token` and `POST /api/messages` (and the older `/api/message/process`),
checked by `transforms.sandbox.registry`. Faults come from `<data root>/sandbox/faults.json`, read at
start and whenever the file changes, so a test can turn them on and off under a running server:

    {"seed": 1, "fail_rate": 0.2, "busy_rate": 0.0, "slow_rate": 0.05, "slow_s": 3.0, "drop_rate": 0.05,
     "token_max_uses": 50, "reject": [["3301", "2017-03-04"]]}

`fail_rate` answers 500 before looking at the message; `busy_rate` 503 with `Retry-After: 1`;
`slow_rate` stores the message, then answers after `slow_s` (longer than the client's timeout);
`drop_rate` stores the message, then drops the connection before the answer is complete;
`token_max_uses` lets access tokens die after so many requests (a token expiring mid-run);
`reject` refuses the messages of those (kommune, day) pairs with a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transforms.sandbox.pki import SandboxFiles, sandbox_settings
from transforms.sandbox.registry import Registry, Reply


class _Dropped(Response):
    """Starts a 200 answer and breaks off: the server closes the connection with the body unsent."""

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"messageId', "more_body": True})
        raise ConnectionAbortedError("sandbox fault: connection dropped after the message was stored")


class Faults:
    def __init__(self, path: Path):
        self.path = path
        self.stamp: float | None = None
        self.values: dict = {}
        self.random = random.Random(0)

    def refresh(self, registry: Registry) -> None:
        stamp = self.path.stat().st_mtime if self.path.exists() else None
        if stamp == self.stamp:
            return
        self.stamp = stamp
        self.values = json.loads(self.path.read_text(encoding="utf-8")) if stamp is not None else {}
        self.random = random.Random(self.values.get("seed", 0))
        registry.reject = {(str(k), str(d)) for k, d in self.values.get("reject", [])}
        registry.token_max_uses = self.values.get("token_max_uses")

    def roll(self) -> str:
        """'fail', 'busy', 'drop', 'slow' or '' for this request."""
        draw, edge = self.random.random(), 0.0
        for name in ("fail", "busy", "drop", "slow"):
            edge += float(self.values.get(f"{name}_rate", 0.0))
            if draw < edge:
                return name
        return ""


def _json(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


def create_app(folder: Path) -> Starlette:
    registry = Registry(folder)
    faults = Faults(SandboxFiles(Path(folder), Path(".")).faults)

    async def token(request: Request) -> Response:
        # application/x-www-form-urlencoded, parsed here (Starlette's form() needs python-multipart)
        form = dict(parse_qsl((await request.body()).decode("ascii", "replace")))
        return _json(registry.token(form, request.headers.get("DPoP"), str(request.url)))

    async def messages(request: Request) -> Response:
        faults.refresh(registry)
        refused = registry.authorize(request.headers.get("Authorization"), request.headers.get("DPoP"),
                                     str(request.url))
        if refused is not None:
            return _json(refused)
        fault = faults.roll()
        if fault == "fail":
            return JSONResponse({"errorCode": "sandbox.fault", "errorMessage": "injected technical fault",
                                 "refId": None}, status_code=500)
        if fault == "busy":
            return JSONResponse({"errorCode": "sandbox.busy", "errorMessage": "injected overload"},
                                status_code=503, headers={"Retry-After": "1"})
        reply = registry.message(await request.body())
        if fault == "drop":
            return _Dropped()
        if fault == "slow":
            await asyncio.sleep(float(faults.values.get("slow_s", 5.0)))
        return _json(reply)

    routes = [Route("/helseid/connect/token", token, methods=["POST"]),
              Route("/api/messages", messages, methods=["POST"]),
              Route("/api/message/process", messages, methods=["POST"])]
    return Starlette(routes=routes)


FOLDER_ENV = "KTT_SANDBOX_FOLDER"


def app_from_environment() -> Starlette:
    """The app of one worker process (uvicorn imports it by name when it runs several)."""
    return create_app(Path(os.environ[FOLDER_ENV]))


def serve(data_root: Path, port: int | None = None, workers: int = 2) -> None:
    """Run until stopped. Two worker processes by default: the registry's checks (decryption, signature,
    schema) are CPU work, and the workers share what they accepted through the SQLite database."""
    import uvicorn

    files = SandboxFiles(Path(data_root).resolve() / "sandbox", Path("."))
    if not files.settings.exists():
        raise SystemExit(f"{files.settings} not found: run `ktt sandbox init` first")
    port = port or int(sandbox_settings(files)["port"])
    os.environ[FOLDER_ENV] = str(files.folder)
    Registry(files.folder)  # the database and its tables exist before the workers start
    print(f"sandbox registry on https://127.0.0.1:{port} (token: /helseid/connect/token, messages: /api/messages; "
          f"CA {files.ca})", flush=True)
    uvicorn.run("transforms.sandbox.server:app_from_environment", factory=True, workers=workers,
                host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off",
                ssl_certfile=str(files.tls_cert), ssl_keyfile=str(files.tls_key), timeout_graceful_shutdown=1)


def wait_until_serving(port: int, ca: Path, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the sandbox exited with code {process.returncode}") from None
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the sandbox did not answer on 127.0.0.1:{port} within {timeout:.0f} s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def running_sandbox(data_root: Path, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """`ktt sandbox` in a child process for the duration of the block (the demo and the tests)."""
    files = SandboxFiles(Path(data_root).resolve() / "sandbox", Path("."))
    port = int(sandbox_settings(files)["port"])
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "transforms.sandbox.server", "--data-root", str(data_root)],
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(port, files.ca, process=process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if log:
            out.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the sandbox registry (see `ktt sandbox`)")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    serve(args.data_root, args.port, args.workers)


if __name__ == "__main__":
    main()
