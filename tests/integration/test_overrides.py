"""Analyst overrides (config/overrides.toml): every kind's effect on episodes, lineage and conflicts, and the
notifications the next run sends; changing an override is a correction; a stale one fails naming it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipelines.run import Runner
from tests.phantoms import FIRST_RUN_TO, NEXT_DAY, copy_ingested, extract_only
from transforms.core.settings import load_settings
from transforms.submit.ledger import integrity_problems, open_ledger
from transforms.timeline.build import build_timeline
from transforms.timeline.overrides import OverrideError, StaleOverride, load_overrides

KOMMUNER = ["1515", "3301"]
DECIDED = 'reason = "checked the case file"\ndecided_by = "analyst"\ndecided_on = 2026-11-02\n'


@pytest.fixture(scope="module")
def base(demo_root, tmp_path_factory, key_file) -> Path:
    """Herøy and Drammen sent to FIRST_RUN_TO without overrides."""
    root = copy_ingested(demo_root, tmp_path_factory.mktemp("overrides-base") / "data")
    runner = Runner(root, key_file)
    runner.timeline()
    runner.events()
    runner.submissions(dt.date(2017, 1, 1), FIRST_RUN_TO, KOMMUNER)
    return root


def _episodes(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "timeline" / "episodes.parquet")


@dataclasses.dataclass
class Targets:
    linked: list[str]  # two single-record episodes' records of one person and code
    linked_episodes: list[str]
    unlinked: list[str]  # the two records of a stitched episode
    unlinked_episode: str
    dated: str  # an open episode whose start and end are set
    dropped: str  # the only record of an ended episode
    dropped_episode: str
    kept_epj: str
    kept_extract: str


def _targets(root: Path) -> Targets:
    heroy = _episodes(root).filter(pl.col("kommune") == "1515").sort("episode_id")
    singles = heroy.filter(pl.col("n_records") == 1)
    pair = (singles.group_by("person_key", "service_code", maintain_order=True)
            .agg(pl.col("records").list.first(), pl.col("episode_id")).filter(pl.col("records").list.len() == 2)
            .row(0, named=True))
    stitched = heroy.filter(pl.col("stitched") & (pl.col("n_records") == 2)).row(0, named=True)
    taken = {*pair["episode_id"], stitched["episode_id"]}
    dated = heroy.filter(pl.col("end_date").is_null() & ~pl.col("episode_id").is_in(list(taken))
                         & (pl.col("start_date") > dt.date(2017, 6, 1))).row(0, named=True)
    dropped = singles.filter(pl.col("end_date").is_not_null() & (pl.col("start_date") > dt.date(2018, 1, 1))
                             & ~pl.col("episode_id").is_in([*taken, dated["episode_id"]])).row(0, named=True)
    planted = extract_only(root).filter(pl.col("reporting_kommune") == "1515")
    annulled = planted.filter(pl.col("kind") == "annulled_in_epj")["service_id"][0]
    missing = planted.filter(pl.col("kind") == "missing_from_epj")["service_id"][0]
    services = pl.read_parquet(root / "truth" / "extract_only.parquet")  # the extract record names its person
    from transforms.privacy.identity import Pseudonymizer
    from transforms.privacy.keys import load_keys

    person = Pseudonymizer(load_keys().pseudonym_key)(services.filter(pl.col("service_id") == missing)["fid"][0])
    return Targets(pair["records"], pair["episode_id"], stitched["records"], stitched["episode_id"],
                   dated["episode_id"], dropped["records"][0], dropped["episode_id"],
                   f"epj:epj1515a:{annulled}", f"i37:1515:{missing}:{person}")


def _toml(t: Targets) -> str:
    return "\n".join([
        f'[[override]]\nid = "OV-1"\nkind = "link"\nkommune = "1515"\nrecords = {t.linked!r}\n{DECIDED}',
        f'[[override]]\nid = "OV-2"\nkind = "unlink"\nkommune = "1515"\nrecords = {t.unlinked!r}\n{DECIDED}',
        f'[[override]]\nid = "OV-3"\nkind = "set_start"\nkommune = "1515"\nepisode = "{t.dated}"\n'
        f'start = 2017-03-01\n{DECIDED}',
        f'[[override]]\nid = "OV-4"\nkind = "set_end"\nkommune = "1515"\nepisode = "{t.dated}"\n'
        f'end = 2025-05-31\n{DECIDED}',
        f'[[override]]\nid = "OV-5"\nkind = "drop"\nkommune = "1515"\nrecord = "{t.dropped}"\n{DECIDED}',
        f'[[override]]\nid = "OV-6"\nkind = "keep"\nkommune = "1515"\nrecord = "{t.kept_epj}"\n{DECIDED}',
        f'[[override]]\nid = "OV-7"\nkind = "keep"\nkommune = "1515"\nrecord = "{t.kept_extract}"\n{DECIDED}',
        f'[[override]]\nid = "OV-8"\nkind = "empty_gap"\nkommune = "3301"\nunit = "3005"\n'
        f'first_day = 2020-01-01\n{DECIDED}',
    ])


@dataclasses.dataclass
class Applied:
    root: Path
    before: pl.DataFrame
    episodes: pl.DataFrame
    conflicts: pl.DataFrame
    sent: pl.DataFrame  # notifications up to FIRST_RUN_TO
    new: pl.DataFrame  # the next run's

    def lineage_of(self, episode_id: str) -> list[str]:
        lineage = self.episodes.filter(pl.col("episode_id") == episode_id)["lineage"][0].to_list()
        return [x for x in lineage if x.startswith("override:")]

    def resolved(self, override_id: str) -> pl.DataFrame:
        return self.conflicts.filter(pl.col("resolved_by").str.contains(override_id, literal=True))

    def new_about(self, reporting_id: str, kommune: str = "1515") -> pl.DataFrame:
        return self.new.filter((pl.col("kommune") == kommune) & (pl.col("reporting_id") == reporting_id))

    def sent_about(self, reporting_id: str, kommune: str = "1515") -> pl.DataFrame:
        return self.sent.filter((pl.col("kommune") == kommune) & (pl.col("reporting_id") == reporting_id))


def _run_next_day(root: Path, key_file: Path) -> None:
    runner = Runner(root, key_file)
    runner.timeline()
    runner.events()
    runner.submissions(NEXT_DAY, NEXT_DAY, KOMMUNER)


def _notifications(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0
        frame = con.execute("SELECT * FROM notifications").pl()
    return frame.filter(pl.col("day") < NEXT_DAY), frame.filter(pl.col("day") >= NEXT_DAY)


@pytest.fixture(scope="module")
def applied(base, tmp_path_factory, key_file) -> tuple[Applied, Targets]:
    root = tmp_path_factory.mktemp("overrides") / "data"
    shutil.copytree(base, root)
    targets = _targets(root)
    (root / "config" / "overrides.toml").write_text(_toml(targets))
    _run_next_day(root, key_file)
    sent, new = _notifications(root)
    conflicts = pl.read_parquet(root / "timeline" / "conflicts.parquet")
    return Applied(root, _episodes(base), _episodes(root), conflicts, sent, new), targets


def _reporting_id(episode_id: str) -> str:
    return episode_id.split(":", 1)[1]


def test_link_merges_two_episodes_and_withdraws_the_absorbed_one(applied):
    a, t = applied
    merged = a.episodes.filter(pl.col("records").list.contains(t.linked[0]))
    assert merged.height == 1 and set(t.linked) <= set(merged["records"][0].to_list())
    assert a.lineage_of(merged["episode_id"][0]) == ["override:OV-1"]
    assert a.resolved("OV-1").height >= 1
    (gone,) = set(t.linked_episodes) - set(merged["episode_id"])
    assert gone not in a.episodes["episode_id"].to_list()
    withdrawn = a.new_about(_reporting_id(gone))
    assert set(withdrawn["status"]) == {"C"}
    assert sorted(withdrawn["ref_guid"]) == sorted(a.sent_about(_reporting_id(gone))["guid"])


def test_unlink_splits_a_stitched_episode_and_reports_the_new_one(applied):
    a, t = applied
    holders = a.episodes.filter(pl.col("records").list.contains(t.unlinked[0])
                                | pl.col("records").list.contains(t.unlinked[1]))
    assert holders.height == 2 and (holders["n_records"] == 1).all()
    assert any(a.lineage_of(e) == ["override:OV-2"] for e in holders["episode_id"])
    assert a.resolved("OV-2").height >= 1
    new_episode = next(e for e in holders["episode_id"] if e != t.unlinked_episode)
    reported = a.new_about(_reporting_id(new_episode))
    assert "TjenesteStart" in set(reported.filter(pl.col("status") == "N")["event_type"])


def test_set_start_and_set_end_correct_the_start_and_report_the_end(applied):
    a, t = applied
    row = a.episodes.filter(pl.col("episode_id") == t.dated).row(0, named=True)
    assert (row["start_date"], row["end_date"], row["end_imputed"]) == (dt.date(2017, 3, 1), dt.date(2025, 5, 31),
                                                                       False)
    assert a.lineage_of(t.dated) == ["override:OV-3", "override:OV-4"]
    assert a.resolved("OV-3").height >= 1 and a.resolved("OV-4").height >= 1
    new = a.new_about(_reporting_id(t.dated))
    start = new.filter(pl.col("event_type") == "TjenesteStart")
    assert start.select("status", "event_date").rows() == [("M", dt.date(2017, 3, 1))]
    original = a.sent_about(_reporting_id(t.dated)).filter(pl.col("event_type") == "TjenesteStart")
    assert start["ref_guid"].to_list() == original["guid"].to_list()
    end = new.filter(pl.col("event_type") == "TjenesteSlutt")
    assert end.select("status", "event_date").rows() == [("N", dt.date(2025, 5, 31))]


def test_drop_removes_the_record_and_withdraws_its_episode(applied):
    a, t = applied
    assert a.episodes.filter(pl.col("records").list.contains(t.dropped)).height == 0
    decision = a.resolved("OV-5")
    assert decision.select("conflict", "record_id").rows() == [("analyst_decision", t.dropped)]
    withdrawn = a.new_about(_reporting_id(t.dropped_episode))
    sent = a.sent_about(_reporting_id(t.dropped_episode))
    assert sent.height > 0 and set(withdrawn["status"]) == {"C"}
    assert sorted(withdrawn["ref_guid"]) == sorted(sent["guid"])


@pytest.mark.parametrize("which", ["kept_epj", "kept_extract"])
def test_keep_revives_a_record_the_rules_set_aside(applied, which):
    a, t = applied
    record = getattr(t, which)
    override_id = "OV-6" if which == "kept_epj" else "OV-7"
    kept = a.episodes.filter(pl.col("records").list.contains(record))
    assert kept.height == 1 and a.lineage_of(kept["episode_id"][0]) == [f"override:{override_id}"]
    assert a.before.filter(pl.col("records").list.contains(record)).height == 0
    assert a.resolved(override_id)["conflict"].to_list() == ["analyst_decision"]
    reported = a.new_about(kept["reporting_id"][0])
    assert set(reported["status"]) == {"N"}
    assert {"TjenesteStart", "TjenesteSlutt"} <= set(reported["event_type"])


def test_an_empty_gap_has_no_active_episode_and_nothing_linked_across_it(applied):
    a, _ = applied
    first, last = dt.date(2020, 1, 1), dt.date(2020, 6, 30)
    touched = a.episodes.filter(pl.col("lineage").list.contains("override:OV-8"))
    assert touched.height > 50
    assert ((touched["start_date"] > last) | (touched["end_date"] < first)).all()
    assert not touched["bridged_gap"].any()
    assert a.resolved("OV-8").height >= 1
    drammen = a.new.filter(pl.col("kommune") == "3301")
    moved = drammen.filter((pl.col("event_type") == "TjenesteStart") & (pl.col("status") == "M"))
    assert moved.height > 0 and set(moved["event_date"]) == {last + dt.timedelta(days=1)}
    assert a.episodes.height > a.before.height  # the parts before the gap are episodes of their own


def test_changing_an_override_is_a_correction(applied, tmp_path, key_file):
    a, t = applied
    root = tmp_path / "data"
    shutil.copytree(a.root, root)
    toml = (root / "config" / "overrides.toml").read_text()
    (root / "config" / "overrides.toml").write_text(toml.split('[[override]]\nid = "OV-6"')[0])  # OV-6.. gone
    runner = Runner(root, key_file)
    runner.timeline()
    runner.events()
    runner.submissions(NEXT_DAY + dt.timedelta(days=1), NEXT_DAY + dt.timedelta(days=1), KOMMUNER)
    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0
        later = con.execute("SELECT * FROM notifications WHERE day > ?", [NEXT_DAY]).pl()
    kept = a.episodes.filter(pl.col("records").list.contains(t.kept_epj))["reporting_id"][0]
    withdrawn = later.filter(pl.col("reporting_id") == kept)
    assert set(withdrawn["status"]) == {"C"}
    assert sorted(withdrawn["ref_guid"]) == sorted(a.new_about(kept)["guid"])


def test_a_stale_override_fails_the_build_naming_it(demo_root, tmp_path):
    root = copy_ingested(demo_root, tmp_path / "data")
    (root / "config" / "overrides.toml").write_text(
        f'[[override]]\nid = "OV-gone"\nkind = "drop"\nkommune = "1515"\nrecord = "epj:epj1515a:E-999999"\n{DECIDED}'
        f'[[override]]\nid = "OV-nogap"\nkind = "empty_gap"\nkommune = "1515"\nunit = "1515"\n'
        f'first_day = 2020-01-01\n{DECIDED}')
    with pytest.raises(StaleOverride, match=r"OV-gone \(drop\) matches nothing any more.*OV-nogap"):
        build_timeline(load_settings(root))


@pytest.mark.parametrize(("text", "rule"), [
    ('[[override]]\nid = "X1"\nkind = "merge"\n', "kind = 'merge' is not one of"),
    ('[[override]]\nid = "X1"\nkind = "drop"\nkommune = "1515"\nrecord = "r"\n', "needs reason, decided_by"),
    (f'[[override]]\nid = "X1"\nkind = "link"\nkommune = "1515"\nrecords = ["a"]\n{DECIDED}', "two different"),
    (f'[[override]]\nid = "X1"\nkind = "drop"\nkommune = "1515"\nrecord = "r"\nepisode = "e"\n{DECIDED}',
     "episode not allowed"),
    (f'[[override]]\nid = "X1"\nkind = "set_end"\nkommune = "1515"\nepisode = "1515:E-1"\nend = "soon"\n{DECIDED}',
     "end = 'soon' is not a date"),
    (f'[[override]]\nid = "X1"\nkind = "drop"\nkommune = "1515"\nrecord = "r"\n{DECIDED}' * 2, "X1 is used twice"),
])
def test_a_malformed_override_names_the_file_the_override_and_the_rule(tmp_path, text, rule):
    path = tmp_path / "overrides.toml"
    path.write_text(text)
    with pytest.raises(OverrideError, match=rule) as error:
        load_overrides(path)
    assert str(path) in str(error.value) and ("X1" in str(error.value))
