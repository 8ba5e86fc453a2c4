"""The synthetic generator's files (transforms.synthetic) at demo scale: determinism, formats and
encodings, identifiers, and the bad-input corpus. What the world holds is `test_synthetic_world`.

One demo root is generated per test session (`synthetic_demo`) and shared; tests that need their own
root (determinism, overwrite) generate into tmp_path.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from lxml import etree
from stdnum.no import fodselsnummer, orgnr

from tests.synthetic_world import (
    NS,
    RULES,
    bad_numbers,
    corrupted_files,
    desynthesise,
    parse_xml,
    physical_line,
    read_csv,
    read_jsonl,
    tree_hashes,
    truth,
    xml_files,
)
from transforms.synthetic import SCALES, generate
from transforms.synthetic.ids import is_valid_synthetic
from transforms.synthetic.municipalities import load_municipalities


@pytest.fixture
def root(synthetic_demo: Path) -> Path:
    return synthetic_demo


# -- determinism and overwrite --------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    generate(tmp_path / "a", "demo", seed=7)
    generate(tmp_path / "b", "demo", seed=7)
    generate(tmp_path / "c", "demo", seed=8)
    a, b, c = (tree_hashes(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) > 40
    assert a != c


def test_regenerating_replaces_owned_files_only(tmp_path: Path) -> None:
    generate(tmp_path, "demo", seed=1)
    (tmp_path / "raw" / "iplos" / "2017" / "9999.xml").write_text("stale")
    (tmp_path / "config" / "settings.toml").write_text("allow_synthetic_ids = true\n")
    summary = generate(tmp_path, "demo", seed=2)
    assert not (tmp_path / "raw" / "iplos" / "2017" / "9999.xml").exists()
    assert (tmp_path / "config" / "settings.toml").exists()
    assert summary.files_written == sum(1 for p in tmp_path.rglob("*") if p.is_file()) - 1
    assert "demo" in str(summary) and summary.persons > 1500


def test_scales_are_defined() -> None:
    assert set(SCALES) == {"demo", "small", "oslo", "national"}
    assert len(SCALES["demo"].persons) == 3
    assert SCALES["oslo"].persons["0301"] == 45_000
    assert len(load_municipalities()) == 357


# -- formats --------------------------------------------------------------------------------


def test_every_xml_parses_with_the_layout_of_its_year(root: Path) -> None:
    broken = corrupted_files(root)
    assert len(broken) == 2
    utf8 = 0
    for path in xml_files(root):
        rel = path.relative_to(root).as_posix()
        year, unit = int(path.parent.name), path.stem
        if rel in broken:
            with pytest.raises((etree.XMLSyntaxError, OSError)):
                parse_xml(path)
            continue
        doc = parse_xml(path)
        utf8 += doc.docinfo.encoding == "UTF-8"
        top = doc.getroot()
        if year <= 2018:
            assert top.tag == "IPLOS" and top.get("versjon") == "3.6"
            assert top.findtext("Hode/Aar") == str(year) and top.findtext("Hode/Kommunenr") == unit
            assert re.fullmatch(rf"\d\d\.01\.{year + 1}", top.findtext("Hode/Uttaksdato"))
            assert top.find(f".//{NS}Bruker") is None and top.find(".//MidlertidigStopp") is None
        else:
            assert (
                top.tag == f"{NS}IplosMelding" and top.get("versjon") == "3.7" and top.get("aar") == str(year)
            )
            assert top.get("uttakDato").startswith(f"{year + 1}-01-")
            assert top.find(f"{NS}Kommune").get("kommuneNr") == unit
            assert top.find(".//Person") is None
    assert utf8 >= 2
    assert doc.docinfo.encoding in ("UTF-8", "ISO-8859-1")


def test_csv_files_are_windows_1252_crlf_with_headers(root: Path) -> None:
    headers = {
        "brukere.csv": "kommunenr;brukernr;fnr;id_type;kjonn;fodselsar;bydel;dodsdato;registrert_tid",
        "tjenester.csv": "kommunenr;brukernr;tjenesteid;tjenestetype;vedtaksdato;fra_dato;til_dato;"
        "utforer_orgnr;timer_per_uke;registrert_tid;endringstype",
        "stopp.csv": "kommunenr;tjenesteid;stoppid;fra_dato;til_dato;registrert_tid;endringstype",
    }
    files = sorted((root / "raw" / "epj").rglob("*.csv"))
    assert len(files) == 6  # Drammen's and Klæbu's systems; Herøy's new EPJ writes XML dumps
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\r\n") and data.count(b"\r\n") == data.count(b"\n")
        lines = data.decode("cp1252").split("\r\n")[:-1]
        assert lines[0] == headers[path.name]
        width = lines[0].count(";")
        assert all(line.count(";") == width for line in lines)
        for row in read_csv(path)[:200]:
            assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", row["registrert_tid"])
            if row.get("timer_per_uke"):
                assert "," in row["timer_per_uke"] and "." not in row["timer_per_uke"]


def test_jsonl_is_canonical_and_offsets_follow_oslo_time(root: Path) -> None:
    oslo = ZoneInfo("Europe/Oslo")
    files = sorted((root / "raw" / "epj").rglob("*.jsonl"))
    assert any(f.name == "events.jsonl" for f in files) and any(f.name.startswith("events-") for f in files)
    ids = []
    for path in files:
        for line in path.read_text("utf-8").splitlines():
            event = json.loads(line)
            assert json.dumps(event, ensure_ascii=False) == line
            stamp = dt.datetime.fromisoformat(event["recordedAt"])
            local = stamp.replace(tzinfo=None).replace(tzinfo=oslo)
            assert stamp.utcoffset() == local.utcoffset()
            assert event["kind"] in {"client", "service", "pause"}
            ids.append((path.parent.name, event["eventId"]))
    assert len(ids) == len(set(ids))


# -- identifiers ----------------------------------------------------------------------------


def _persons_in_raw(root: Path) -> list[tuple[str, str | None, str | None, str]]:
    """(number, sex code, birth year, where) for every person record of every readable file."""
    found = []
    broken = corrupted_files(root)
    for path in xml_files(root):
        rel = path.relative_to(root).as_posix()
        if rel in broken:
            continue
        top = parse_xml(path).getroot()
        for b in top.iter(f"{NS}Bruker"):
            found.append((b.get("fid"), b.get("kjonn"), b.get("fodselsar"), rel))
        for p in top.iter("Person"):
            found.append((p.findtext("Fnr"), p.findtext("Kjonn"), p.findtext("Fodt"), rel))
    for path in sorted((root / "raw" / "epj").rglob("brukere.csv")):
        found += [(r["fnr"], r["kjonn"], r["fodselsar"], str(path)) for r in read_csv(path)]
    for folder in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")}):
        found += [
            (e["client"]["nationalId"], str(e["client"]["sex"]), str(e["client"]["birthYear"]), str(folder))
            for e in read_jsonl(folder)
            if e["kind"] == "client"
        ]
    return found


def test_every_identifier_is_valid_synthetic_except_planted_ones(root: Path) -> None:
    planted = bad_numbers(root)
    assert len(planted) >= 3
    seen = _persons_in_raw(root)
    assert len(seen) > 2000
    for number, sex, born, where in seen:
        if number in planted:
            assert not is_valid_synthetic(number), where
            continue
        assert is_valid_synthetic(number), (number, where)
        # check digits are computed on the synthetic form; the birth date is read with month - 80
        assert fodselsnummer.get_birth_date(desynthesise(number)).year == int(born), (number, born, where)
        assert (int(number[8]) % 2 == 1) == (sex == "1"), (number, sex, where)
    persons = truth(root, "persons")
    assert persons["fid"].n_unique() == persons.height
    every = persons["fid"].to_list() + [x for ids in persons["previous_ids"].to_list() for x in ids]
    assert len(every) == len(set(every))
    assert all(is_valid_synthetic(x) for x in every)


def test_d_numbers_have_first_digit_plus_four(root: Path) -> None:
    persons = truth(root, "persons").filter(pl.col("previous_ids").list.len() > 0)
    assert persons.height > 0
    for fid, previous in persons.select("fid", "previous_ids").iter_rows():
        assert int(previous[0][0]) >= 4 and int(fid[0]) <= 3
        assert previous[0][2:6] == fid[2:6]  # same birth month and year


def test_provider_numbers_are_valid_orgnr(root: Path) -> None:
    orgs = set(truth(root, "provider_changes")["provider_org"])
    orgs |= set(truth(root, "episodes")["initial_provider_org"].drop_nulls())
    for path in sorted((root / "raw" / "epj").rglob("tjenester.csv")):
        orgs |= {r["utforer_orgnr"] for r in read_csv(path) if r["utforer_orgnr"]}
    assert len(orgs) >= 9
    assert all(orgnr.is_valid(o) and len(o) == 9 for o in orgs)


def test_bad_input_corpus_is_spread_over_formats(root: Path) -> None:
    c = truth(root, "corruptions")
    assert set(c["rule_id"]) == RULES

    def fmt(path: str) -> str:
        if path.endswith(".csv"):
            return "epj-a"
        if path.endswith(".jsonl"):
            return "epj-b"
        if "/uttrekk_" in path:
            return "omsorgsjournal"
        return "3.6" if int(path.split("/")[2]) <= 2018 else "3.7"

    formats = c.with_columns(pl.col("source_file").map_elements(fmt, return_dtype=pl.Utf8).alias("fmt"))
    by_rule = {r: set(f) for r, f in formats.group_by("rule_id").agg(pl.col("fmt")).iter_rows()}
    for rule in (
        "id.check_digits",
        "period.end_before_start",
        "code.unknown_service",
        "hours.out_of_range",
        "date.unparseable",
    ):
        assert by_rule[rule] == {"epj-a", "epj-b", "omsorgsjournal", "3.6", "3.7"}, rule
    assert by_rule["record.duplicate"] == {"epj-a", "omsorgsjournal"}
    assert set(c.filter(pl.col("rule_id") == "id.parent_quarantined")["record_kind"]) == {
        "service",
        "stop",
        "assessment",
        "diagnosis",
    }
    whole = c.filter(pl.col("line").is_null())
    assert set(whole["rule_id"]) == {"file.unparseable", "file.encoding_mismatch"}
    assert set(whole["record_kind"]) == {"file"}
    # the broken files hold years an EPJ export covers completely
    sources = truth(root, "sources").filter(pl.col("status") == "corrupted")
    assert sources.height == 2
    gaps = truth(root, "gaps")
    for unit, year in sources.select("unit", "year").iter_rows():
        hit = gaps.filter(
            (pl.col("unit") == unit)
            & (pl.col("first_day") <= dt.date(year, 12, 31))
            & (pl.col("last_day") >= dt.date(year, 1, 1))
        )
        assert hit.height == 0


def test_corruption_lines_point_at_the_described_record(root: Path) -> None:
    c = truth(root, "corruptions").filter(pl.col("line").is_not_null())
    tags = {
        "person": ("<Bruker", "<Person>", "<Klient"),
        "service": ("<Tjeneste",),
        "stop": ("<MidlertidigStopp",),
        "assessment": ("<Funksjonsvurdering", "<Vurdering"),
        "diagnosis": ("<Diagnose",),
    }
    for rel, line, kind, rule in c.select("source_file", "line", "record_kind", "rule_id").iter_rows():
        text = physical_line(root, rel, line)
        if rel.endswith(".xml"):
            assert text.strip().startswith(tags[kind]), (rel, line, text)
            if rule == "id.check_digits":
                number = re.search(
                    r"\d{11}", physical_line(root, rel, line + (1 if "<Person>" in text else 0))
                )
                assert number and not is_valid_synthetic(number.group(0))
            continue
        if rel.endswith(".csv"):
            header = physical_line(root, rel, 1).split(";")
            row = dict(zip(header, text.split(";"), strict=True))
            if rule == "record.duplicate":
                assert text == physical_line(root, rel, line - 1)
            elif rule == "id.check_digits":
                assert not is_valid_synthetic(row["fnr"])
            elif rule == "code.unknown_service":
                assert row["tjenestetype"] == "99"
            elif rule == "hours.out_of_range":
                assert float(row["timer_per_uke"].replace(",", ".")) > 168
            elif rule == "period.end_before_start":
                assert dt.datetime.strptime(row["til_dato"], "%d.%m.%Y") < dt.datetime.strptime(
                    row["fra_dato"], "%d.%m.%Y"
                )
            elif rule == "date.unparseable":
                with pytest.raises(ValueError):
                    dt.datetime.strptime(row["fra_dato"], "%d.%m.%Y")
            continue
        event = json.loads(text)
        if rule == "id.check_digits":
            assert not is_valid_synthetic(event["client"]["nationalId"])
            continue
        service = event["service"]
        if rule == "code.unknown_service":
            assert service["code"] == "99"
        elif rule == "hours.out_of_range":
            assert service["weeklyHours"] > 168
        elif rule == "period.end_before_start":
            assert service["to"] < service["from"]
        elif rule == "date.unparseable":
            with pytest.raises(ValueError):
                dt.date.fromisoformat(service["from"])
    # the XML line numbers agree with lxml's view of the same elements
    for rel in sorted({r for r in c["source_file"] if r.endswith(".xml")}):
        lines = {e.sourceline for e in parse_xml(root / rel).getroot().iter()}
        assert set(c.filter(pl.col("source_file") == rel)["line"]) <= lines
