"""A series of full dumps: versions from comparing each dump with the state the earlier ones left."""

from __future__ import annotations

import datetime as dt
import os
import time
from importlib import resources
from pathlib import Path

import polars as pl
import pytest

from transforms.core.settings import Settings
from transforms.ingest.conservation import conservation_table
from transforms.ingest.staging import ingest_epj
from transforms.privacy.keys import Keys
from transforms.synthetic.ids import birth_number
from transforms.tables import EPJ_SERVICE_VERSIONS, EPJ_SNAPSHOT_DISAPPEARED, QUARANTINE

KEYS = Keys(b"p" * 32, b"v" * 32)
FNR = birth_number(14, 9, 47, 100)
FOLDER = "raw/epj/1515-oj"


def client(nr: str, fnr: str = FNR) -> str:
    return (f'<Klient nr="{nr}" kommune="1515"><Personnr type="F">{fnr}</Personnr><Kjonn>K</Kjonn>'
            f"<Fodt>1947</Fodt></Klient>")


def decision(sid: str, code: str = "HJSP", start: str = "01/01/2023", end: str = "", hours: str = "4,5") -> str:
    return (f'<Tjeneste id="{sid}" klient="1001" kommune="1515"><Type>{code}</Type><Fra>{start}</Fra>'
            f"<Til>{end}</Til><TimerUke>{hours}</TimerUke><Status>Aktiv</Status></Tjeneste>")


def dump(root: Path, day: str, *decisions: str, clients: tuple[str, ...] = ("1001",)) -> Path:
    path = root / FOLDER / f"uttrekk_{day}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(["<Uttrekk>", "<Klienter>", *[client(c) for c in clients], "</Klienter>", "<Vedtak>",
                      *decisions, "</Vedtak>", "<Opphold/>", "</Uttrekk>"])
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n", encoding="utf-8")
    return path


def make_root(tmp_path: Path, disappeared: str = "annul") -> Settings:
    root = tmp_path / "data"
    mapping = resources.files("transforms.synthetic.mappings").joinpath("omsorgsjournal.toml").read_text("utf-8")
    (root / "config" / "sources").mkdir(parents=True)
    (root / "config" / "sources" / "oj.toml").write_text(
        mapping.replace('disappeared = "annul"', f'disappeared = "{disappeared}"'), encoding="utf-8")
    (root / "config" / "kommuner.toml").write_text(
        '[[kommune]]\nnr = "1515"\n\n[[kommune.epj]]\nsystem = "oj"\nmapping = "config/sources/oj.toml"\n'
        f'path = "{FOLDER}"\nactive_from = "2023-01-01"\n', encoding="utf-8")
    return Settings(data_root=root, allow_synthetic_ids=True)


def versions(settings: Settings) -> list[tuple]:
    frame = pl.concat([pl.read_parquet(p) for p in EPJ_SERVICE_VERSIONS.files(settings.data_root)])
    return sorted((Path(r["source_file"]).stem[-8:], r["line"] == 0, r["service_id"], r["change_type"],
                   r["hours_per_week"], r["end_date"]) for r in frame.to_dicts())


def series(root: Path) -> None:
    dump(root, "20230131", decision("E-1"), decision("E-2", "ALARM"), decision("E-3"))
    dump(root, "20230228", decision("E-1"), decision("E-2", "ALARM", hours="6,0"), decision("E-4"))
    dump(root, "20230331", decision("E-1", start="31/02/2023"), decision("E-2", "ALARM", hours="6,0"))


def test_versions_come_from_comparing_consecutive_dumps(tmp_path: Path):
    settings = make_root(tmp_path)
    series(settings.data_root)
    report = ingest_epj(settings, KEYS)
    assert len(report.files) == 3
    assert versions(settings) == [
        ("20230131", False, "E-1", "NY", 4.5, None), ("20230131", False, "E-2", "NY", 4.5, None),
        ("20230131", False, "E-3", "NY", 4.5, None),
        ("20230228", False, "E-2", "ENDRET", 6.0, None), ("20230228", False, "E-4", "NY", 4.5, None),
        ("20230228", True, "E-3", "ANNULLERT", 4.5, None),  # vanished: annulled, on the dump as a whole
        # E-1's row is quarantined in the third dump: still there, so not vanished and no version
        ("20230331", True, "E-4", "ANNULLERT", 4.5, None),
    ]
    stamps = pl.read_parquet(EPJ_SERVICE_VERSIONS.files(settings.data_root)[0])["registered_at"]
    assert stamps.min() == dt.datetime(2023, 1, 30, 23, 0, tzinfo=dt.UTC)  # the dump day's start, Oslo time
    findings = pl.concat([pl.read_parquet(p) for p in EPJ_SNAPSHOT_DISAPPEARED.files(settings.data_root)])
    assert sorted(findings.select("record_key", "action", "dump_date").rows()) == [
        ("E-3", "annulled", dt.date(2023, 2, 28)), ("E-4", "annulled", dt.date(2023, 3, 31))]
    quarantine = pl.concat([pl.read_parquet(p) for p in QUARANTINE.files(settings.data_root)])
    assert quarantine["rule_id"].to_list() == ["date.unparseable"]
    table = conservation_table(settings)
    assert table["balanced"].all()
    counts = table.filter(pl.col("record_kind") == "service").sort("source_file")
    assert counts.select("records_in", "staged", "quarantined", "unchanged").rows() == [
        (3, 3, 0, 0), (4, 3, 0, 1), (3, 1, 1, 1)]  # a vanished record counts as one the dump tells of


