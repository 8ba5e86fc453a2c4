"""Delivering the written messages, by the rules of delivery.md.

Per municipality, messages go out in ledger order and message k+1 only after k was accepted;
municipalities are independent and run side by side (`parallel_municipalities` threads). Each
message is attempted up to `max_attempts` times per run with exponential back-off and jitter
(tenacity), a server's `Retry-After` honoured; a 401 fetches a new token once and retries at
once. A 400 marks the message rejected and stops its municipality until `--retry-rejected`; what
is still transient after the last attempt stays pending for the next run and stops only that
municipality. A token endpoint that refuses the client stops every municipality (nothing can be
sent until the configuration is fixed). Each attempt is recorded before and after it is made
(`transforms.deliver.state`).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from tenacity import Retrying, retry_if_result, stop_after_attempt, stop_when_event_set, wait_exponential_jitter

from transforms.core.config import ConfigError, load_kommuner
from transforms.core.settings import Settings
from transforms.deliver.config import DeliveryConfig, her_ids, load_delivery_config
from transforms.deliver.envelope import build_envelope, message_id, sha256_hex
from transforms.deliver.helseid import TokenError
from transforms.deliver.state import LedgerSession, now_utc, state_frame
from transforms.deliver.transport import ACCEPTED, REJECTED, TRANSIENT, Answer, Transport, open_transport

RETRY_AFTER_CAP_S = 300.0
_SEQ = re.compile(rb'notifikasjonLopeNr="(\d+)"')


class DeliveryOrderError(ValueError):
    """A range that would send a message before an earlier one of its municipality was accepted."""


@dataclass(frozen=True)
class Message:
    kommune: str
    kind: str  # "stream" or "resend"
    day: dt.date | None
    file: str
    first_seq: int
    last_seq: int
    sha256: str | None  # as the ledger recorded it (stream messages)
    attempts: int
    state: str


@dataclass
class MunicipalityResult:
    kommune: str
    accepted: int = 0  # in this run
    remaining: int = 0  # left pending or in flight by this run
    rejected: Message | None = None
    problem: str = ""


@dataclass
class DeliveryReport:
    transport: str
    municipalities: dict[str, MunicipalityResult] = field(default_factory=dict)
    fatal: str = ""

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.municipalities.values())

    @property
    def rejected(self) -> int:
        return sum(r.rejected is not None for r in self.municipalities.values())

    @property
    def remaining(self) -> int:
        return sum(r.remaining for r in self.municipalities.values())

    @property
    def complete(self) -> bool:
        return not self.fatal and self.rejected == 0 and self.remaining == 0


def _messages(frame: pl.DataFrame) -> list[Message]:
    return [Message(r["kommune"], r["kind"], r["day"], r["file"], r["first_seq"], r["last_seq"], r["sha256"],
                    r["attempts"], r["state"]) for r in frame.iter_rows(named=True)]


def outbox_messages(root: Path, known: pl.DataFrame, kommuner: list[str]) -> list[Message]:
    """`ktt resend` messages under outbox/ that are not yet accepted, oldest first per municipality."""
    done = {(r["kommune"], r["file"]): r for r in known.filter(pl.col("kind") == "resend").iter_rows(named=True)}
    found = []
    for kommune in kommuner:
        for path in sorted((root / "outbox" / f"kommune={kommune}").glob("*.xml")):
            rel = path.relative_to(root).as_posix()
            seen = done.get((kommune, rel))
            if seen is not None and seen["state"] == "accepted":
                continue
            seqs = [int(s) for s in _SEQ.findall(path.read_bytes())]
            found.append(Message(kommune, "resend", None, rel, min(seqs, default=0), max(seqs, default=0), None,
                                 seen["attempts"] if seen else 0, seen["state"] if seen else "pending"))
    return found


class DeliveryRun:
    """One run of delivery over a data root's written messages."""

    def __init__(self, settings: Settings, config: DeliveryConfig | None = None,
                 transport: Transport | None = None):
        self.settings = settings
        self.root = settings.data_root
        self.config = config or load_delivery_config(self.root)
        self.transport = transport
        self.run_id = str(uuid.uuid4())
        self._stop = threading.Event()

    def run(self, kommuner: list[str] | None = None, first: dt.date | None = None, last: dt.date | None = None,
            retry_rejected: bool = False, outbox: bool = False,
            progress: Callable[[str, int], None] | None = None) -> DeliveryReport:
        report = DeliveryReport(self.config.transport)
        if self.config.transport == "none":
            return report
        municipalities = load_kommuner(self.settings.root.kommuner_toml)
        targets = sorted(kommuner or [m.nr for m in municipalities])
        unknown = sorted(set(targets) - {m.nr for m in municipalities})
        if unknown:
            raise ConfigError(f"{self.settings.root.kommuner_toml}: no [[kommune]] nr = \"{unknown[0]}\"")
        self.her_ids = her_ids([m for m in municipalities if m.nr in targets], self.settings.root.kommuner_toml)
        with LedgerSession(self.root) as session:
            self.session = session
            state = session.run(lambda con: state_frame(con, "list_contains(?, kommune)", [targets]))
            queues = self._queues(state, targets, first, last, retry_rejected, outbox)
            for kommune in targets:
                report.municipalities[kommune] = result = MunicipalityResult(kommune)
                if kommune in self._held:
                    result.rejected, result.remaining = self._held[kommune]
                    result.problem = f"{result.rejected.day or result.rejected.file}: rejected earlier"
                if kommune in self._waiting:
                    result.remaining += self._waiting[kommune]
                    result.problem = (f"{self._waiting[kommune]} resent message(s) reach past the last accepted "
                                      f"notification: deliver the stream first")
            owned = self.transport is None
            transport = self.transport or open_transport(self.config)
            try:
                with ThreadPoolExecutor(self.config.parallel_municipalities, thread_name_prefix="deliver") as pool:
                    futures = [pool.submit(self._municipality, transport, queue, report.municipalities[k], progress)
                               for k, queue in queues.items()]
                    for future in futures:
                        try:
                            future.result()
                        except TokenError as exc:
                            report.fatal = str(exc)
                            self._stop.set()
            finally:
                if owned:
                    transport.close()
        return report

    def _queues(self, state: pl.DataFrame, targets: list[str], first: dt.date | None, last: dt.date | None,
                retry_rejected: bool, outbox: bool) -> dict[str, list[Message]]:
        self._waiting: dict[str, int] = {}
        if outbox:
            # a resend copies accepted notifications: one that reaches past them waits for the stream
            accepted = dict(state.filter((pl.col("kind") == "stream") & (pl.col("state") == "accepted"))
                            .group_by("kommune").agg(pl.col("last_seq").max()).iter_rows())
            messages = []
            for message in outbox_messages(self.root, state, targets):
                if message.last_seq <= accepted.get(message.kommune, 0):
                    messages.append(message)
                else:
                    self._waiting[message.kommune] = self._waiting.get(message.kommune, 0) + 1
        else:
            stream = state.filter((pl.col("kind") == "stream") & (pl.col("state") != "accepted"))
            if first is not None:
                early = stream.filter(pl.col("day") < first)
                if early.height:
                    row = early.row(0, named=True)
                    raise DeliveryOrderError(
                        f"municipality {row['kommune']}: the message of {row['day']} is not accepted yet "
                        f"({row['state']}); messages go out in order, start the range there")
            if last is not None:
                stream = stream.filter(pl.col("day") <= last)
            messages = _messages(stream)
        queues: dict[str, list[Message]] = {}
        for message in messages:
            queues.setdefault(message.kommune, []).append(message)
        self._held: dict[str, tuple[Message, int]] = {}
        if not retry_rejected:  # a rejected message holds its municipality until it is retried on purpose
            for kommune, queue in list(queues.items()):
                if queue and queue[0].state == "rejected":
                    self._held[kommune] = (queue[0], len(queue))
                    del queues[kommune]
        return queues

    # --- one municipality ------------------------------------------------------------------------
    def _municipality(self, transport: Transport, queue: list[Message], result: MunicipalityResult,
                      progress: Callable[[str, int], None] | None) -> None:
        deferred: list[tuple] = []  # an accepted outcome, written with the next message's first row
        try:
            for index, message in enumerate(queue):
                if self._stop.is_set():
                    result.remaining += len(queue) - index
                    return
                answer = self._deliver(transport, message, deferred, result)
                if answer is None:  # a problem with the file: reported, the municipality waits
                    result.remaining += len(queue) - index
                    return
                if answer.outcome == ACCEPTED:
                    result.accepted += 1
                    if progress:
                        progress(message.kommune, 1)
                    continue
                if answer.outcome == REJECTED:
                    result.rejected = Message(**{**message.__dict__, "state": "rejected"})
                    result.problem = f"{message.day or message.file}: {answer.code}: {answer.text}"
                    result.remaining += len(queue) - index - 1
                    return
                result.problem = f"{message.day or message.file}: still failing ({answer.code}: {answer.text})"
                result.remaining += len(queue) - index
                return
        finally:
            if deferred:
                self.session.record(deferred)

    def _deliver(self, transport: Transport, message: Message, deferred: list[tuple],
                 result: MunicipalityResult) -> Answer | None:
        data = (self.root / message.file).read_bytes() if (self.root / message.file).exists() else None
        if data is None:
            result.problem = f"{message.file} is missing; rewrite the day (`ktt backfill`) before delivering"
            return None
        digest = sha256_hex(data)
        if message.sha256 is not None and digest != message.sha256:
            result.problem = f"{message.file} differs from the ledger's SHA-256; rewrite it before delivering"
            return None
        kind = "resend" if message.kind == "resend" else ""
        msg_id = message_id(f"{message.kommune}{'|' + kind + '|' + message.file if kind else ''}",
                            message.first_seq, digest)
        assert self.config.payload is not None
        envelope = build_envelope(data, msg_id, self.her_ids[message.kommune], self.config.payload)
        attempt = [message.attempts]
        answers: list[Answer] = []

        def row(event: str, answer: Answer | None = None) -> tuple:
            return (message.kommune, message.kind, message.day, message.file, message.first_seq, message.last_seq,
                    msg_id, digest, self.run_id, attempt[0], event, now_utc(), transport.name,
                    answer.http_status if answer else None, answer.ref_id if answer else None,
                    answer.code if answer else None, answer.text if answer else None)

        def one_attempt() -> Answer:
            attempt[0] += 1
            self.session.record([*deferred, row("sending")])
            deferred.clear()
            try:
                answer = transport.send(envelope)
            except TokenError as exc:
                self.session.record([row("failed", Answer(TRANSIENT, None, None, "token-refused", str(exc)))])
                raise
            event = {ACCEPTED: "accepted", REJECTED: "rejected"}.get(answer.outcome, "failed")
            if answer.outcome == ACCEPTED:
                deferred.append(row(event, answer))
            else:
                self.session.record([row(event, answer)])
            answers.append(answer)
            return answer

        def again(answer: Answer) -> bool:
            if answer.outcome != TRANSIENT:
                return False
            # a 401: a new token once; a second 401 in a row is the client's problem, not a transient one
            return not (answer.token_refused and len(answers) > 1 and answers[-2].token_refused)

        backoff = wait_exponential_jitter(initial=self.config.backoff_initial_s, max=self.config.backoff_max_s)

        def wait(retry_state) -> float:
            answer: Answer = retry_state.outcome.result()
            if answer.token_refused and not (len(answers) > 1 and answers[-2].token_refused):
                return 0.0
            return max(backoff(retry_state), min(answer.retry_after or 0.0, RETRY_AFTER_CAP_S))

        retrying = Retrying(stop=stop_after_attempt(self.config.max_attempts) | stop_when_event_set(self._stop),
                            wait=wait, retry=retry_if_result(again), sleep=self._stop.wait,
                            retry_error_callback=lambda state: state.outcome.result(), reraise=True)
        return retrying(one_attempt)


def deliver(settings: Settings, kommuner: list[str] | None = None, first: dt.date | None = None,
            last: dt.date | None = None, retry_rejected: bool = False, outbox: bool = False,
            progress: Callable[[str, int], None] | None = None) -> DeliveryReport:
    """Deliver what is written and not yet accepted, with the data root's `config/delivery.toml`."""
    return DeliveryRun(settings).run(kommuner, first, last, retry_rejected, outbox, progress)
