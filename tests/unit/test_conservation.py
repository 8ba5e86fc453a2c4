"""The conservation table counts the Parquet as written, also when it was counted before in the process."""

import os
import shutil

import polars as pl

from tests.epj_cases import EXAMPLES
from tests.epj_cases import run as run_epj
from tests.unit.test_readers_iplos import bruker, doc37, make_sink, read, tjeneste
from transforms.core.settings import load_settings
from transforms.ingest import conservation
from transforms.ingest.conservation import conservation_table, quarantine_frame
from transforms.ingest.readers.base import ReadContext
from transforms.ingest.readers.iplos_xml import read_iplos_file
from transforms.synthetic.ids import birth_number
from transforms.tables import EPJ_SERVICE_VERSIONS, IPLOS_SERVICES, IPLOS_STOPS, QUARANTINE


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



def test_a_later_process_takes_the_recorded_counts_and_counts_a_rewritten_part_again(tmp_path, monkeypatch):
    persons = "".join(bruker(birth_number(day, 3, 50), tjeneste(f"T-{day}") + tjeneste(f"U-{day}"), str(day))
                      for day in range(1, 4))
    read(tmp_path, doc37(persons))
    settings = load_settings(tmp_path)
    assert _services(conservation_table(settings)) == (6, 6, True)
    assert (tmp_path / "staging" / conservation.COUNTS_FILE).is_file()
    monkeypatch.setattr(conservation, "_COUNTED", {})  # a new process: only the record in the data root
    sql_list = conservation.sql_list
    monkeypatch.setattr(conservation, "sql_list", None)  # no Parquet file is read
    assert _services(conservation_table(settings)) == (6, 6, True)
    (part,) = IPLOS_SERVICES.files(tmp_path)
    stat = part.stat()
    pl.read_parquet(part).head(4).write_parquet(part)  # a reader that lost two records
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    monkeypatch.setattr(conservation, "_COUNTED", {})
    monkeypatch.setattr(conservation, "sql_list", sql_list)
    assert _services(conservation_table(settings)) == (6, 4, False)
    monkeypatch.setattr(conservation, "_COUNTED", {})
    (tmp_path / "staging" / conservation.COUNTS_FILE).write_bytes(b"not arrow")  # a damaged record: counted again
    assert _services(conservation_table(settings)) == (6, 4, False)


