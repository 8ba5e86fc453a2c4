"""Source mappings: a custom export read without Python, mistakes caught on load, changed files read alone."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import polars as pl
import pytest

from transforms.core.config import ConfigError, load_kommuner
from transforms.core.settings import Settings
from transforms.ingest.mapping import MappingError, load_mapping
from transforms.ingest.staging import ingest_epj, ingest_iplos_years
from transforms.ingest.touched import municipalities_touched
from transforms.privacy.keys import Keys
from transforms.synthetic.ids import birth_number
from transforms.tables import EPJ_SERVICE_VERSIONS, IPLOS_SERVICES, QUARANTINE

KEYS = Keys(b"p" * 32, b"v" * 32)
FNR = birth_number(14, 9, 47, 100)

CUSTOM = """
[mapping]
name = "gerica-like"
history = "audit-trail"

[format]
type = "csv"
encoding = "utf-8"
delimiter = ","
date_format = "%Y-%m-%d"
timestamp_format = "%Y-%m-%d %H:%M"

[maps.codes]
HJEMMESYKEPLEIE = 15
TRYGGHETSALARM = 6

[maps.status]
opprettet = "new"
endret = "changed"
slettet = "annulled"

[records.services]
file = "vedtak*.csv"
location = ["VedtakID"]

[records.services.columns]
unit = { constant = "1515" }
user_no = "Klient"
service_id = "VedtakID"
service_code = { from = "Tjeneste", map = "codes" }
start_date = "Start"
end_date = "Slutt"
hours_per_week = { from = "Timer", default = "0" }
registered_at = "Registrert"
change_type = { from = "Hendelse", map = "status" }
"""


def write_root(tmp_path: Path, mapping: str = CUSTOM) -> Settings:
    root = tmp_path / "data"
    (root / "config" / "sources").mkdir(parents=True)
    (root / "config" / "sources" / "custom.toml").write_text(mapping, encoding="utf-8")
    (root / "config" / "kommuner.toml").write_text(
        '[[kommune]]\nnr = "1515"\n\n[[kommune.epj]]\nsystem = "g1515"\nmapping = "config/sources/custom.toml"\n'
        'path = "raw/epj/g"\nactive_from = "2023-01-01"\n', encoding="utf-8")
    (root / "raw" / "epj" / "g").mkdir(parents=True)
    (root / "raw" / "epj" / "g" / "vedtak-2023.csv").write_text(
        "VedtakID,Klient,Tjeneste,Start,Slutt,Timer,Registrert,Hendelse,Kommentar\n"
        "V1,K1,Hjemmesykepleie,2023-01-05,,4.5,2023-01-04 09:00,opprettet,fri tekst\n"
        "V1,K1,Hjemmesykepleie,2023-01-05,2023-03-01,,2023-03-02 10:00,endret,\n"
        "V2,K1,Matombringing,2023-01-05,,,2023-01-04 09:00,opprettet,\n", encoding="utf-8")
    return Settings(data_root=root, allow_synthetic_ids=True)


def test_a_custom_csv_export_is_read_through_its_mapping(tmp_path: Path):
    settings = write_root(tmp_path)
    report = ingest_epj(settings, KEYS)
    assert [f.format for f in report.files] == ["gerica-like"]
    staged = pl.read_parquet(EPJ_SERVICE_VERSIONS.files(settings.data_root)[0]).sort("line")
    assert staged.select("line", "service_id", "service_code", "end_date", "hours_per_week", "change_type",
                         "unit").rows() == [(2, "V1", "15", None, 4.5, "NY", "1515"),
                                            (3, "V1", "15", dt.date(2023, 3, 1), 0.0, "ENDRET", "1515")]
    assert staged["registered_at"][0] == dt.datetime(2023, 1, 4, 8, 0, tzinfo=dt.UTC)
    quarantine = pl.read_parquet(QUARANTINE.files(settings.data_root)[0])
    assert quarantine.select("line", "rule_id", "message").rows() == [
        (4, "code.unknown_service", "service code 'Matombringing' has no mapping to code list 9151")]


@pytest.mark.parametrize(("edit", "expected"), [
    (("[records.services]", "[records.services]\nfiel = 1"), r"\[records.services\] unknown key 'fiel'"),
    (('service_id = "VedtakID"\n', ""), r"\[records.services.columns\] service_id is required"),
    (("TRYGGHETSALARM = 6", "TRYGGHETSALARM = 99"), r"\[maps.codes\] TRYGGHETSALARM = 99: not a code of code list"),
    (('type = "csv"', 'type = "csv"\ntime_zone = "Europe/Bergen"'),
     r"time_zone = 'Europe/Bergen' is not a time zone"),
    (('slettet = "annulled"', 'slettet = "deleted"'), r"\[maps.status\] SLETTET = 'deleted': not one of new"),
    (('"Hendelse", map = "status"', '"Hendelse", map = "statuses"'),
     r"map = 'statuses': there is no \[maps.statuses\]"),
    (('location = ["VedtakID"]', 'location = ["VedtakID"]\n[records.services.columns.x]'), r"unknown key 'x'"),
    (('unit = { constant = "1515" }', 'unit = { constant = "15" }'), r"unit\] constant = '15'"),
    (('date_format = "%Y-%m-%d"', 'date_format = "YYYY-MM-DD"'), r"date_format = 'YYYY-MM-DD' is not a strptime"),
])
def test_mistakes_in_a_mapping_are_named_with_file_and_key(tmp_path: Path, edit, expected):
    path = tmp_path / "m.toml"
    path.write_text(CUSTOM.replace(*edit), encoding="utf-8")
    with pytest.raises(MappingError, match=expected) as info:
        load_mapping(str(path))
    assert str(path) in str(info.value)


def test_kommuner_toml_names_a_bundled_format_or_a_mapping_file(tmp_path: Path):
    path = tmp_path / "kommuner.toml"
    entry = '[[kommune]]\nnr = "1515"\n[[kommune.epj]]\nsystem = "s"\npath = "p"\nactive_from = "2023-01-01"\n'
    for extra, message in (("", "give either format"), ('format = "gerica"\n', "is not a bundled mapping"),
                           ('format = "epj-a-csv"\nmapping = "m.toml"\n', "give either format"),
                           ('mapping = "m.txt"\n', "must be the path of a .toml file")):
        path.write_text(entry + extra, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_kommuner(path)
    path.write_text(entry + 'mapping = "config/sources/m.toml"\n', encoding="utf-8")
    assert load_kommuner(path)[0].epj[0].mapping == "config/sources/m.toml"


EXTRACT = ('<?xml version="1.0" encoding="UTF-8"?>\n<IplosMelding xmlns="urn:no:iplos:aarsmelding:3.7" '
           'versjon="3.7" aar="2023" uttakDato="2024-01-10">\n<Kommune kommuneNr="{unit}">\n'
           '<Bruker brukerNr="1" fid="' + FNR + '" typeID="1">\n<Tjeneste tjenesteID="T-1" tjenesteType="15" '
           'startDato="2023-02-01" sluttDato=""/>\n</Bruker>\n</Kommune>\n</IplosMelding>\n')


def test_reingesting_reads_only_what_changed_and_names_the_municipalities(tmp_path: Path):
    settings = write_root(tmp_path)
    year = settings.data_root / "raw" / "iplos" / "2023"
    year.mkdir(parents=True)
    for unit in ("1515", "3301"):
        (year / f"{unit}.xml").write_text(EXTRACT.replace("{unit}", unit), encoding="utf-8")
    first = ingest_iplos_years(settings, KEYS, [2023])
    first.extend(ingest_epj(settings, KEYS))
    assert len(first.files) == 3
    second = ingest_iplos_years(settings, KEYS, [2023])
    second.extend(ingest_epj(settings, KEYS))
    assert second.files == [] and sorted(second.unchanged) == [
        "raw/epj/g/vedtak-2023.csv", "raw/iplos/2023/1515.xml", "raw/iplos/2023/3301.xml"]
    changed = year / "3301.xml"
    changed.write_text(changed.read_text().replace("T-1", "T-2"), encoding="utf-8")
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (year / "1515.xml").unlink()
    third = ingest_iplos_years(settings, KEYS, [2023])
    assert [f.source_file for f in third.files] == ["raw/iplos/2023/3301.xml"]
    assert third.removed == ["raw/iplos/2023/1515.xml"]
    staged = pl.concat([pl.read_parquet(p) for p in IPLOS_SERVICES.files(settings.data_root)])
    assert staged["service_id"].to_list() == ["T-2"]
    assert municipalities_touched(settings, third.changed_files) == ["1515", "3301"]
    assert municipalities_touched(settings, ["raw/epj/g/vedtak-2023.csv"]) == ["1515"]
    # a changed identifier policy changes what every file stages: all are read again
    stricter = Settings(data_root=settings.data_root, allow_synthetic_ids=False)
    assert len(ingest_iplos_years(stricter, KEYS, [2023]).files) == 1
