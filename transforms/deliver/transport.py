"""How an envelope reaches the registry: the `kneik-api` over HTTPS, or a `directory` hand-off.

Each transport turns whatever happens into one `Answer`: accepted (200, or an accepting receipt),
rejected (400: the message is invalid, stop the municipality), or transient (timeouts, dropped
connections, 5xx, 429, 401, no receipt yet: retry later). The runner needs nothing else, so the
registry's current route can be added as another transport.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol

import httpx

from transforms.core.atomic import write_bytes
from transforms.deliver.config import DeliveryConfig
from transforms.deliver.envelope import Envelope
from transforms.deliver.helseid import TokenClient, TokenUnavailable

ACCEPTED, REJECTED, TRANSIENT = "accepted", "rejected", "transient"
RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Answer:
    outcome: str  # ACCEPTED, REJECTED or TRANSIENT
    http_status: int | None = None
    ref_id: str | None = None
    code: str | None = None
    text: str | None = None
    retry_after: float | None = None  # seconds the server asked to wait
    token_refused: bool = False  # a 401: fetch a new token once, then retry


class Transport(Protocol):
    name: str

    def send(self, envelope: Envelope) -> Answer: ...

    def close(self) -> None: ...


def answer_of_body(status: int, body: object, retry_after: float | None = None) -> Answer:
    """The registry's answer bodies (200 messageId/refId, 400 validation*, 500 error*), as an `Answer`."""
    data = body if isinstance(body, dict) else {}
    ref = data.get("refId")
    ref = str(ref) if ref is not None else None
    if status == 200:
        return Answer(ACCEPTED, status, ref)
    if status == 400:
        return Answer(REJECTED, status, ref, str(data.get("validationCode", "")) or "400",
                      str(data.get("validationMessage", ""))[:2000])
    code = data.get("errorCode") or data.get("error") or f"http-{status}"
    text = data.get("errorMessage") or data.get("error_description") or ""
    return Answer(TRANSIENT, status, ref, str(code), str(text)[:2000], retry_after, token_refused=status == 401)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


class KneikApiTransport:
    """`POST <url>/messages` with a HelseID token over one pooled, keep-alive HTTPS client."""

    name = "kneik-api"

    def __init__(self, config: DeliveryConfig):
        api = config.api
        assert api is not None
        context = ssl.create_default_context()  # the system's CAs, always verified ...
        if api.ca_bundle is not None:
            context.load_verify_locations(cafile=str(api.ca_bundle))  # ... plus the configured ones
        limits = httpx.Limits(max_connections=config.parallel_municipalities + 2,
                              max_keepalive_connections=config.parallel_municipalities + 2)
        self.http = httpx.Client(verify=context, timeout=httpx.Timeout(api.timeout_s), limits=limits)
        self.url = f"{api.url}/messages"
        self.tokens = TokenClient(api, self.http)

    def send(self, envelope: Envelope) -> Answer:
        body = envelope.body()
        for _ in range(2):  # the second time with a DPoP nonce the API asked for
            sent = self.tokens.nonce_for(self.url)
            try:
                auth, token = self.tokens.authorization("POST", self.url)
            except TokenUnavailable as exc:
                return Answer(TRANSIENT, None, None, "token-unavailable", str(exc))
            headers = {"Content-Type": "application/json", **auth}
            try:
                response = self.http.post(self.url, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                return Answer(TRANSIENT, None, None, "timeout", type(exc).__name__)
            except httpx.HTTPError as exc:
                return Answer(TRANSIENT, None, None, "connection", type(exc).__name__)
            new_nonce = self.tokens.remember_nonce(self.url, response, sent)
            if response.status_code == 401 and new_nonce and "use_dpop_nonce" in response.headers.get(
                    "WWW-Authenticate", ""):
                continue
            try:
                data = response.json()
            except ValueError:
                data = {}
            answer = answer_of_body(response.status_code, data, _retry_after(response.headers.get("Retry-After")))
            if answer.token_refused:
                self.tokens.invalidate(token)
            return answer
        return Answer(TRANSIENT, 401, None, "use_dpop_nonce", "the API asked for a DPoP nonce twice")

    def close(self) -> None:
        self.http.close()


class DirectoryTransport:
    """Envelopes written to an outgoing folder (`<MessageId>.json`, atomically), receipts read from an
    incoming one (`<MessageId>.receipt.json`, the API's answer bodies with `status`, default 200/400/500
    by their fields), for a messaging gateway that does the sending."""

    name = "directory"

    def __init__(self, config: DeliveryConfig, poll_s: float = 0.05):
        assert config.directory is not None
        self.outgoing, self.incoming = config.directory.outgoing, config.directory.incoming
        self.wait_s = config.directory.receipt_wait_s
        self.poll_s = poll_s

    def receipt_path(self, message_id: str) -> Path:
        return self.incoming / f"{message_id}.receipt.json"

    def send(self, envelope: Envelope) -> Answer:
        receipt = self.receipt_path(envelope.message_id)
        if not receipt.exists():
            write_bytes(self.outgoing / f"{envelope.message_id}.json", envelope.body())
        deadline = time.monotonic() + self.wait_s
        while not receipt.exists():
            if time.monotonic() >= deadline:
                return Answer(TRANSIENT, None, None, "no-receipt", f"no receipt in {self.incoming} yet")
            time.sleep(self.poll_s)
        try:
            data = json.loads(receipt.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return Answer(TRANSIENT, None, None, "receipt-unreadable", f"{receipt.name}: {exc}")
        status = data.get("status") or (200 if "messageId" in data else 400 if "validationCode" in data else 500)
        answer = answer_of_body(int(status), data)
        if answer.outcome == TRANSIENT:  # the gateway failed: the next attempt hands the envelope over again
            receipt.unlink(missing_ok=True)
        return answer

    def close(self) -> None:
        pass


def open_transport(config: DeliveryConfig) -> Transport:
    if config.transport == "kneik-api":
        return KneikApiTransport(config)
    if config.transport == "directory":
        return DirectoryTransport(config)
    raise ValueError(f"{config.path}: transport {config.transport!r} sends nothing")
