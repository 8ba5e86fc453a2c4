"""Small yearly extracts judged together: each file's rows, quarantine and counts as when read alone."""

from pathlib import Path

import polars as pl
import pytest

from tests.conftest import EXAMPLE_ROOT
from tests.unit.test_readers_iplos import bruker, doc37, make_sink, tjeneste
from transforms.core.layout import DataRoot
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_xml import read_iplos_file, read_small_iplos_files
from transforms.ingest.sink import FileSink
from transforms.synthetic.ids import birth_number, break_check_digits
from transforms.tables import FILE_COUNTS, IPLOS_TABLES, QUARANTINE

GOOD = birth_number(4, 3, 50)


def _files(tmp_path: Path) -> list[tuple[Path, str, int, str]]:
    """(file, its place under raw/, year, unit): good, partly quarantined, misfiled, broken, two layouts."""
    good, other = GOOD, birth_number(8, 7, 61)
    docs = {
        ("2019", "1101"): doc37(bruker(good, tjeneste("T-1") + tjeneste("T-2", end="2018-01-01"),
                                       user_no=f"nr{good}") +  # an identifier where a local id belongs: masked
                                bruker(break_check_digits(other), tjeneste("T-3"), user_no="2"), unit="1101"),
        ("2019", "0301"): doc37(bruker(other, tjeneste("T-9", code="99")), unit="0301"),
        ("2019", "1103"): doc37(bruker(good, tjeneste("T-4")), unit="0301"),          # filed under another unit
        ("2019", "4601"): doc37(bruker(good, tjeneste("T-5")), unit="4601")[:-40],    # cut off
        ("2019", "5001"): doc37("", unit="5001"),                                     # no person at all
    }
    out = []
    for (year, unit), text in docs.items():
        path = tmp_path / "in" / f"{year}-{unit}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="iso-8859-1")
        out.append((path, f"raw/iplos/{year}/{unit}.xml", int(year), unit))
    for year in (2018, 2019):  # the spec's examples: layouts 3.6 and 3.7
        out.append((EXAMPLE_ROOT / f"raw/iplos/{year}/0602.xml", f"raw/iplos/{year}/0602.xml", year, "0602"))
    return out


def _sink(root: Path, rel: str) -> FileSink:
    return make_sink(root, rel)


def _outputs(root: Path) -> dict[str, pl.DataFrame]:
    tables = {t.name: t for t in (*IPLOS_TABLES, QUARANTINE, FILE_COUNTS)}
    out = {}
    for name, table in tables.items():
        files = table.files(root)
        frame = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()
        out[name] = frame.sort(frame.columns) if frame.height else frame
    return out


def _read_alone(root: Path, files: list) -> list[Exception | None]:
    failures: list[Exception | None] = []
    for path, rel, year, unit in files:
        sink = _sink(root, rel)
        try:
            read_iplos_file(path, sink, ReadContext(True, year=year, unit=unit))
            failures.append(None)
        except FileRejected as exc:
            sink.discard()
            failures.append(exc)
        sink.commit()
    return failures


def test_small_files_judged_together_stage_as_when_read_alone(tmp_path):
    files = _files(tmp_path)
    alone = _read_alone(tmp_path / "alone", files)
    sinks = [_sink(tmp_path / "together", rel) for _, rel, _, _ in files]
    together = read_small_iplos_files([(path, sink, ReadContext(True, year=year, unit=unit))
                                       for (path, _, year, unit), sink in zip(files, sinks, strict=True)])
    for failure, sink in zip(together, sinks, strict=True):
        if failure is not None:
            sink.discard()
        sink.commit()
    assert [type(f).__name__ for f in together] == [type(f).__name__ for f in alone]
    assert [f.rejection.rule_id for f in together if f] == ["file.misfiled", "file.unparseable"]
    expected, found = _outputs(tmp_path / "alone"), _outputs(tmp_path / "together")
    assert found["iplos_services"].height == 6 and found["quarantine"].height == 4
    user_numbers = found["iplos_persons"]["user_no"].to_list()
    assert any(n.startswith("nr<id:") for n in user_numbers if n) and not any(GOOD in (n or "") for n in user_numbers)
    for name, frame in expected.items():
        assert found[name].equals(frame), name


def test_a_small_file_with_more_than_one_batch_is_read_alone(tmp_path, monkeypatch):
    """A file too big for one batch is read in batches, as a large file is, with the same rows."""
    import transforms.ingest.readers.iplos_xml as iplos_xml

    persons = "".join(bruker(birth_number(day, 3, 50), tjeneste(f"T-{day}"), user_no=str(day))
                      for day in range(1, 8))
    path = tmp_path / "in.xml"
    path.write_text(doc37(persons), encoding="iso-8859-1")
    alone = _sink(tmp_path / "alone", "raw/iplos/2019/0602.xml")
    read_iplos_file(path, alone, ReadContext(True, year=2019, unit="0602"))
    alone.commit()
    monkeypatch.setattr(iplos_xml, "PERSONS_PER_BATCH", 3)
    sink = FileSink(DataRoot(tmp_path / "together"), "raw/iplos/2019/0602.xml", "iplos",
                    {"year": "2019", "unit": "0602"}, alone.pseudonymizer, b"v" * 32)
    assert read_small_iplos_files([(path, sink, ReadContext(True, year=2019, unit="0602"))]) == [None]
    sink.commit()
    assert sink.records_in == alone.records_in == {"person": 7, "service": 7}
    expected, found = _outputs(tmp_path / "alone"), _outputs(tmp_path / "together")
    for name, frame in expected.items():
        assert found[name].equals(frame), name


@pytest.mark.parametrize("size", [0, 1])
def test_no_file_or_one(tmp_path, size):
    files = _files(tmp_path)[:size]
    sinks = [_sink(tmp_path / "out", rel) for _, rel, _, _ in files]
    assert read_small_iplos_files([(p, s, ReadContext(True, year=y, unit=u))
                                   for (p, _, y, u), s in zip(files, sinks, strict=True)]) == [None] * size
