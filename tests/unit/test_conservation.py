"""The conservation table counts the Parquet as written, also when it was counted before in the process."""

import os
from typing import ClassVar

import polars as pl

from tests.unit.test_readers_iplos import bruker, doc37, read, tjeneste
from transforms.core import duck
from transforms.core.settings import load_settings
from transforms.ingest import conservation
from transforms.ingest.conservation import conservation_table, count_outputs, quarantine_frame
from transforms.synthetic.ids import birth_number
from transforms.tables import IPLOS_SERVICES


def _services(table: pl.DataFrame) -> tuple[int, int, bool]:
    row = table.filter(pl.col("record_kind") == "service").row(0, named=True)
    return row["records_in"], row["staged"], row["balanced"]


def test_a_rewritten_or_removed_part_is_counted_again(tmp_path):
    persons = "".join(bruker(birth_number(day, 3, 50), tjeneste(f"T-{day}") + tjeneste(f"U-{day}"), str(day))
                      for day in range(1, 4))
    read(tmp_path, doc37(persons))
    settings = load_settings(tmp_path)
    assert _services(conservation_table(settings)) == (6, 6, True)
    assert _services(conservation_table(settings)) == (6, 6, True)  # counted again from what it remembers
    (part,) = IPLOS_SERVICES.files(tmp_path)
    stat = part.stat()
    pl.read_parquet(part).head(5).write_parquet(part)  # a reader that lost a record
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert _services(conservation_table(settings)) == (6, 5, False)
    part.unlink()
    assert _services(conservation_table(settings)) == (6, 0, False)


class _Queries:
    """A DuckDB connection that remembers the Parquet scans it was asked for."""

    scans: ClassVar[list[str]] = []

    def __init__(self, con):
        self.con = con

    def sql(self, query: str):
        if "read_parquet" in query:
            _Queries.scans.append(query)
        return self.con.sql(query)

    def __getattr__(self, name: str):
        return getattr(self.con, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.con.close()


def test_outputs_counted_while_staging_are_not_read_again(tmp_path, monkeypatch):
    persons = "".join(bruker(birth_number(day, 3, 50), tjeneste(f"T-{day}"), str(day)) for day in range(1, 4))
    persons += bruker("123", tjeneste("T-9"), "9")  # quarantined with its service
    read(tmp_path, doc37(persons))
    settings = load_settings(tmp_path)
    connect = duck.connect
    monkeypatch.setattr(conservation.duck, "connect", lambda *a, **k: _Queries(connect(*a, **k)))
    _Queries.scans.clear()
    count_outputs(settings, [("raw/iplos/2019/0602.xml", {"year": "2019", "unit": "0602"})])
    assert _Queries.scans  # counted here, from the Parquet written
    _Queries.scans.clear()
    table = conservation_table(settings)
    assert _Queries.scans == []  # ... and not read again by the check
    assert _services(table) == (4, 3, True)
    monkeypatch.setattr(conservation.pl, "read_parquet", None)  # the quarantine rows were kept too
    assert quarantine_frame(settings)["rule_id"].to_list() == ["id.format", "id.parent_quarantined"]