@pytest.mark.parametrize("disappeared", ["annul", "end"])
def test_every_version_of_a_record_names_the_same_system(tmp_path: Path, disappeared: str):
    """The version made for a vanished record is read back from the staged folder `system=1515-oj`: it keeps
    the record's own system id (`oj`), so the timeline sees one record, not an annulled twin beside it."""
    settings = make_root(tmp_path, disappeared)
    series(settings.data_root)
    ingest_epj(settings, KEYS)
    frame = pl.concat([pl.read_parquet(p, hive_partitioning=False) for p in EPJ_SERVICE_VERSIONS.files(
        settings.data_root)])
    assert set(frame["system"]) == {"oj"}
    assert set(frame.filter(pl.col("line") == 0)["service_id"]) == {"E-3", "E-4"}


def test_a_vanished_record_can_end_on_the_dump_date(tmp_path: Path):
    settings = make_root(tmp_path, disappeared="end")
    series(settings.data_root)
    ingest_epj(settings, KEYS)
    ended = [v for v in versions(settings) if v[1]]
    assert ended == [("20230228", True, "E-3", "ENDRET", 4.5, dt.date(2023, 2, 28)),
                     ("20230331", True, "E-4", "ENDRET", 4.5, dt.date(2023, 3, 31))]


def test_a_second_row_for_a_record_in_one_dump_is_quarantined(tmp_path: Path):
    settings = make_root(tmp_path)
    dump(settings.data_root, "20230131", decision("E-1"), decision("E-1", hours="5,0"), decision("E-1"))
    ingest_epj(settings, KEYS)
    quarantine = pl.concat([pl.read_parquet(p) for p in QUARANTINE.files(settings.data_root)]).sort("line")
    assert quarantine["rule_id"].to_list() == ["record.duplicate", "record.duplicate"]
    assert "same service_id" in quarantine["message"][0] and "exact duplicate" in quarantine["message"][1]


def test_only_new_and_changed_dumps_are_read_again(tmp_path: Path):
    settings = make_root(tmp_path)
    series(settings.data_root)
    ingest_epj(settings, KEYS)
    before = versions(settings)
    again = ingest_epj(settings, KEYS)
    assert again.files == [] and len(again.unchanged) == 3 and versions(settings) == before
    dump(settings.data_root, "20230430", decision("E-2", "ALARM", hours="6,0"))
    added = ingest_epj(settings, KEYS)
    assert [Path(f.source_file).name for f in added.files] == ["uttrekk_20230430.xml"]
    assert versions(settings)[-1] == ("20230430", True, "E-1", "ANNULLERT", 4.5, None)
    # an older dump rewritten: it and every later dump are compared anew
    path = settings.data_root / FOLDER / "uttrekk_20230228.xml"
    path.write_text(path.read_text().replace("<TimerUke>6,0", "<TimerUke>7,0", 1))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = ingest_epj(settings, KEYS)
    assert sorted(Path(f.source_file).stem[-8:] for f in changed.files) == ["20230228", "20230331", "20230430"]
    assert ("20230331", False, "E-2", "ENDRET", 6.0, None) in versions(settings)


@pytest.mark.parametrize("name", ["uttrekk_2023.xml", "dump.xml"])
def test_a_dump_without_a_date_is_quarantined_whole(tmp_path: Path, name: str):
    settings = make_root(tmp_path)
    path = dump(settings.data_root, "20230131", decision("E-1"))
    path.rename(path.with_name(name))
    report = ingest_epj(settings, KEYS)
    assert [f.file_rule for f in report.files] == ["file.unknown_layout"]
