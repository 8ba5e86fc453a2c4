"""The column-wise value rules agree with the scalar rules (the record-at-a-time readers' parsers) on
every value, good or bad: same staged value, same rule id, same message."""

from __future__ import annotations

import random

import polars as pl
import pytest
from stdnum.no.fodselsnummer import calc_check_digit1, calc_check_digit2

from transforms.ingest.values import scalar
from transforms.ingest.values.column import parse
from transforms.ingest.values.fields import FieldError
from transforms.ingest.values.persons import check
from transforms.ingest.values.spec import JsonType, ValueSpec
from transforms.privacy.identity import check_identifier, duf_check_digits

SPECS = [
    ValueSpec("date", "fra_dato", date_format="%d.%m.%Y"),
    ValueSpec("date", "fra_dato", required=True, date_format="%d.%m.%Y"),
    ValueSpec("date", "Fra", date_format="%d/%m/%Y"),
    ValueSpec("date", "service.from", json=True),
    ValueSpec("timestamp", "registrert_tid", timestamp_format="%d.%m.%Y %H:%M:%S"),
    ValueSpec("timestamp", "recordedAt"),
    ValueSpec("timestamp", "recordedAt", json=True),
    ValueSpec("hours", "h", decimal_comma=True), ValueSpec("hours", "h"),
    ValueSpec("year", "y"), ValueSpec("sex", "s"), ValueSpec("sex", "s", value_map=(("M", 1), ("K", 2))),
    ValueSpec("integer", "i"), ValueSpec("service_code", "c"),
    ValueSpec("service_code", "c", value_map=(("HJSP", "15"), ("BOLIG", "29"), ("X", "99"))),
    ValueSpec("org", "o"), ValueSpec("kommunenr", "k"), ValueSpec("text", "t"), ValueSpec("text", "t", required=True),
    ValueSpec("code", "id_type", value_map=(("FNR", 1), ("DNR", 2))), ValueSpec("identifier", "fnr"),
]
EDGES = [
    "", " ", None, "01.05.2021", "1.5.2021", "31.02.2019", "00.01.2020", "01.01.0000", "+1.02.2020", "2021-03-15",
    "15/03/2021", "2021-03-15T08:12:00+01:00", "2021-03-15T08:12:00", "2021-03-15T08:12:00Z",
    "2021-03-15T08:12:00+25:00", "27.10.2024 02:30:00", "31.03.2024 02:30:00", "01.01.0001 00:30:00",
    "15.03.2021 08:00:60", "15.03.2021 08:00:00", "4,5", "4.5", "168", "168,5", "200,0", "fire", "1e3", "1_000",
    "nan", "015", "15", "1²", "99", "974760673", "97476067", "97476067²", "3005", "301", "06²2", "FNR", "fnr",
    " DNR ", "XYZ", "1947", "19x1", "5", "2", "9", "0", "-0", "+5", "7834110096", "1850", "1849", " x ", "x\x1c",
    "hjsp", "BOLIG", "M", "k", "14894710005", " 148 947 100 05 ",
]


def _scalar(spec: ValueSpec, value):
    try:
        return scalar.apply(spec, value), None, None
    except FieldError as exc:
        return None, exc.rejection.rule_id, exc.rejection.message


def _random_values(n: int) -> list[str]:
    rng = random.Random(7)
    alphabet = "0123456789.,-/: TZ+abc"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) if rng.random() < 0.5 else
        rng.choice(EDGES[3:]) for _ in range(n)
    ]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.name}-{s.required}")
def test_column_rule_equals_scalar_rule(spec: ValueSpec):
    values = EDGES + _random_values(2_000)
    parsed = parse(spec, pl.Series(values, dtype=pl.Utf8),
                   pl.Series([None if v is None else int(JsonType.STRING) for v in values], dtype=pl.Int8)
                   if spec.json else None)
    for value, got, rule, message in zip(values, parsed.values.to_list(), parsed.rule.to_list(),
                                         parsed.message.to_list(), strict=True):
        assert (got, rule, message) == _scalar(spec, value), value


def test_json_values_keep_their_type():
    """A number is a text like its digits; a boolean or object in a text field is a malformed record."""
    spec = ValueSpec("text", "service.id", required=True, json=True)
    types = [int(JsonType.INT), int(JsonType.BOOL), int(JsonType.OBJECT), int(JsonType.BAD_PARENT)]
    parsed = parse(spec, pl.Series(["15", "true", '{"a": 1}', "service"]), pl.Series(types, dtype=pl.Int8))
    assert parsed.values.to_list()[0] == "15"
    assert parsed.rule.to_list() == [None, "record.malformed", "record.malformed", "record.malformed"]
    assert parsed.message.to_list()[1:] == ["service.id is a JSON bool, expected a value",
                                            "service.id is a JSON dict, expected a value",
                                            "service is not a JSON object"]


def test_identifier_check_equals_the_reference():
    rng = random.Random(3)
    numbers, declared = [], []
    for _ in range(30_000):
        r = rng.random()
        if r < 0.6:
            base = f"{rng.randint(0, 79):02d}{rng.randint(0, 99):02d}{rng.randint(0, 99):02d}{rng.randint(0, 999):03d}"
            k1 = calc_check_digit1(base)[-1]
            number = base + k1 + calc_check_digit2(base + k1)[-1] if rng.random() < 0.8 else base + "00"
        elif r < 0.7:
            first = str(rng.randint(10**9, 10**10 - 1))
            number = first + (duf_check_digits(first) if rng.random() < 0.7 else "00")
        else:
            number = rng.choice(["", "X-12345", "123", "1²345678901", str(rng.randint(0, 10**12))])
        numbers.append(number)
        declared.append(rng.choice([None, 1, 2, 3, 9, 10]))
    for allow in (True, False):
        got = check(pl.Series(numbers), pl.Series(declared, dtype=pl.Int32), allow)
        for number, kind, (rule, message, id_type) in zip(numbers, declared, got.iter_rows(), strict=True):
            ref = check_identifier(number, kind, allow)
            assert (rule, message) == (ref.rule_id, ref.message), number
            if rule is None:
                assert id_type == (ref.id_type if ref.id_type is not None else (kind or 9)), number
