"""The two bundled EPJ mappings: epj-a-csv (brukere/tjenester/stopp) and epj-b-jsonl (events).

These cases were written for the record-at-a-time readers the mappings replace; the column-wise
reader must give every record the same fate, rule id and message.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from stdnum.no.fodselsnummer import calc_check_digit1, calc_check_digit2

from tests.privacy import find_identifiers
from transforms.core.layout import DataRoot
from transforms.ingest.export import read_export_file
from transforms.ingest.mapping import load_mapping
from transforms.ingest.mapping.model import RECORD_TABLES, TARGETS
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import Pseudonymizer, check_identifier, duf_check_digits, read_vault
from transforms.tables import EPJ_TABLES, IDENTITY_PARTS, QUARANTINE
from transforms.tables.model import source_slug

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "spec" / "examples" / "data-root" / "raw" / "epj"
PSEUDO = Pseudonymizer(b"k" * 32)
VAULT_KEY = b"v" * 32
UTC = dt.UTC
EPJ_A = load_mapping("epj-a-csv")
EPJ_B = load_mapping("epj-b-jsonl")


def read_epj_a_file(path: Path, sink: FileSink, context: ReadContext) -> None:
    read_export_file(path, sink, context, EPJ_A)


def read_epj_b_file(path: Path, sink: FileSink, context: ReadContext) -> None:
    read_export_file(path, sink, context, EPJ_B)

BRUKERE_HEADER = "kommunenr;brukernr;fnr;id_type;kjonn;fodselsar;bydel;dodsdato;registrert_tid"
TJENESTER_HEADER = ("kommunenr;brukernr;tjenesteid;tjenestetype;vedtaksdato;fra_dato;til_dato;utforer_orgnr;"
                    "timer_per_uke;registrert_tid;endringstype")
STOPP_HEADER = "kommunenr;tjenesteid;stoppid;fra_dato;til_dato;registrert_tid;endringstype"

# Example identifiers from the spec (synthetic: birth month + 80).
FNR_1 = "14894710005"
FNR_2 = "07834110096"


# --- synthetic identifiers (test-data convention: birth month + 80, valid check digits) -----------
def synthetic_number(day: int, month: int, year2: int, *, dnr: bool = False, start: int = 100,
                     must_be_valid: bool = True) -> str:
    """An 11-digit synthetic birth number; D-nummer adds 4 to the first digit."""
    for individual in range(start, 500):
        base = f"{day + 40 if dnr else day:02d}{month + 80:02d}{year2:02d}{individual:03d}"
        k1 = calc_check_digit1(base)
        if len(k1) != 1:
            continue
        k2 = calc_check_digit2(base + k1)
        if len(k2) != 1:
            continue
        number = base + k1 + k2
        if not must_be_valid or check_identifier(number, None, True).rule_id is None:
            return number
    raise AssertionError("no synthetic number found")


def broken_check_digit(number: str) -> str:
    return number[:10] + str((int(number[10]) + 1) % 10)


DNR_1 = synthetic_number(14, 9, 47, dnr=True)          # a D-nummer later replaced by FNR_1
FNR_3 = synthetic_number(2, 3, 61)
BAD_DATE_NR = synthetic_number(31, 2, 50, must_be_valid=False)  # check digits fine, 31 Feb
DUF_1 = "2014123456" + duf_check_digits("2014123456")


def test_synthetic_helpers():
    assert check_identifier(FNR_1, 1, True).rule_id is None
    assert check_identifier(FNR_2, 1, True).rule_id is None
    assert check_identifier(DNR_1, 2, True).id_type == 2
    assert check_identifier(FNR_3, 1, True).synthetic
    assert check_identifier(BAD_DATE_NR, 1, True).rule_id == "id.birth_date"
    assert check_identifier(broken_check_digit(FNR_1), 1, True).rule_id == "id.check_digits"
    assert check_identifier(DUF_1, 10, True).rule_id is None


# --- running a reader into a FileSink -----------------------------------------------------------
@dataclass
class Run:
    sink: FileSink
    root: Path
    staged: dict[str, pl.DataFrame]
    quarantine: pl.DataFrame

    def rows(self, table: str) -> list[dict]:
        return self.staged[table].sort("line").to_dicts()

    def rules(self) -> dict[int, str]:
        return dict(zip(self.quarantine["line"].to_list(), self.quarantine["rule_id"].to_list(), strict=True))

    def vault(self) -> pl.DataFrame:
        return read_vault(IDENTITY_PARTS.files(self.root), VAULT_KEY)


def make_sink(root: Path, rel: str, fmt: str, batch_rows: int = 50_000) -> FileSink:
    return FileSink(root=DataRoot(root), rel_path=rel, fmt=fmt, partition={"system": "test"},
                    pseudonymizer=PSEUDO, vault_key=VAULT_KEY, batch_rows=batch_rows)


def ctx(allow_synthetic: bool = True, system: str = "epj_a") -> ReadContext:
    return ReadContext(allow_synthetic_ids=allow_synthetic, system=system, reporting_kommune="3301")


def run(root: Path, path: Path, *, allow_synthetic: bool = True, batch_rows: int = 50_000) -> Run:
    rel = path.relative_to(root).as_posix()
    is_csv = path.suffix == ".csv"
    sink = make_sink(root, rel, "epj-a-csv" if is_csv else "epj-b-jsonl", batch_rows)
    reader = read_epj_a_file if is_csv else read_epj_b_file
    reader(path, sink, ctx(allow_synthetic, "epj_a" if is_csv else "epj_b"))
    sink.commit()
    assert_conserved(sink)
    slug = source_slug(rel)
    staged = {}
    for table in EPJ_TABLES:
        parts = sorted(table.files(root))
        frames = [pl.read_parquet(p) for p in parts if f"-{slug}-" in p.name]
        staged[table.name] = pl.concat(frames) if frames else table.empty()
        assert staged[table.name].columns == list(table.column_names)
    quarantine = pl.read_parquet(QUARANTINE.location(root, source=slug))
    return Run(sink, root, staged, quarantine)


def assert_conserved(sink: FileSink) -> None:
    kinds = set(sink.records_in) | set(sink.staged) | set(sink.quarantined)
    for kind in kinds:
        assert sink.records_in[kind] == sink.staged[kind] + sink.quarantined[kind], kind


def write(root: Path, rel: str, text: str | bytes, encoding: str | None = None) -> Path:
    """Write a test file: cp1252 for epj-a-csv, UTF-8 for epj-b-jsonl unless told otherwise."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = encoding or ("cp1252" if path.suffix == ".csv" else "utf-8")
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def csv_text(header: str, *rows: str) -> str:
    return "\r\n".join((header, *rows)) + "\r\n"


def jsonl(*events: dict | str) -> str:
    return "\n".join(e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events) + "\n"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def lineage(run_: Run, line: int, location: str, system: str, unit: str, registered_at: dt.datetime) -> dict:
    return {"source_file": run_.sink.rel_path, "line": line, "location": location, "system": system,
            "reporting_kommune": "3301", "unit": unit, "registered_at": registered_at}


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