def test_quarantine_rows_are_read_again_only_from_a_changed_file(tmp_path, monkeypatch):
    persons = bruker(birth_number(1, 3, 50), tjeneste("T-1"), "1") + bruker("123", tjeneste("T-9"), "9")
    read(tmp_path, doc37(persons))
    settings = load_settings(tmp_path)
    rules = ["id.format", "id.parent_quarantined"]
    assert quarantine_frame(settings)["rule_id"].to_list() == rules
    read_parquet = pl.read_parquet
    monkeypatch.setattr(conservation.pl, "read_parquet", None)
    assert quarantine_frame(settings)["rule_id"].to_list() == rules  # kept: nothing read
    (path,) = QUARANTINE.files(tmp_path)
    stat = path.stat()
    read_parquet(path).head(1).write_parquet(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    monkeypatch.setattr(conservation.pl, "read_parquet", read_parquet)
    assert quarantine_frame(settings)["rule_id"].to_list() == rules[:1]


def test_a_file_staged_in_several_parts_is_counted_over_all_of_them(tmp_path):
    persons = "".join(bruker(birth_number(day, 3, 50), tjeneste(f"T-{day}") + tjeneste(f"U-{day}"), str(day))
                      for day in range(1, 4))
    path = tmp_path / "in.xml"
    path.write_bytes(doc37(persons).encode("iso-8859-1"))
    sink = make_sink(tmp_path)
    sink.batch_rows = 2  # six services: three parts
    read_iplos_file(path, sink, ReadContext(True, year=2019, unit="0602"))
    sink.commit()
    assert len(IPLOS_SERVICES.files(tmp_path)) == 3
    assert _services(conservation_table(load_settings(tmp_path))) == (6, 6, True)


def test_the_counts_taken_as_written_are_the_counts_of_the_files(tmp_path, monkeypatch):
    """Whatever the rows (one source file, several, a null; an assessment's rows per scored variable), the counts
    taken from the frames written are those a count of the files finds."""
    from transforms.core import duck
    from transforms.tables import IPLOS_ASSESSMENTS

    cases = {
        IPLOS_SERVICES: [pl.DataFrame({"source_file": ["a.xml"] * 3}), pl.DataFrame({"source_file": ["a.xml"]})],
        IPLOS_STOPS: [pl.DataFrame({"source_file": ["a.xml", "b.xml", None, "a.xml"]})],
        IPLOS_ASSESSMENTS: [pl.DataFrame({"source_file": ["a.xml"] * 3, "location": ["/x[1]", "/x[1]", "/x[2]"]}),
                            pl.DataFrame({"source_file": ["a.xml"] * 2, "location": ["/x[2]", None]})],
    }
    for table, frames in cases.items():
        parts = []
        for number, frame in enumerate(frames):
            parts.append(tmp_path / f"{table.name}-src-{number:04d}.parquet")
            frame.write_parquet(parts[-1])
        taken = conservation.written_counts(table, parts, [conservation.staged_part_rows(table, f) for f in frames])
        (kind, measure), = [(k, m) for k, tables in conservation.KIND_TABLES.items() for t, m in tables if t is table]
        (what, _), = taken
        monkeypatch.setattr(conservation, "_COUNTED", {})
        with duck.connect() as con:  # what the check finds reading the files
            counts = conservation._Counts(load_settings(tmp_path).root)
            counted = conservation._counted(con, counts, what, parts, conservation._staged_select(kind, measure),
                                            per_file="DISTINCT" not in measure)
        (stamp, rows), = taken.values()
        assert sorted(rows, key=str) == sorted(counted, key=str), table.name
        assert stamp == conservation._stamp(parts)


def test_each_ingestion_asset_checks_its_own_kind_of_source_and_keeps_the_others_counts(tmp_path, monkeypatch):
    """`conservation_table(settings, "iplos"|"epj")` is the whole table's rows of that kind of source file, and
    its counts record keeps the other kind's counts (a later process takes them without reading a file)."""
    persons = "".join(bruker(birth_number(day, 3, 50), tjeneste(f"T-{day}"), str(day)) for day in range(1, 3))
    read(tmp_path, doc37(persons))
    export = tmp_path / "raw" / "epj" / "3301-b" / "events.jsonl"
    export.parent.mkdir(parents=True)
    shutil.copy(EXAMPLES / "3301-b" / "events.jsonl", export)
    run_epj(tmp_path, export)
    settings = load_settings(tmp_path)
    whole = conservation_table(settings)
    extracts = pl.col("source_file").str.starts_with("raw/iplos/")
    assert whole.filter(extracts).height and whole.filter(~extracts).height
    assert conservation_table(settings, "iplos").equals(whole.filter(extracts))
    assert conservation_table(settings, "epj").equals(whole.filter(~extracts))
    (part,) = EPJ_SERVICE_VERSIONS.files(tmp_path)
    stat = part.stat()
    pl.read_parquet(part).head(1).write_parquet(part)  # an EPJ part rewritten: the EPJ check counts it again
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    monkeypatch.setattr(conservation, "_COUNTED", {})
    assert not conservation_table(settings, "epj")["balanced"].all()
    monkeypatch.setattr(conservation, "_COUNTED", {})  # a new process: the yearly extract's counts as recorded
    monkeypatch.setattr(conservation, "sql_list", None)  # no Parquet file is read
    assert conservation_table(settings, "iplos").equals(whole.filter(extracts))


def test_the_counts_taken_of_written_counts_and_quarantine_files_are_those_a_check_finds(tmp_path, monkeypatch):
    """A file's counts as the sink takes them (one row per kind, or a kind twice; a quarantine with rows or
    none, written from the empty file's bytes) are those the check reads from the files."""
    from transforms.core import duck
    from transforms.ingest.sink import _empty_quarantine
    from transforms.tables import FILE_COUNTS

    def counts(rows: list[tuple]) -> pl.DataFrame:
        return pl.DataFrame(rows, schema=FILE_COUNTS.schema, orient="row")

    quarantined = QUARANTINE.conform(pl.DataFrame({
        "source_file": ["a.xml"] * 3, "line": [4, 9, None], "location": ["/x[1]", "/x[2]", ""],
        "format": ["iplos"] * 3, "record_kind": ["service", "service", "file"], "rule_id": ["r"] * 3,
        "message": ["m"] * 3, "raw_value": [""] * 3}))
    cases = [
        (FILE_COUNTS, counts([("a.xml", "iplos", "person", 3, 2, 1, 0), ("a.xml", "iplos", "service", 5, 5, 0, 1)]),
         conservation.written_file_counts, conservation._COUNTS_SELECT),
        (FILE_COUNTS, counts([("a.xml", "iplos", "person", 3, 2, 1, 0), ("a.xml", "iplos", "person", 4, 4, 0, 2)]),
         conservation.written_file_counts, conservation._COUNTS_SELECT),
        (QUARANTINE, quarantined, conservation.written_quarantine_counts, conservation._QUARANTINED_SELECT),
        (QUARANTINE, QUARANTINE.empty(), conservation.written_quarantine_counts, conservation._QUARANTINED_SELECT),
    ]
    for number, (table, frame, taken_of, select) in enumerate(cases):
        path = tmp_path / f"{table.name}-{number}.parquet"
        if table is QUARANTINE and not frame.height:
            path.write_bytes(_empty_quarantine())
            assert pl.read_parquet(path).schema == QUARANTINE.schema
        else:
            frame.write_parquet(path)
        taken = taken_of(path, frame)
        monkeypatch.setattr(conservation, "_COUNTED", {})
        with duck.connect() as con:
            counted = conservation._counted(con, conservation._Counts(load_settings(tmp_path).root), table.name,
                                            [path], select)
        ((stamp, rows),) = taken.values()
        assert sorted(rows, key=str) == sorted(counted, key=str), number
        assert stamp == conservation._stamp([path])


def test_an_empty_quarantine_is_the_file_the_parquet_writer_makes(tmp_path):
    """The bytes written for a file without quarantined records are those of writing an empty quarantine."""
    from transforms.core.atomic import write_parquet
    from transforms.ingest.sink import _empty_quarantine

    write_parquet(QUARANTINE.empty(), tmp_path / "q.parquet")
    assert (tmp_path / "q.parquet").read_bytes() == _empty_quarantine()
