"""The bundled epj-a-csv mapping (brukere/tjenester/stopp) and the spec's example exports.

These cases were written for the record-at-a-time readers the mappings replace; the column-wise
reader must give every record the same fate, rule id and message.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from tests.epj_cases import (
    BAD_DATE_NR,
    BRUKERE_HEADER,
    DNR_1,
    DUF_1,
    EPJ_A,
    EPJ_B,
    EXAMPLES,
    FNR_1,
    FNR_2,
    FNR_3,
    PSEUDO,
    STOPP_HEADER,
    TJENESTER_HEADER,
    broken_check_digit,
    csv_text,
    ctx,
    lineage,
    make_sink,
    read_epj_a_file,
    run,
    utc,
    write,
)
from transforms.ingest.mapping.model import RECORD_TABLES, TARGETS
from transforms.ingest.readers.base import FileRejected
from transforms.privacy.identity import check_identifier


def test_synthetic_helpers():
    assert check_identifier(FNR_1, 1, True).rule_id is None
    assert check_identifier(FNR_2, 1, True).rule_id is None
    assert check_identifier(DNR_1, 2, True).id_type == 2
    assert check_identifier(FNR_3, 1, True).synthetic
    assert check_identifier(BAD_DATE_NR, 1, True).rule_id == "id.birth_date"
    assert check_identifier(broken_check_digit(FNR_1), 1, True).rule_id == "id.check_digits"
    assert check_identifier(DUF_1, 10, True).rule_id is None


# --- the spec's example files -------------------------------------------------------------------
@pytest.fixture
def example_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(EXAMPLES, root / "raw" / "epj")
    return root


def test_example_epj_a_reads_clean_with_exact_rows(example_root: Path):
    folder = example_root / "raw" / "epj" / "3301-a"
    persons = run(example_root, folder / "brukere.csv")
    services = run(example_root, folder / "tjenester.csv")
    stops = run(example_root, folder / "stopp.csv")
    for r in (persons, services, stops):
        assert r.quarantine.height == 0

    assert persons.rows("epj_persons") == [{
        **lineage(persons, 2, "brukernr=1001", "epj_a", "0602", utc(2016, 4, 28, 8, 2, 11)),  # CEST: UTC+2
        "user_no": "1001", "person_key": PSEUDO(FNR_1), "id_type": 1, "sex": 2, "birth_year": 1947,
        "district": None, "death_date": None,
    }]
    none_migrated = {"migrated_from_system": None, "migrated_from_service_id": None}
    assert services.rows("epj_service_versions") == [
        {**lineage(services, 2, "tjenesteid=A-00001", "epj_a", "0602", utc(2016, 4, 28, 8, 5, 40)),
         "user_no": "1001", "service_id": "A-00001", "service_code": "15", "decision_date": dt.date(2016, 4, 28),
         "start_date": dt.date(2016, 5, 2), "end_date": None, "provider_org": "974760673",
         "hours_per_week": 4.5, "change_type": "NY", **none_migrated},
        {**lineage(services, 3, "tjenesteid=A-00001", "epj_a", "3005", utc(2020, 9, 14, 11, 20, 2)),
         "user_no": "1001", "service_id": "A-00001", "service_code": "15", "decision_date": dt.date(2016, 4, 28),
         "start_date": dt.date(2016, 5, 2), "end_date": None, "provider_org": "974760673",
         "hours_per_week": 6.0, "change_type": "ENDRET", **none_migrated},
        {**lineage(services, 4, "tjenesteid=A-00002", "epj_a", "0602", utc(2016, 10, 20, 7, 0, 0)),
         "user_no": "1001", "service_id": "A-00002", "service_code": "29", "decision_date": dt.date(2016, 10, 20),
         "start_date": dt.date(2016, 11, 1), "end_date": None, "provider_org": None,
         "hours_per_week": None, "change_type": "NY", **none_migrated},
    ]
    loc = "tjenesteid=A-00001,stoppid=S-9"
    assert stops.rows("epj_stops") == [
        {**lineage(stops, 2, loc, "epj_a", "3005", utc(2020, 12, 1, 7, 30)),  # CET: UTC+1
         "service_id": "A-00001", "stop_id": "S-9", "from_date": dt.date(2020, 12, 1), "to_date": None,
         "change_type": "NY"},
        {**lineage(stops, 3, loc, "epj_a", "3005", utc(2020, 12, 21, 7, 10)),
         "service_id": "A-00001", "stop_id": "S-9", "from_date": dt.date(2020, 12, 1),
         "to_date": dt.date(2020, 12, 20), "change_type": "ENDRET"},
    ]
    assert persons.vault().to_dicts() == [{"person_key": PSEUDO(FNR_1), "fid": FNR_1, "id_type": 1}]


def test_example_epj_b_reads_clean_with_exact_rows(example_root: Path):
    # 986528098 fails the mod-11 check digit; it is kept (only a number that is not nine digits is rejected).
    result = run(example_root, example_root / "raw" / "epj" / "3301-b" / "events.jsonl")
    assert result.quarantine.height == 0
    assert result.rows("epj_persons") == [{
        **lineage(result, 1, "eventId=b-1", "epj_b", "3005", utc(2021, 3, 15, 6, 55)),
        "user_no": "c-1", "person_key": PSEUDO(FNR_1), "id_type": 1, "sex": 2, "birth_year": 1947,
        "district": None, "death_date": None,
    }]

    def service(line, unit, at, sid, code, org, hours, to, change, mig=(None, None)):
        return {**lineage(result, line, f"eventId=b-{line}", "epj_b", unit, at),
                "user_no": "c-1", "service_id": sid, "service_code": code, "decision_date": dt.date(2021, 3, 15),
                "start_date": dt.date(2021, 3, 15), "end_date": to, "provider_org": org, "hours_per_week": hours,
                "change_type": change, "migrated_from_system": mig[0], "migrated_from_service_id": mig[1]}

    assert result.rows("epj_service_versions") == [
        service(2, "3005", utc(2021, 3, 15, 7, 0), "B-00017", "15", "974760673", 6.0, None, "NY",
                ("epj_a", "A-00001")),
        service(3, "3005", utc(2021, 3, 15, 7, 0, 5), "B-00018", "29", None, None, None, "NY"),
        service(6, "3005", utc(2023, 1, 10, 10, 0), "B-00017", "15", "986528098", 6.0, None, "ENDRET"),
        service(7, "3301", utc(2024, 5, 3, 12, 0), "B-00017", "15", "986528098", 6.0, dt.date(2024, 5, 2),
                "ENDRET"),
    ]
    assert result.rows("epj_stops") == [
        {**lineage(result, 4, "eventId=b-4", "epj_b", "3005", utc(2022, 4, 1, 8, 0)),  # +02:00
         "service_id": "B-00017", "stop_id": "P-3", "from_date": dt.date(2022, 4, 1), "to_date": None,
         "change_type": "NY"},
        {**lineage(result, 5, "eventId=b-5", "epj_b", "3005", utc(2022, 4, 19, 7, 12)),
         "service_id": "B-00017", "stop_id": "P-3", "from_date": dt.date(2022, 4, 1),
         "to_date": dt.date(2022, 4, 18), "change_type": "ENDRET"},
    ]
    assert dict(result.sink.records_in) == {"person": 1, "service": 4, "stop": 2}


# --- epj-a-csv ------------------------------------------------------------------------------------
def test_csv_dnummer_replaced_by_fodselsnummer_and_id_types(tmp_path: Path):
    path = write(tmp_path, "raw/epj/a/brukere.csv", csv_text(
        BRUKERE_HEADER,
        f"0602;1001;{DNR_1};DNR;2;1947;Strømsø;;01.02.2016 09:00:00",
        f"0602;1001;{FNR_1};FNR;2;1947;Strømsø;;28.04.2016 10:02:11",
        f"0602;1002;{DNR_1};FNR;1;1947;;;28.04.2016 10:02:12",      # the digits say D-nummer
        f"3005;1003;{DUF_1};DUF;;;;;28.04.2016 10:02:13",
        "3005;1004;X-12345;ANNET;9;;;15.03.2022;28.04.2016 10:02:14",
        f"3005;1005;{FNR_3};HNR;1;1961;;;28.04.2016 10:02:15",      # declared H, digits F -> F
    ))
    result = run(tmp_path, path)
    assert result.quarantine.height == 0
    rows = result.rows("epj_persons")
    assert [(r["user_no"], r["person_key"], r["id_type"]) for r in rows] == [
        ("1001", PSEUDO(DNR_1), 2), ("1001", PSEUDO(FNR_1), 1), ("1002", PSEUDO(DNR_1), 2),
        ("1003", PSEUDO(DUF_1), 10), ("1004", PSEUDO("X-12345"), 9), ("1005", PSEUDO(FNR_3), 1),
    ]
    assert rows[0]["district"] == "Strømsø"  # cp1252 decoded
    assert rows[4]["death_date"] == dt.date(2022, 3, 15)
    assert rows[3]["sex"] is None and rows[3]["birth_year"] is None
    vault = {r["fid"]: r["id_type"] for r in result.vault().to_dicts()}
    assert vault == {DNR_1: 2, FNR_1: 1, DUF_1: 10, "X-12345": 9, FNR_3: 1}


def test_csv_service_rules(tmp_path: Path):
    ok = "0602;1001;A-1;15;28.04.2016;02.05.2016;;974760673;4,5;28.04.2016 10:05:40;NY"
    path = write(tmp_path, "raw/epj/a/tjenester.csv", csv_text(
        TJENESTER_HEADER,
        ok,                                                                                  # 2 staged
        ok,                                                                                  # 3
        "0602;1001;A-2;15;28.04.2016;02.05.2016;;974760673;4,5;28.04.2016 10:05:40",         # 4
        "",                                                                                  # 5 blank
        "0602;1001;A-3;15;28.04.2016;31.02.2016;;;;28.04.2016 10:05:40;NY",                  # 6
        "0602;1001;A-4;15;28.04.2016;02.05.2016;01.05.2016;;;28.04.2016 10:05:40;NY",        # 7
        "0602;1001;A-5;99;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY",                  # 8
        "0602;1001;A-6;15;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;SLETTET",             # 9
        "602;1001;A-7;15;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY",                   # 10
        "0602;1001;A-8;15;28.04.2016;02.05.2016;;;168,5;28.04.2016 10:05:40;NY",             # 11
        "0602;1001;A-9;15;28.04.2016;02.05.2016;;;fire;28.04.2016 10:05:40;NY",              # 12
        "0602;1001;A-10;15;28.04.2016;02.05.2016;;97476067;;28.04.2016 10:05:40;NY",         # 13
        "0602;1001;A-11;15;28.04.2016;;;;;28.04.2016 10:05:40;NY",                           # 14
        "0602;1001;A-12;15;28.04.2016;02.05.2016;01.05.2016;;;28.04.2016 10:05:40;ANNULLERT",  # 15
        "0602;1001;A-13;15;28.04.2016;02.05.2016;02.05.2016;;;28.04.2016 10:05:40;ANNULLERT",  # 16 staged
        "0602;1001;;15;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY",                     # 17
        "0602;1001;A-14;15;28.04.2016;02.05.2016;;;;2016-04-28 10:05;NY",                    # 18
        "0602;1001;A-15;15;28.04.2016;02.05.2016;;;;;NY",                                    # 19
        "0602;1001;A-16;15;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY;extra",           # 20
        "0602;;A-17;15;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY",                     # 21
        "0602;1001;A-18;15;28.04.2016;02.05.2016;;;0;27.10.2024 02:30:00;ENDRET",            # 22 staged
        "0602;1001;A-19;1²;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY",                 # 23
        "0602;1001;A-20;15;28.04.2016;02.05.2016;;;;01.01.0001 00:30:00;NY",                 # 24
        "06²2;1001;A-21;15;28.04.2016;02.05.2016;;;;28.04.2016 10:05:40;NY",                 # 25
        "0602;1001;A-22;15;28.04.2016;02.05.2016;;97476067²;;28.04.2016 10:05:40;NY",        # 26
        "0602;1001;A-23;15;28.04.2016;02.05.2016;;974760674;;28.04.2016 10:05:40;NY",        # 27 staged
    ))
    result = run(tmp_path, path)
    assert result.rules() == {
        3: "record.duplicate", 4: "record.malformed", 6: "date.unparseable", 7: "period.end_before_start",
        8: "code.unknown_service", 9: "code.unknown_value", 10: "code.unknown_value", 11: "hours.out_of_range",
        12: "number.unparseable", 13: "org.format", 14: "field.missing", 15: "period.end_before_start",
        17: "field.missing", 18: "date.unparseable", 19: "field.missing", 20: "record.malformed",
        21: "field.missing", 23: "code.unknown_service", 24: "date.unparseable", 25: "code.unknown_value",
        26: "org.format",
    }
    rows = result.rows("epj_service_versions")
    assert [(r["line"], r["service_id"], r["change_type"]) for r in rows] == [
        (2, "A-1", "NY"), (16, "A-13", "ANNULLERT"), (22, "A-18", "ENDRET"), (27, "A-23", "NY")]
    assert rows[3]["provider_org"] == "974760674"  # a failing check digit is kept
    # An ambiguous local time at the end of DST takes its first (summer time) occurrence.
    assert rows[2]["registered_at"] == utc(2024, 10, 27, 0, 30) and rows[2]["hours_per_week"] == 0.0
    assert dict(result.sink.records_in) == {"service": 25}  # the blank line is no record
    by_line = {r["line"]: r for r in result.quarantine.to_dicts()}
    assert by_line[3]["location"] == "tjenesteid=A-1"
    assert by_line[4]["location"] == "line=4"
    assert by_line[17]["location"] == "line=17"  # no location value to name the record by
    assert by_line[3]["raw_value"] == ok and by_line[3]["format"] == "epj-a-csv"
    assert set(result.quarantine["record_kind"]) == {"service"}
    assert set(result.quarantine["source_file"]) == {"raw/epj/a/tjenester.csv"}


def test_csv_person_rules(tmp_path: Path):
    ts = "28.04.2016 10:02:11"
    path = write(tmp_path, "raw/epj/a/brukere.csv", csv_text(
        BRUKERE_HEADER,
        f"0602;1001;{FNR_1};FNR;2;1947;;;{ts}",                        # 2 staged
        f"0602;1002;{broken_check_digit(FNR_2)};FNR;2;1941;;;{ts}",   # 3
        f"0602;1003;1234;FNR;2;1941;;;{ts}",                           # 4
        f"0602;1004;;FNR;2;1941;;;{ts}",                               # 5
        f"0602;1005;{FNR_2};XYZ;2;1941;;;{ts}",                        # 6
        f"0602;1006;{FNR_2};FNR;5;1941;;;{ts}",                        # 7
        f"0602;1007;{FNR_2};FNR;2;19x1;;;{ts}",                        # 8
        f"0602;1008;{FNR_2};FNR;2;1941;;2020-01-01;{ts}",              # 9
        f"0602;1009;{BAD_DATE_NR};FNR;2;1950;;;{ts}",                  # 10
        f"0602;;{FNR_2};FNR;2;1941;;;{ts}",                            # 11
        f"0602;1011;{broken_check_digit(FNR_3)};FNR;2;1961;;31.02.2020;{ts}",  # 12: the id's rule wins
        f"0602;1012;{FNR_2};FNR;2;1941;;;",                            # 13
        f"06020;1013;{FNR_2};FNR;2;1941;;;{ts}",                       # 14
        f"0602;1014;{FNR_2};;2;1941;;;{ts}",                           # 15
        f"0602;1015;{FNR_2};FNR;2;{FNR_3[1:]};;;{ts}",                 # 16: would overflow Int32
    ))
    result = run(tmp_path, path)
    assert result.rules() == {
        3: "id.check_digits", 4: "id.format", 5: "id.missing", 6: "code.unknown_value",
        7: "code.unknown_value", 8: "number.unparseable", 9: "date.unparseable", 10: "id.birth_date",
        11: "field.missing", 12: "id.check_digits", 13: "field.missing", 14: "code.unknown_value",
        15: "field.missing", 16: "number.unparseable",
    }
    assert [r["line"] for r in result.rows("epj_persons")] == [2]
    # Only the staged person's identifier is registered in the vault.
    assert result.vault()["fid"].to_list() == [FNR_1]
    assert result.quarantine["location"].to_list()[:2] == ["brukernr=1002", "brukernr=1003"]


def test_csv_stop_rules(tmp_path: Path):
    path = write(tmp_path, "raw/epj/a/stopp.csv", csv_text(
        STOPP_HEADER,
        "3005;A-1;S-1;01.12.2020;;01.12.2020 08:30:00;NY",                     # 2 staged
        "3005;A-1;S-2;01.12.2020;30.11.2020;01.12.2020 08:30:00;NY",           # 3
        "3005;A-1;S-3;01.12.2020;30.11.2020;01.12.2020 08:30:00;ANNULLERT",    # 4
        "3005;A-1;;01.12.2020;;01.12.2020 08:30:00;NY",                        # 5
        "3005;A-1;S-5;01.12.2020;;01.12.2020 08:30:00;X",                      # 6
        "3005;A-1;S-6;01.12.2020;01.12.2020 08:30:00;NY",                      # 7
        "3005;A-1;S-7;01.12.2020;01.12.2020;01.12.2020 08:30:00;ANNULLERT",    # 8 staged
        "3005;A-1;S-8;;;01.12.2020 08:30:00;NY",                               # 9
        "3005;A-1;S-1;01.12.2020;;01.12.2020 08:30:00;NY",                     # 10
    ))
    result = run(tmp_path, path)
    assert result.rules() == {3: "period.end_before_start", 4: "period.end_before_start", 5: "field.missing",
                              6: "code.unknown_value", 7: "record.malformed", 9: "field.missing",
                              10: "record.duplicate"}
    rows = result.rows("epj_stops")
    assert [(r["line"], r["stop_id"], r["change_type"], r["to_date"]) for r in rows] == [
        (2, "S-1", "NY", None), (8, "S-7", "ANNULLERT", dt.date(2020, 12, 1))]
    assert result.quarantine["location"].to_list()[0] == "tjenesteid=A-1,stoppid=S-2"


def test_csv_columns_are_found_by_header_name(tmp_path: Path):
    header = "endringstype;registrert_tid;til_dato;fra_dato;stoppid;tjenesteid;kommunenr"
    path = write(tmp_path, "raw/epj/a/stopp.csv", csv_text(header, "NY;01.12.2020 08:30:00;;01.12.2020;S-1;A-1;3005"))
    rows = run(tmp_path, path).rows("epj_stops")
    assert [(r["service_id"], r["stop_id"], r["unit"], r["from_date"]) for r in rows] == [
        ("A-1", "S-1", "3005", dt.date(2020, 12, 1))]


def test_csv_header_ending_in_separator(tmp_path: Path):
    path = write(tmp_path, "raw/epj/a/stopp.csv", csv_text(
        STOPP_HEADER + ";",
        "3005;A-1;S-1;01.12.2020;;01.12.2020 08:30:00;NY;",
        "3005;A-1;S-2;01.12.2020;;01.12.2020 08:30:00;NY;x",
        "3005;A-1;S-3;01.12.2020;;01.12.2020 08:30:00;NY",
    ))
    result = run(tmp_path, path)
    assert result.rules() == {3: "record.malformed", 4: "record.malformed"}
    assert result.rows("epj_stops")[0]["change_type"] == "NY"


def test_bundled_mappings_fill_exactly_their_tables():
    context = {"source_file", "line", "location", "system", "reporting_kommune"}
    derived = {"national_id": {"person_key"}, "id_type": {"id_type"}}
    assert [r.file for r in EPJ_A.records.values()] == ["brukere.csv", "tjenester.csv", "stopp.csv"]
    for mapping in (EPJ_A, EPJ_B):
        for name, record in mapping.records.items():
            filled = set(context)
            for column in record.columns:
                assert column.target in TARGETS[name]
                filled |= derived.get(column.target, {column.target})
            unfilled = set(RECORD_TABLES[name].schema) - filled
            assert unfilled <= {"migrated_from_system", "migrated_from_service_id"}, (mapping.name, unfilled)


def test_csv_header_mismatch_unknown_name_and_empty_file(tmp_path: Path):
    sink = make_sink(tmp_path, "raw/epj/a/tjenester.csv", "epj-a-csv")
    path = write(tmp_path, "raw/epj/a/tjenester.csv",
                 csv_text(TJENESTER_HEADER.replace(";utforer_orgnr", "").replace("timer_per_uke", "timer")))
    with pytest.raises(FileRejected) as info:
        read_epj_a_file(path, sink, ctx())
    assert info.value.rejection.rule_id == "file.unknown_layout"
    assert "utforer_orgnr" in str(info.value) and "timer_per_uke" in str(info.value)

    other = write(tmp_path, "raw/epj/a/vedtak.csv", csv_text(TJENESTER_HEADER))
    with pytest.raises(FileRejected) as info:
        read_epj_a_file(other, sink, ctx())
    assert info.value.rejection.rule_id == "file.unknown_layout"

    empty = write(tmp_path, "raw/epj/b/stopp.csv", b"")
    with pytest.raises(FileRejected) as info:
        read_epj_a_file(empty, sink, ctx())
    assert info.value.rejection.rule_id == "file.unreadable"
    sink.discard()


@pytest.mark.parametrize("data", [
    # 0x81 is undefined in Windows-1252
    csv_text(BRUKERE_HEADER, f"0602;1001;{FNR_1};FNR;2;1947;Str\x81ms;;28.04.2016 10:02:11").encode("latin-1"),
    # a UTF-8 file: cp1252 would silently read 'StrÃ¸msÃ¸'
    csv_text(BRUKERE_HEADER, f"0602;1001;{FNR_1};FNR;2;1947;Strømsø;;28.04.2016 10:02:11").encode("utf-8"),
    # UTF-16
    csv_text(BRUKERE_HEADER, f"0602;1001;{FNR_1};FNR;2;1947;;;28.04.2016 10:02:11").encode("utf-16"),
])
def test_csv_not_cp1252_is_rejected_whole(tmp_path: Path, data: bytes):
    path = write(tmp_path, "raw/epj/a/brukere.csv", data)
    sink = make_sink(tmp_path, "raw/epj/a/brukere.csv", "epj-a-csv")
    with pytest.raises(FileRejected) as info:
        read_epj_a_file(path, sink, ctx())
    assert info.value.rejection.rule_id == "file.encoding_mismatch"
    sink.discard()


def test_csv_encoding_error_late_in_file_rejects_the_whole_file(tmp_path: Path):
    ok = [f"0602;{1000 + i};{FNR_1};FNR;2;1947;;;28.04.2016 10:02:{i:02d}" for i in range(50)]
    data = csv_text(BRUKERE_HEADER, *ok).encode("cp1252") + b"0602;2000;x;ANNET;;;\x9d;;28.04.2016 10:02:11\r\n"
    path = write(tmp_path, "raw/epj/a/brukere.csv", data)
    sink = make_sink(tmp_path, "raw/epj/a/brukere.csv", "epj-a-csv", batch_rows=10)
    with pytest.raises(FileRejected) as info:
        read_epj_a_file(path, sink, ctx())
    assert info.value.rejection.rule_id == "file.encoding_mismatch" and "line 52" in str(info.value)
    sink.discard()  # what the orchestrator does: nothing of the file is published
    assert not list((tmp_path / "staging").rglob("*.parquet"))
