"""Tests of the synthetic data generator (transforms.synthetic) at demo scale.

One demo root is generated per test session and shared; tests that need their own root
(determinism, overwrite) generate into tmp_path. Larger scales are marked slow.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from lxml import etree
from stdnum.no import fodselsnummer, orgnr

from transforms.synthetic import SCALES, generate
from transforms.synthetic.ids import is_valid_synthetic
from transforms.synthetic.municipalities import load_municipalities

NS = "{urn:no:iplos:aarsmelding:3.7}"
RULES = {
    "id.check_digits",
    "id.parent_quarantined",
    "period.end_before_start",
    "code.unknown_service",
    "hours.out_of_range",
    "record.duplicate",
    "date.unparseable",
    "file.unparseable",
    "file.encoding_mismatch",
}


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo")
    generate(path, "demo", seed=42)
    return path


def truth(root: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(root / "truth" / f"{name}.parquet")


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def corrupted_files(root: Path) -> set[str]:
    return set(truth(root, "corruptions").filter(pl.col("line").is_null())["source_file"])


def xml_files(root: Path) -> list[Path]:
    return sorted((root / "raw" / "iplos").rglob("*.xml"))


def parse_xml(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), etree.XMLParser(huge_tree=True))


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="cp1252"), newline=""), delimiter=";"))


def read_jsonl(folder: Path) -> list[dict]:
    return [
        json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text("utf-8").splitlines()
    ]


def physical_line(root: Path, relative: str, line: int) -> str:
    data = (root / relative).read_bytes()
    encoding = "cp1252" if relative.endswith(".csv") else "utf-8"
    if relative.endswith(".xml"):
        encoding = "utf-8" if b'encoding="UTF-8"' in data[:60] else "iso-8859-1"
    return data.decode(encoding).split("\n")[line - 1].rstrip("\r")


def bad_numbers(root: Path) -> set[str]:
    """The identifiers the corpus planted on purpose (id.check_digits lines)."""
    rows = truth(root, "corruptions").filter(pl.col("rule_id") == "id.check_digits")
    found = set()
    for rel, line in rows.select("source_file", "line").iter_rows():
        text = physical_line(root, rel, line)
        if text.strip() == "<Person>":  # layout 3.6 has the person's fields on the next line
            text = physical_line(root, rel, line + 1)
        found |= set(re.findall(r"(?<!\d)\d{11}(?!\d)", text))
    return found


def desynthesise(number: str) -> str:
    return number[:2] + f"{int(number[2:4]) - 80:02d}" + number[4:]


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


def test_yearly_file_names_follow_the_municipality_history(root: Path) -> None:
    names = {p.relative_to(root / "raw" / "iplos").as_posix() for p in xml_files(root)}
    for year in (2017, 2018, 2019):
        assert {f"{year}/0602.xml", f"{year}/0625.xml", f"{year}/0711.xml"} <= names
    assert {"2017/1601.xml", "2017/1662.xml", "2018/5001.xml", "2018/5030.xml", "2019/5030.xml"} <= names
    assert not any(n.startswith(("2020/5030", "2018/1601", "2019/1662")) for n in names)
    assert {"2021/3005.xml", "2023/3005.xml", "2024/3301.xml", "2025/3301.xml", "2020/5001.xml"} <= names
    assert "2020/3005.xml" not in names  # the missing extract


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


# -- the features the pipeline must handle ---------------------------------------------------


def test_epj_configuration_covers_switch_history_and_mergers(root: Path) -> None:
    import tomllib

    config = tomllib.loads((root / "config" / "kommuner.toml").read_text("utf-8"))
    kommuner = {k["nr"]: k for k in config["kommune"]}
    assert set(kommuner) == {"3301", "5001", "1515"}
    drammen = {e["system"]: e for e in kommuner["3301"]["epj"]}
    a, b = drammen["epj3301a"], drammen["epj3301b"]
    assert a["format"] == "epj-a-csv" and b["format"] == "epj-b-jsonl"
    assert a["history_from"] > a["active_from"] and a["active_to"] == "2021-03-14"
    assert b["active_from"] == "2021-03-15" and "active_to" not in b
    for k in kommuner.values():
        for e in k["epj"]:
            assert e["path"] == f"raw/epj/{k['nr']}-{e['system']}" and (root / e["path"]).is_dir()
            assert k["kontaktpersoner"][0]["epost"].endswith(".example.org")


def test_switch_migrates_services_with_and_without_link(root: Path) -> None:
    events = read_jsonl(root / "raw" / "epj" / "3301-epj3301b")
    old_ids = {r["tjenesteid"] for r in read_csv(root / "raw" / "epj" / "3301-epj3301a" / "tjenester.csv")}
    migrated = [e for e in events if e["kind"] == "service" and "migratedFrom" in e]
    assert migrated
    for e in migrated:
        assert e["service"]["from"] == "2021-03-15"
        assert e["migratedFrom"]["system"] == "epj3301a" and e["migratedFrom"]["serviceId"] in old_ids
    episodes = truth(root, "episodes").filter(pl.col("epj_ids").list.join(",").str.contains("epj3301b:"))
    assert episodes.filter(pl.col("migrated_with_link") == True).height > 0  # noqa: E712
    assert episodes.filter(pl.col("migrated_with_link") == False).height > 0  # noqa: E712
    unlinked_new = [
        e
        for e in events
        if e["kind"] == "service"
        and "migratedFrom" not in e
        and e["service"]["from"] == "2021-03-15"
        and e["recordedAt"].startswith("2021-03-15")
    ]
    assert unlinked_new
    # Klæbu's records moved into Trondheim's system at the 2020 merger
    trd = read_jsonl(root / "raw" / "epj" / "5001-epj5001b")
    assert any(e.get("migratedFrom", {}).get("system") == "epj5001a" for e in trd)


def test_gap_has_services_bridging_it_and_ending_in_it(root: Path) -> None:
    gaps = truth(root, "gaps")
    assert gaps.rows() == [("3301", "3005", dt.date(2020, 1, 1), dt.date(2020, 6, 30), 182)]
    sources = truth(root, "sources")
    assert sources.filter((pl.col("unit") == "3005") & (pl.col("year") == 2020))["status"].to_list() == [
        "missing"
    ]
    eps = truth(root, "episodes").filter(pl.col("reporting_kommune") == "3301")
    open_before = eps.filter(pl.col("start_date") < dt.date(2020, 1, 1))
    bridged = open_before.filter(
        (pl.col("end_date").is_null() | (pl.col("end_date") > dt.date(2020, 6, 30)))
        & pl.col("epj_ids").list.join(",").str.contains("epj3301a:")
    )
    ended_inside = open_before.filter(
        pl.col("end_date").is_between(dt.date(2020, 1, 1), dt.date(2020, 6, 30))
    )
    assert bridged.height > 10 and ended_inside.height > 5
    # what ended inside the gap is lost from the export (it ended before history_from)
    assert ended_inside.filter(pl.col("epj_ids").list.len() > 0).height == 0


def test_d_number_replaced_in_both_export_formats(root: Path) -> None:
    def replaced(rows: list[tuple[str, str]]) -> bool:
        types: dict[str, list[str]] = {}
        for user, id_type in rows:
            types.setdefault(user, []).append(id_type)
        return any(t[0] == "DNR" and "FNR" in t[1:] for t in types.values())

    csv_rows = [
        (f"{p.parent.name}:{r['brukernr']}", r["id_type"])
        for p in sorted((root / "raw" / "epj").rglob("brukere.csv"))
        for r in read_csv(p)
    ]
    json_rows = [
        (f"{f.name}:{e['clientId']}", e["client"]["idType"])
        for f in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")})
        for e in read_jsonl(f)
        if e["kind"] == "client"
    ]
    assert replaced(csv_rows) and replaced(json_rows)


def test_annulled_stops_provider_changes_and_housing_codes(root: Path) -> None:
    annulled = truth(root, "annulled")
    assert annulled.height >= 3
    rows = [r for p in sorted((root / "raw" / "epj").rglob("tjenester.csv")) for r in read_csv(p)]
    events = [
        e for f in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")}) for e in read_jsonl(f)
    ]
    cancelled = {
        e["service"]["id"] for e in events if e["kind"] == "service" and e["service"]["status"] == "CANCELLED"
    }
    annulled_csv = {r["tjenesteid"] for r in rows if r["endringstype"] == "ANNULLERT"}
    assert cancelled and annulled_csv
    # a snapshot series (omsorgsjournal) shows an annulled service only if a dump fell before its annulment
    audit = truth(root, "sources").filter(pl.col("format").is_in(["epj-a-csv", "epj-b-jsonl"]))["system"]
    assert cancelled | annulled_csv == set(annulled.filter(pl.col("system").is_in(audit.implode()))["service_id"])
    truth_ids = {i.split(":")[1] for ids in truth(root, "episodes")["epj_ids"].to_list() for i in ids}
    assert not (cancelled | annulled_csv) & truth_ids
    # stops in both exports and in 3.7 extracts, some still open on 31 December
    assert any(p.stat().st_size > 200 for p in (root / "raw" / "epj").rglob("stopp.csv"))
    assert any(e["kind"] == "pause" for e in events)
    text37 = (root / "raw" / "iplos" / "2021" / "1515.xml").read_text("iso-8859-1")
    assert "<MidlertidigStopp" in text37
    assert any('tilDato=""' in p.read_bytes().decode("latin-1") for p in xml_files(root))
    assert truth(root, "stops").height > 100
    # a provider change is an ENDRET version with a new organisation number
    by_id: dict[str, list[str]] = {}
    for r in rows:
        by_id.setdefault(r["tjenesteid"], []).append(r["utforer_orgnr"])
    assert any(len(set(orgs)) > 1 for orgs in by_id.values())
    assert truth(root, "provider_changes").height > 50
    # municipal housing: 12/13 in the 3.6 years, 29 from 2019, and truth keeps both
    text36 = "".join(p.read_text("iso-8859-1") for p in xml_files(root) if p.parent.name in ("2017", "2018"))
    assert "<Kode>12</Kode>" in text36 and "<Kode>13</Kode>" in text36 and "<Kode>29</Kode>" not in text36
    housing = truth(root, "episodes").filter(pl.col("service_code") == 29)
    assert set(housing["original_code"]) >= {12, 13, 29}


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


# -- the truth ------------------------------------------------------------------------------


def test_truth_episodes_are_consistent(root: Path) -> None:
    eps = truth(root, "episodes")
    persons = truth(root, "persons")
    assert eps["truth_episode_id"].n_unique() == eps.height
    assert eps.filter(pl.col("end_date") < pl.col("start_date")).height == 0
    assert eps.filter(pl.col("end_date").is_null() != (pl.col("end_reason") == "open")).height == 0
    assert eps["start_date"].min() < dt.date(2010, 1, 1)  # some services started years before 2017
    assert eps.filter(pl.col("end_date") < dt.date(2017, 1, 1)).height == 0
    assert set(eps["fid"]) == set(persons["fid"])
    dead = eps.join(persons.select("fid", "death_date"), on="fid").filter(pl.col("death_date").is_not_null())
    assert dead.filter(pl.col("end_date").is_null() | (pl.col("end_date") > pl.col("death_date"))).height == 0
    assert dead.filter(pl.col("end_reason") == "death").height > 100
    assert (
        dead.filter(pl.col("end_reason") == "death")["end_date"]
        == dead.filter(pl.col("end_reason") == "death")["death_date"]
    ).all()
    counts = Counter(eps["service_code"].to_list())
    assert counts.most_common(1)[0][0] == 15
    assert [c for c, _ in counts.most_common(3)] == [15, 1, 6]
    long_stays = eps.filter(
        (pl.col("service_code") == 21)
        & (pl.col("end_reason") == "death")
        & (pl.col("start_date") > dt.date(2005, 1, 1))
    )
    mean_years = (long_stays["end_date"] - long_stays["start_date"]).dt.total_days().mean() / 365.25
    assert 1.0 < mean_years < 3.0
    for day in (dt.date(2018, 3, 1), dt.date(2021, 9, 1), dt.date(2024, 5, 1)):
        active = eps.filter(
            (pl.col("start_date") <= day) & (pl.col("end_date").is_null() | (pl.col("end_date") >= day))
        )
        assert 1.5 <= active.height / active["fid"].n_unique() <= 2.5
    assert eps.filter(~pl.col("observable")).height < eps.height * 0.02


def test_truth_ids_are_found_in_the_sources(root: Path) -> None:
    eps = truth(root, "episodes")
    exported: set[str] = set()
    for path in sorted((root / "raw" / "epj").rglob("tjenester.csv")):
        exported |= {f"{path.parent.name.split('-')[1]}:{r['tjenesteid']}" for r in read_csv(path)}
    for folder in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")}):
        exported |= {
            f"{folder.name.split('-')[1]}:{e['service']['id']}"
            for e in read_jsonl(folder)
            if e["kind"] == "service"
        }
    for path in sorted((root / "raw" / "epj").rglob("uttrekk_*.xml")):  # the snapshot dumps
        system = path.parent.name.split("-")[1]
        exported |= {f"{system}:{t.get('id')}" for t in parse_xml(path).getroot().iter("Tjeneste")}
    wanted = {i for ids in eps["epj_ids"].to_list() for i in ids}
    assert wanted and wanted <= exported
    ids37 = {i for ids in eps["iplos37_ids"].to_list() for i in ids}
    in_files = set()
    for path in xml_files(root):
        if path.parent.name >= "2019" and path.relative_to(root).as_posix() not in corrupted_files(root):
            in_files |= {t.get("tjenesteID") for t in parse_xml(path).getroot().iter(f"{NS}Tjeneste")}
    assert ids37 and ids37 <= in_files
    stops = truth(root, "stops")
    assert stops.filter(pl.col("to_date") < pl.col("from_date")).height == 0
    changes = truth(root, "provider_changes").join(eps, on="truth_episode_id")
    assert (
        changes.filter(
            (pl.col("change_date") <= pl.col("start_date")) | (pl.col("change_date") > pl.col("end_date"))
        ).height
        == 0
    )


def test_extract_rows_mirror_the_truth(root: Path) -> None:
    """A 3.7 extract shows a service once, open on 31 December even when it ended later."""
    eps = truth(root, "episodes").explode("iplos37_ids", empty_as_null=True).drop_nulls("iplos37_ids")
    by_id = {(r["iplos37_ids"]): r for r in eps.iter_rows(named=True)}
    doc = parse_xml(root / "raw" / "iplos" / "2021" / "1515.xml").getroot()
    checked = 0
    for t in doc.iter(f"{NS}Tjeneste"):
        row = by_id.get(t.get("tjenesteID"))
        if row is None:
            continue  # a planted bad record
        end = row["end_date"]
        assert t.get("sluttDato") == ("" if end is None or end > dt.date(2021, 12, 31) else end.isoformat())
        assert t.get("startDato") == row["start_date"].isoformat()
        assert t.get("tjenesteType") == str(row["service_code"])
        checked += 1
    assert checked > 100


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["small", "oslo"])
def test_larger_scales_hold_every_feature(scale: str, tmp_path: Path) -> None:
    summary = generate(tmp_path, scale, seed=3)
    assert summary.persons > (9000 if scale == "small" else 45_000)
    c = truth(tmp_path, "corruptions")
    assert set(c["rule_id"]) == RULES
    assert truth(tmp_path, "gaps").height >= 1
    eps = truth(tmp_path, "episodes")
    assert Counter(eps["service_code"].to_list()).most_common(1)[0][0] == 15
