"""The message jobs: the XPR 56 bulk path gives the same bytes as `serialize`, the same failures, schema-valid
or not written; and the path a job takes is what its serializer offers, not what class it is."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import polars as pl
import pytest

from transforms.core.config import Contact, Municipality
from transforms.submit.messages import MessageJob, empty_message, message_of, write_messages
from transforms.submit.serializers import (
    NIL_GUID,
    SERIALIZERS,
    FrameWriter,
    Message,
    MessageInvalid,
    MessageSerializer,
    ValidationIssue,
    Xpr56Serializer,
    frame_writer,
)
from transforms.submit.serializers.xpr56.batch import BatchValidator, MessageFrame, day_messages, suspect_rows
from transforms.tables import MESSAGE_FRAME

SER = Xpr56Serializer()
MUNICIPALITY = Municipality("0301", "Oslo", 'Leverandør & "Co" AS', "Omsorg <B>", "4.2",
                            (Contact("Kari", "kari@example.no", 16), Contact("Ola", "ola@example.no", 17)))
FIDS = ("14894710005", "07834110096")
UTC = dt.UTC


def _guid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(str, parts))))


def frame(days: int = 4, per_day: int = 6) -> pl.DataFrame:
    """Every event kind and status, summer and winter times, text that needs escaping, a chain from seq 1."""
    kinds = ("TjenesteStart", "MidlertidigStoppFra", "MidlertidigStoppTil", "TjenesteutforerEndret", "TjenesteSlutt")
    rows, previous, seq = [], NIL_GUID, 0
    for d in range(days):
        day = dt.date(2024, 3, 29) + dt.timedelta(days=d)
        for _ in range(per_day):
            seq += 1
            kind = kinds[(seq - 1) % len(kinds)]
            status = "N" if seq < 6 else ("N", "M", "C")[seq % 3]
            guid = _guid("n", seq)
            rows.append({
                "day": day, "seq": seq, "guid": guid, "previous_guid": previous, "status": status,
                "ref_guid": None if status == "N" else _guid("n", seq % 5 + 1),
                "event_type": kind, "service_code": ("1", "15", "29", "21")[seq % 4],
                "reporting_id": f"O-{seq:05d}" + (' & <"x">' if seq % 7 == 0 else ""),
                "event_date": day - dt.timedelta(days=seq % 40),
                "registered_at": dt.datetime(2024, 3, 30, 23, 30, 15, 123456, tzinfo=UTC) + dt.timedelta(hours=seq),
                "provider_org": "974760673" if kind == "TjenesteutforerEndret" or seq % 2 else None,
                "stop_id": f"S{seq}" if "Stopp" in kind else None,
                "event_guid": _guid("e", seq), "pasient_guid": _guid("p", seq % 3),
                "bruker_nr": f"u-{seq % 3}" + ("&1" if seq % 11 == 0 else ""),
                "fid": FIDS[seq % 2], "id_type": (1, 9)[seq % 5 == 0],
            })
            previous = guid
    return MESSAGE_FRAME.conform(pl.DataFrame(rows, schema_overrides=MESSAGE_FRAME.schema))


def slow_bytes(f: pl.DataFrame) -> dict[dt.date, bytes]:
    return {day: SER.serialize(message_of(MUNICIPALITY, part.sort("seq")))
            for (day,), part in f.group_by("day", maintain_order=True)}


def test_bulk_rendering_equals_serialize_byte_for_byte():
    f = frame()
    assert not suspect_rows(f.sort("day", "seq")).any()
    wrapper = MessageFrame(SER, empty_message(MUNICIPALITY))
    bulk = dict(day_messages(f, wrapper).select("day", "message").iter_rows())
    assert bulk == slow_bytes(f)
    assert BatchValidator(SER).check(list(bulk.values())) == [None] * len(bulk)


def test_write_messages_writes_what_serialize_makes(tmp_path):
    f = frame()
    days = write_messages(MessageJob(tmp_path, MUNICIPALITY, f))
    expected = slow_bytes(f)
    assert [d.day for d in days] == sorted(expected)
    for d in days:
        data = (tmp_path / d.file).read_bytes()
        assert data == expected[d.day] and hashlib.sha256(data).hexdigest() == d.sha256
    assert not list(tmp_path.rglob(".*.tmp"))


@pytest.mark.parametrize(("column", "value", "rule"), [
    ("service_code", "99", "code-list-9151"),
    ("fid", "14894710006", "fid-check-digits"),
    ("previous_guid", _guid("elsewhere"), "forrige-guid"),
    ("bruker_nr", " ", "brukerNr"),
    ("reporting_id", "", "tjenesteID"),
])
def test_rows_the_rules_reject_take_the_serializer_and_fail_naming_the_notification(tmp_path, column, value, rule):
    f = frame().with_columns(pl.when(pl.col("seq") == 9).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))
    assert suspect_rows(f.sort("day", "seq")).to_list() == [s == 9 for s in f.sort("day", "seq")["seq"]]
    with pytest.raises(MessageInvalid) as failure:
        write_messages(MessageJob(tmp_path, MUNICIPALITY, f))
    assert failure.value.rule == rule and failure.value.sequence_no == 9
    failing_day = f.filter(pl.col("seq") == 9)["day"][0]
    assert not (tmp_path / f"submissions/kommune=0301/2024/{failing_day}.xml").exists()


def test_non_ascii_text_is_rendered_by_the_serializer(tmp_path):
    f = frame().with_columns(pl.col("bruker_nr") + "ø")
    assert suspect_rows(f.sort("day", "seq")).all()
    days = write_messages(MessageJob(tmp_path, MUNICIPALITY, f))
    assert {d.day: (tmp_path / d.file).read_bytes() for d in days} == slow_bytes(f)


def test_a_batch_failing_the_schema_names_the_message_and_its_notification():
    f = frame()
    wrapper = MessageFrame(SER, empty_message(MUNICIPALITY))
    messages = day_messages(f, wrapper)["message"].to_list()
    guid = f.filter(pl.col("seq") == 8)["guid"][0]
    broken = messages[1].replace(b'notifikasjonLopeNr="8"', b'notifikasjonLopeNr="8" ukjent="1"')
    results = BatchValidator(SER).check([messages[0], broken, *messages[2:]])
    assert results[0] is None and all(r is None for r in results[2:])
    assert isinstance(results[1], MessageInvalid) and results[1].rule == "xsd"
    assert results[1].notification_guid == guid and results[1].sequence_no == 8


def test_the_streamed_batch_keeps_each_message_s_identity_constraints_to_itself():
    """Validated while parsed (no tree), a duplicate notification GUID within one message still fails the
    schema's unique constraint, and one message twice in a batch does not."""
    f = frame()
    wrapper = MessageFrame(SER, empty_message(MUNICIPALITY))
    messages = day_messages(f, wrapper)["message"].to_list()
    first, second = f.filter(pl.col("seq").is_in([7, 8]))["guid"].to_list()
    duplicated = messages[1].replace(second.encode(), first.encode())
    results = BatchValidator(SER).check([messages[0], duplicated, messages[0]])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], MessageInvalid) and results[1].rule == "xsd"
    assert BatchValidator(SER).check([messages[1], messages[1]]) == [None, None]


