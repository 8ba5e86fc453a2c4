"""A file's staged parts found by listing (as `glob` finds them), and identifiers masked column by column."""

from pathlib import Path

import polars as pl
import pytest

from tests.unit.test_readers_iplos import make_sink
from transforms.ingest.parts import matching
from transforms.ingest.quarantine import mask_identifiers
from transforms.synthetic.ids import birth_number
from transforms.tables import IPLOS_PERSONS, STAGED_TABLES


@pytest.mark.parametrize("name", ["t-raw__a.xml-*.parquet", "t-raw__a.xml-0000.parquet", "t-raw__b.xml-*.parquet",
                                  "t-raw__[a].xml-*.parquet", "*.parquet", "t-raw__a.xml-*"])
def test_matching_finds_what_glob_finds(tmp_path: Path, name: str):
    for file in ("t-raw__a.xml-0000.parquet", "t-raw__a.xml-0001.parquet", "t-raw__a.xml.bak-0000.parquet",
                 ".t-raw__a.xml-0002.parquet.77.tmp", "u-raw__a.xml-0000.parquet", "t-raw__a.xml-0000.parquet.x",
                 "t-raw__[a].xml-0000.parquet"):
        (tmp_path / file).touch()
    assert sorted(matching(tmp_path / name)) == sorted(tmp_path.glob(name))


def test_matching_in_a_missing_or_wildcard_folder(tmp_path: Path):
    assert matching(tmp_path / "nowhere" / "t-*.parquet") == []
    (tmp_path / "system=1-a").mkdir()
    (tmp_path / "system=1-a" / "t-x-0000.parquet").touch()
    (tmp_path / "system=2-b").mkdir()
    (tmp_path / "system=2-b" / "t-x-0000.parquet").touch()
    (tmp_path / "system=2-b" / "t-y-0000.parquet").touch()
    # a wildcard folder: the parts in every folder it matches (an orphaned file's, wherever they are)
    assert matching(tmp_path / "system=*" / "t-x-*.parquet") == [
        tmp_path / "system=1-a" / "t-x-0000.parquet", tmp_path / "system=2-b" / "t-x-0000.parquet"]


def test_identifiers_masked_only_in_the_columns_that_hold_them(tmp_path: Path):
    fid = birth_number(4, 3, 50)
    sink = make_sink(tmp_path)
    rows = {c: [None, None] for c in STAGED_TABLES["iplos_persons"].schema}
    rows.update(source_file=[sink.rel_path] * 2, line=[3, 4], user_no=[f"u{fid}", "7"], district=["030101", None],
                location=["/a[1]", "/a[2]"])
    sink.stage_frame("iplos_persons", "person", pl.DataFrame(rows, schema=STAGED_TABLES["iplos_persons"].schema))
    sink.commit()
    (part,) = IPLOS_PERSONS.files(tmp_path)
    written = pl.read_parquet(part)
    assert written["user_no"].to_list() == [mask_identifiers(f"u{fid}", sink.pseudonymizer.tag), "7"]
    assert fid not in written["user_no"][0]
    assert written["district"].to_list() == ["030101", None]
    assert written["location"].to_list() == ["/a[1]", "/a[2]"]


@pytest.mark.parametrize("column", ["user_no", "district", "location"])
def test_an_identifier_in_any_masked_column_is_masked_there_only(tmp_path: Path, column: str):
    fid = birth_number(5, 3, 50)
    sink = make_sink(tmp_path)
    rows = {c: [None, None] for c in STAGED_TABLES["iplos_persons"].schema}
    # runs of digits that only become eleven long if two columns were joined without a break
    rows.update(source_file=[sink.rel_path] * 2, line=[3, 4], user_no=["12345", "7"], district=["678901", None],
                location=["/a[1]", "/a[2]"])
    rows[column] = [f"x{fid}", rows[column][1]]
    sink.stage_frame("iplos_persons", "person", pl.DataFrame(rows, schema=STAGED_TABLES["iplos_persons"].schema))
    sink.commit()
    (part,) = IPLOS_PERSONS.files(tmp_path)
    written = pl.read_parquet(part)
    assert written[column][0] == mask_identifiers(f"x{fid}", sink.pseudonymizer.tag)
    assert all(written[c][0] == rows[c][0] for c in ("user_no", "district", "location") if c != column)


def test_staged_parts_are_lz4(tmp_path: Path):
    """Staged parts are written with LZ4 (`STAGED_COMPRESSION`: cheaper to write for the many small parts)."""
    import pyarrow.parquet as pq

    sink = make_sink(tmp_path)
    rows = {c: [None] for c in STAGED_TABLES["iplos_persons"].schema}
    rows.update(source_file=[sink.rel_path], line=[3], user_no=["7"], location=["/a[1]"])
    sink.stage_frame("iplos_persons", "person", pl.DataFrame(rows, schema=STAGED_TABLES["iplos_persons"].schema))
    sink.commit()
    (part,) = IPLOS_PERSONS.files(tmp_path)
    metadata = pq.ParquetFile(part).metadata
    codecs = {metadata.row_group(0).column(i).compression for i in range(metadata.num_columns)}
    assert codecs == {"LZ4"}, codecs
    assert pl.read_parquet(part)["user_no"].to_list() == ["7"]
