"""The bundled epj-b-jsonl mapping (events), and what both bundled mappings share.

These cases were written for the record-at-a-time readers the mappings replace; the column-wise
reader must give every record the same fate, rule id and message.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from tests.epj_cases import (
    BAD_DATE_NR,
    BRUKERE_HEADER,
    DNR_1,
    DUF_1,
    FNR_1,
    FNR_2,
    FNR_3,
    PSEUDO,
    STOPP_HEADER,
    TJENESTER_HEADER,
    broken_check_digit,
    csv_text,
    ctx,
    jsonl,
    make_sink,
    read_epj_b_file,
    run,
    utc,
    write,
)
from tests.privacy import find_identifiers
from transforms.ingest.readers.base import FileRejected


# --- epj-b-jsonl ----------------------------------------------------------------------------------
def client(eid: str, nid: str | None, id_type: str = "FNR", **extra) -> dict:
    body = {"nationalId": nid, "idType": id_type, "sex": 2, "birthYear": 1947, "district": None,
            "deathDate": None}
    event = {"eventId": eid, "recordedAt": "2021-03-15T07:55:00+01:00", "kind": "client",
             "municipality": "3005", "clientId": "c-1", "client": body}
    for key, value in extra.items():
        (body if key in body else event)[key] = value
    return event


def service(eid: str, sid: str = "S-1", status: str = "ACTIVE", **extra) -> dict:
    body = {"id": sid, "code": "15", "decisionDate": "2021-03-10", "from": "2021-03-15", "to": None,
            "providerOrg": "974760673", "weeklyHours": 4.5, "status": status}
    event = {"eventId": eid, "recordedAt": "2021-03-15T08:12:00+01:00", "kind": "service",
             "municipality": "3005", "clientId": "c-1", "service": body}
    for key, value in extra.items():
        (body if key in body else event)[key] = value
    return event


def pause(eid: str, pid: str = "P-1", status: str = "ACTIVE", **extra) -> dict:
    body = {"id": pid, "serviceId": "S-1", "from": "2022-04-01", "to": None, "status": status}
    event = {"eventId": eid, "recordedAt": "2022-04-01T10:00:00+02:00", "kind": "pause",
             "municipality": "3005", "clientId": "c-1", "pause": body}
    for key, value in extra.items():
        (body if key in body else event)[key] = value
    return event


def test_jsonl_rules_and_status_mapping(tmp_path: Path):
    first = client("e-1", FNR_1)
    bad_org = service("e-7", providerOrg="97476067X")
    no_body = service("e-18")
    del no_body["service"]
    no_client_id = client("e-24", FNR_2)
    del no_client_id["clientId"]
    truncated = json.dumps(service("e-22"))[:90]
    path = write(tmp_path, "raw/epj/b/events.jsonl", jsonl(
        first,                                                      # 1 staged
        "   ",                                                      # 2 blank
        "not json {",                                               # 3
        "[1, 2]",                                                   # 4
        {"eventId": "e-5", "kind": "visit", "municipality": "3005"},  # 5
        first,                                                      # 6
        bad_org,                                                    # 7 (first version of S-1, quarantined)
        service("e-8"),                                             # 8 staged NY
        service("e-9", weeklyHours=6),                              # 9 staged ENDRET
        service("e-10", status="CANCELLED"),                        # 10 staged ANNULLERT
        service("e-11", status="PAUSED"),                           # 11
        service("e-12", municipality="301"),                        # 12
        client("e-13", broken_check_digit(FNR_2)),                  # 13
        service("e-14", sid="S-2", to="2021-03-14"),                # 14
        pause("e-15", to="2022-03-31"),                             # 15
        pause("e-16"),                                              # 16 staged NY
        pause("e-17", status="CANCELLED", to="2022-04-02"),         # 17 staged ANNULLERT
        no_body,                                                    # 18
        service("e-19", recordedAt="15.03.2021 08:00:00"),          # 19
        service("e-20", weeklyHours=170),                           # 20
        client("e-21", FNR_2, id_type="PASSPORT"),                  # 21
        truncated,                                                  # 22
        client("e-23", DNR_1, id_type="DNR", sex="1", birthYear=None, district="Bragernes",
               deathDate="2023-02-01"),                             # 23 staged
        no_client_id,                                               # 24
        service("e-25", sid="S-3", code="99"),                      # 25
        service("e-26", sid="S-4", status="CANCELLED",
                migratedFrom={"system": "epj_a", "serviceId": "A-9"}),  # 26 staged ANNULLERT
        service("e-27", sid="S-4", to="2021-03-14", status="CANCELLED"),  # 27: not more lenient
        {"kind": "service", "eventId": "e-28", "service": "S-1"},   # 28
        pause("e-29", pid="P-2", serviceId="S-9", **{"from": None}),  # 29
        client("e-30", FNR_2, deathDate=20230201),                  # 30
        {"eventId": "e-31", "municipality": "3005"},                # 31
        service("e-32", recordedAt="0001-01-01T00:00:00+01:00"),    # 32
        client("e-33", FNR_2, birthYear=7834110096),                # 33
        service("e-34", code="1²"),                                 # 34
        "[" * 100_000,                                              # 35
    ))
    result = run(tmp_path, path)
    assert result.rules() == {
        3: "record.malformed", 4: "record.malformed", 5: "code.unknown_value", 6: "record.duplicate",
        7: "org.format", 11: "code.unknown_value", 12: "code.unknown_value", 13: "id.check_digits",
        14: "period.end_before_start", 15: "period.end_before_start", 18: "field.missing",
        19: "date.unparseable", 20: "hours.out_of_range", 21: "code.unknown_value", 22: "record.malformed",
        24: "field.missing", 25: "code.unknown_service", 27: "period.end_before_start",
        28: "record.malformed", 29: "field.missing", 30: "date.unparseable", 31: "field.missing",
        32: "date.unparseable", 33: "number.unparseable", 34: "code.unknown_service", 35: "record.malformed",
    }
    services = result.rows("epj_service_versions")
    assert [(r["line"], r["service_id"], r["change_type"], r["hours_per_week"]) for r in services] == [
        (8, "S-1", "NY", 4.5), (9, "S-1", "ENDRET", 6.0), (10, "S-1", "ANNULLERT", 4.5),
        (26, "S-4", "ANNULLERT", 4.5)]
    assert services[0]["registered_at"] == utc(2021, 3, 15, 7, 12)
    assert services[0]["migrated_from_system"] is None
    assert (services[3]["migrated_from_system"], services[3]["migrated_from_service_id"]) == ("epj_a", "A-9")
    stops = result.rows("epj_stops")
    assert [(r["line"], r["stop_id"], r["change_type"]) for r in stops] == [(16, "P-1", "NY"),
                                                                            (17, "P-1", "ANNULLERT")]
    persons = result.rows("epj_persons")
    assert [(r["line"], r["person_key"], r["id_type"], r["sex"], r["district"], r["death_date"])
            for r in persons] == [(1, PSEUDO(FNR_1), 1, 2, None, None),
                                  (23, PSEUDO(DNR_1), 2, 1, "Bragernes", dt.date(2023, 2, 1))]
    assert dict(result.sink.records_in) == {"person": 8, "service": 17, "stop": 4, "record": 5}
    by_line = {r["line"]: r for r in result.quarantine.to_dicts()}
    assert by_line[3]["location"] == "line=3" and by_line[3]["record_kind"] == "record"
    assert by_line[22]["record_kind"] == "service"  # not JSON, but its text says which kind
    assert by_line[7]["location"] == "eventId=e-7"
    assert set(result.quarantine["format"]) == {"epj-b-jsonl"}
    assert result.vault()["fid"].sort().to_list() == sorted([FNR_1, DNR_1])


def test_jsonl_crlf_bom_and_split_files(tmp_path: Path):
    data = ("\ufeff" + json.dumps(client("e-1", FNR_1)) + "\r\n\r\n" + json.dumps(service("e-3")) + "\r\n")
    path = write(tmp_path, "raw/epj/b/events-0001.jsonl", data)
    result = run(tmp_path, path)
    assert result.quarantine.height == 0
    assert [r["line"] for r in result.rows("epj_service_versions")] == [3]
    assert result.rows("epj_persons")[0]["location"] == "eventId=e-1"


def test_jsonl_invalid_utf8_is_rejected_whole(tmp_path: Path):
    data = jsonl(client("e-1", FNR_1)).encode("utf-8") + json.dumps(
        service("e-2", clientId="Strømsø")).encode("utf-8").replace(b"\\u00f8", b"\xf8") + b"\n"
    path = write(tmp_path, "raw/epj/b/events.jsonl", data)
    sink = make_sink(tmp_path, "raw/epj/b/events.jsonl", "epj-b-jsonl")
    with pytest.raises(FileRejected) as info:
        read_epj_b_file(path, sink, ctx(system="epj_b"))
    assert info.value.rejection.rule_id == "file.encoding_mismatch" and "line 2" in str(info.value)
    sink.discard()


# --- both readers ---------------------------------------------------------------------------------
def test_synthetic_identifiers_refused_when_not_allowed(tmp_path: Path):
    csv_path = write(tmp_path, "raw/epj/a/brukere.csv", csv_text(
        BRUKERE_HEADER, f"0602;1001;{FNR_1};FNR;2;1947;;;28.04.2016 10:02:11",
        "0602;1002;X-1;ANNET;2;1947;;;28.04.2016 10:02:11"))
    a = run(tmp_path, csv_path, allow_synthetic=False)
    assert a.rules() == {2: "id.synthetic_not_allowed"}
    assert [r["user_no"] for r in a.rows("epj_persons")] == ["1002"]
    jsonl_path = write(tmp_path, "raw/epj/b/events.jsonl", jsonl(client("e-1", FNR_1), client("e-2", DNR_1,
                                                                                             "DNR")))
    b = run(tmp_path, jsonl_path, allow_synthetic=False)
    assert b.rules() == {1: "id.synthetic_not_allowed", 2: "id.synthetic_not_allowed"}
    assert b.staged["epj_persons"].height == 0


def test_no_raw_identifier_in_any_parquet_file(tmp_path: Path):
    bad = broken_check_digit(FNR_2)
    ids = [FNR_1, FNR_2, FNR_3, DNR_1, bad, BAD_DATE_NR, DUF_1]
    ts = "28.04.2016 10:02:11"
    paths = [
        write(tmp_path, "raw/epj/a/brukere.csv", csv_text(
            BRUKERE_HEADER,
            f"0602;1001;{FNR_1};FNR;2;1947;;;{ts}",
            f"0602;1001;{FNR_1};FNR;2;1947;;;{ts}",                # duplicate: raw value in quarantine
            f"0602;1002;{bad};FNR;2;1941;;;{ts}",
            f"0602;1003;{BAD_DATE_NR};FNR;2;1950;;;{ts}",
            f"0602;1004;{FNR_2};FNR;2;1941;;{FNR_3};{ts}",          # identifier in a date field
            f"0602;{DNR_1};{DUF_1};DUF;2;1941;;;bad",              # identifier where brukernr belongs
            f"0602;1006;{FNR_3};FNR;2;1961;;;{ts};extra",          # malformed
        )),
        write(tmp_path, "raw/epj/a/tjenester.csv", csv_text(
            TJENESTER_HEADER,
            f"0602;1001;{FNR_2};15;28.04.2016;02.05.2016;;;;{ts};X",  # identifier as service id (location)
            f"0602;1001;A-1;15;28.04.2016;{DNR_1};;;;{ts};NY",
        )),
        write(tmp_path, "raw/epj/b/events.jsonl", jsonl(
            client("e-1", FNR_1),
            client(FNR_2, bad),                                    # identifier as event id (location)
            client("e-3", BAD_DATE_NR),
            client("e-4", FNR_3, birthYear=FNR_2),
            "{" + f'"kind": "client", "client": {{"nationalId": "{DNR_1}"', # not JSON
            client("e-6", DUF_1, "DUF", deathDate=DNR_1),
        ), encoding="utf-8"),
    ]
    results = [run(tmp_path, p) for p in paths]
    assert sum(r.quarantine.height for r in results) >= 10
    assert sum(r.staged["epj_persons"].height for r in results) == 2
    parquet_files = list(tmp_path.rglob("*.parquet"))
    assert len(parquet_files) >= 8
    for file in parquet_files:
        data = file.read_bytes()
        frame = pl.read_parquet(file)
        text_columns = [c for c, t in frame.schema.items() if t == pl.Utf8]
        for identifier in ids:
            assert identifier.encode() not in data, (file.name, identifier)
            for column in text_columns:
                assert not frame[column].str.contains(identifier, literal=True).any(), (file.name, column)
    assert find_identifiers(parquet_files, set(ids)) == []
    locations = pl.concat([r.quarantine for r in results])["location"].to_list()
    assert any(loc.startswith("tjenesteid=<id:") for loc in locations)
    assert any(loc.startswith("eventId=<id:") for loc in locations)


def test_streaming_in_batches_without_reading_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a reader must stream, not read a whole file")

    rows = [f"3005;A-{i // 3};S-{i};01.12.2020;;01.12.2020 08:30:00;NY" for i in range(5_000)]
    csv_path = write(tmp_path, "raw/epj/a/stopp.csv", csv_text(STOPP_HEADER, *rows, rows[17]))
    events = [pause(f"e-{i}", pid=f"P-{i % 1000}") for i in range(3_000)]
    jsonl_path = write(tmp_path, "raw/epj/b/events.jsonl", jsonl(*events))
    for name in ("read_text", "read_bytes"):
        monkeypatch.setattr(Path, name, forbidden)
    a = run(tmp_path, csv_path, batch_rows=1_000)
    b = run(tmp_path, jsonl_path, batch_rows=1_000)
    monkeypatch.undo()
    assert a.staged["epj_stops"].height == 5_000 and a.rules() == {5_002: "record.duplicate"}
    assert len(list((tmp_path / "staging" / "epj" / "system=test").glob("epj_stops-*stopp.csv-*.parquet"))) == 5
    assert b.staged["epj_stops"].height == 3_000
    assert b.staged["epj_stops"]["change_type"].value_counts().sort("change_type").rows() == [
        ("ENDRET", 2_000), ("NY", 1_000)]