def test_message_invalid_survives_a_process_boundary():
    import pickle

    error = MessageInvalid("code-list-9151", "tjenesteType '99'", _guid("n", 1), 1)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.rule, copy.detail, copy.notification_guid, copy.sequence_no, str(copy)) == (
        error.rule, error.detail, error.notification_guid, error.sequence_no, str(error))


# --- the serializer decides the path, not its class --------------------------------------------------------

class PlainSerializer:
    """A second, minimal format: one line per notification; it offers only `MessageSerializer`."""

    name = "plain"
    file_suffix = ".txt"

    def __init__(self) -> None:
        self.serialized = 0

    def serialize(self, message: Message) -> bytes:
        self.serialized += 1
        lines = [f"{message.kommune_nr} {n.sequence_no} {n.status} {n.event.kind}" for n in message.in_sequence_order()]
        return ("\n".join(lines) + "\n").encode()

    def validate(self, data: bytes) -> list[ValidationIssue]:
        return [] if data.endswith(b"\n") else [ValidationIssue(None, "no final newline", rule="plain")]


class PlainFrameSerializer(PlainSerializer):
    """The same format, also rendering whole frames (`FrameWriter`); it flags every day of 2024-03-30."""

    name = "plain-frames"
    suspect_day = dt.date(2024, 3, 30)

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[bytes] = []

    def render_days(self, frame: pl.DataFrame, header: Message) -> pl.DataFrame:
        line = pl.concat_str([pl.lit(header.kommune_nr), pl.col("seq").cast(pl.Utf8), "status", "event_type"],
                             separator=" ")
        return (frame.sort("day", "seq").group_by("day", maintain_order=True)
                .agg(message=(line + "\n").str.join("").cast(pl.Binary), n=pl.len(), first_seq=pl.col("seq").min(),
                     last_seq=pl.col("seq").max())
                .with_columns(suspect=pl.col("day") == self.suspect_day))

    def check_rendered(self, messages: list[bytes]) -> list[MessageInvalid | None]:
        self.checked += messages
        return [None if not (issues := self.validate(m)) else MessageInvalid.from_issue(issues[0]) for m in messages]


@pytest.mark.parametrize("serializer_class", [PlainSerializer, PlainFrameSerializer])
def test_a_job_takes_the_path_its_serializer_offers(tmp_path, monkeypatch, serializer_class):
    instance = serializer_class()
    monkeypatch.setitem(SERIALIZERS, instance.name, lambda: instance)
    assert isinstance(instance, MessageSerializer)
    offers_frames = serializer_class is PlainFrameSerializer
    assert (frame_writer(instance) is instance) is offers_frames
    assert isinstance(instance, FrameWriter) is offers_frames

    f = frame()
    days = write_messages(MessageJob(tmp_path, MUNICIPALITY, f, serializer=instance.name))
    expected = {day: PlainSerializer().serialize(message_of(MUNICIPALITY, part.sort("seq")))
                for (day,), part in f.group_by("day", maintain_order=True)}
    assert {d.day: (tmp_path / d.file).read_bytes() for d in days} == expected  # the same files on either path
    if offers_frames:  # one serialize call for the flagged day; every other day rendered and checked in bulk
        assert instance.serialized == 1
        assert sorted(instance.checked) == sorted(v for k, v in expected.items() if k != instance.suspect_day)
    else:  # the interface's fallback: a serialize call per day
        assert instance.serialized == len(expected)
