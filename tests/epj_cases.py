"""Helpers for the cases of the two bundled EPJ mappings (test_readers_epj*.py): synthetic identifiers,
test files, and running the mapping reader into a sink."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tests.conftest import EXAMPLE_ROOT
from transforms.core.layout import DataRoot
from transforms.ingest.export import read_export_file
from transforms.ingest.mapping import load_mapping
from transforms.ingest.readers.base import ReadContext
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import Pseudonymizer, duf_check_digits, read_vault
from transforms.synthetic.ids import birth_number, break_check_digits
from transforms.tables import EPJ_TABLES, IDENTITY_PARTS, QUARANTINE
from transforms.tables.model import source_slug

EXAMPLES = EXAMPLE_ROOT / "raw" / "epj"
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


# --- more synthetic identifiers (test-data convention: birth month + 80, valid check digits) ------
DNR_1 = birth_number(14, 9, 47, d_number=True)          # a D-nummer later replaced by FNR_1
FNR_3 = birth_number(2, 3, 61)
BAD_DATE_NR = birth_number(31, 2, 50)  # check digits fine, 31 Feb
broken_check_digit = break_check_digits
DUF_1 = "2014123456" + duf_check_digits("2014123456")


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
