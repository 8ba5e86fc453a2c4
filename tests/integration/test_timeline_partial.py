"""A changed source rebuilds only the timelines of the municipalities it touches (and of their split family),
and the reconciliation and events derive only theirs again; the outputs are those a full build of the same
staged files writes."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.phantoms import copy_ingested, export_lines, remove_lines
from transforms.core.config import load_kommuner
from transforms.core.settings import load_settings
from transforms.ingest.staging import ingest_epj
from transforms.privacy.keys import load_keys
from transforms.submit import events
from transforms.submit.events import write_events, write_events_or_keep
from transforms.tables import (
    COMBINED_TABLES,
    COVERAGE,
    DAILY_ALLOCATION,
    EPISODE_STOPS,
    EPISODES,
    EVENTS,
    PROVIDER_CHANGES,
    STREAMED_TABLES,
)
from transforms.timeline import reconciliation
from transforms.timeline.build import build_or_keep_timeline, build_timeline
from transforms.timeline.daily import write_daily_allocation
from transforms.timeline.reconciliation import OUTPUTS, reconcile, reconcile_or_keep

DERIVED_TABLES = (*COMBINED_TABLES, *STREAMED_TABLES, *OUTPUTS, EVENTS)


@pytest.fixture
def as_of(monkeypatch):
    monkeypatch.setenv("KTT_AS_OF_DATE", "2025-12-31")


@pytest.fixture
def derived_again(monkeypatch) -> dict[str, list]:
    """What the reconciliation and the events were asked to derive again, per call (None: everything)."""
    calls: dict[str, list] = {"reconcile": [], "events": []}

    def spy(name, function):
        def called(*args, rebuild=None, **kwargs):
            calls[name].append(None if rebuild is None else tuple(sorted(rebuild)))
            return function(*args, rebuild=rebuild, **kwargs)
        return called

    monkeypatch.setattr(reconciliation, "reconcile", spy("reconcile", reconcile))
    monkeypatch.setattr(events, "write_events", spy("events", write_events))
    return calls


def _derive(root: Path):
    """The timeline, then the reconciliation and the events, each kept or (partly) rebuilt as `ktt backfill` does."""
    settings = load_settings(root)
    summary, built = build_or_keep_timeline(settings)
    reconcile_or_keep(settings)
    write_events_or_keep(settings)
    return summary, built


def _outputs(root: Path) -> dict[str, pl.DataFrame]:
    return {t.name: pl.read_parquet(t.location(root)) for t in DERIVED_TABLES}


def _change_export_of(root: Path, kommune: str) -> None:
    """Drop the last record of the municipality's largest EPJ export file and stage the exports again.

    (A service id is no handle here: the small world's ids repeat across municipalities' exports.)
    """
    settings = load_settings(root)
    files = [p for p in (root / "raw" / "epj").glob(f"{kommune}-*/*") if p.suffix in (".csv", ".jsonl")]
    largest = max(files, key=lambda p: p.stat().st_size)
    records = largest.read_bytes().rstrip(b"\r\n").split(b"\n")
    largest.write_bytes(b"\n".join(records[:-1]) + b"\n")
    report = ingest_epj(settings, load_keys())
    assert [o.source_file for o in report.files] == [largest.relative_to(root).as_posix()]


def _rows_by_municipality(root: Path) -> dict[str, dict[str, pl.DataFrame]]:
    """Per municipality, its rows of each timeline output the events are derived from."""
    rows: dict[str, dict[str, pl.DataFrame]] = {}
    for table in events.DERIVED_FROM:
        frame = pl.read_parquet(table.location(root))
        frame = frame.with_columns(_m=pl.col("episode_id").str.split(":").list.first())
        for (nr,), part in frame.partition_by("_m", as_dict=True).items():
            rows.setdefault(nr, {})[table.name] = part
    return rows


def _rows_changed(before: dict, after: dict) -> tuple[str, ...]:
    """The municipalities whose rows of the events' inputs differ between two states of the timeline."""
    return tuple(sorted(nr for nr in set(before) | set(after)
                        if set(before.get(nr, {})) != set(after.get(nr, {}))
                        or any(not frame.equals(after[nr][name]) for name, frame in before[nr].items())))


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _remove_a_service_of(root: Path, kommune: str) -> None:
    """Remove every line of one of the municipality's services from its EPJ export and stage it again."""
    episodes = pl.read_parquet(EPISODES.location(root))
    service = next(s for s in episodes.filter(pl.col("kommune") == kommune)["reporting_id"].sort()
                   if export_lines(root, s))
    assert remove_lines(root, service) >= 1
    assert ingest_epj(load_settings(root), load_keys()).files


def _assert_equals_a_full_build(root: Path, tmp_path: Path, summary, name: str = "full") -> None:
    full = tmp_path / name
    shutil.copytree(root, full, ignore=shutil.ignore_patterns("timeline"))
    settings = load_settings(full)
    whole = build_timeline(settings)
    reconcile(settings)
    write_events(full, settings.cutoff_date)
    mine, theirs = _outputs(root), _outputs(full)
    for name, frame in theirs.items():
        assert mine[name].equals(frame), name
    assert summary.rows == whole.rows
    assert summary.episode_flags == whole.episode_flags


def test_a_changed_export_rebuilds_its_municipality_only_and_equals_a_full_build(demo_root, tmp_path, as_of,
                                                                                  derived_again):
    root = copy_ingested(demo_root, tmp_path / "partial")
    settings = load_settings(root)
    configured = tuple(sorted(m.nr for m in load_kommuner(settings.root.kommuner_toml)))

    first, built = _derive(root)
    assert built and first.rebuilt == configured
    kept, built = _derive(root)
    assert not built and kept.rebuilt == ()
    assert derived_again == {"reconcile": [None], "events": [None]}

    before = _rows_by_municipality(root)
    _change_export_of(root, "3301")
    partial, built = _derive(root)
    assert built and partial.rebuilt == ("3301",)
    # the reconciliation reads the staged rows too; the events only the timeline's, which may be the same
    changed = _rows_changed(before, _rows_by_municipality(root))
    assert set(changed) <= {"3301"}
    assert derived_again == {"reconcile": [None, ("3301",)], "events": [None] + ([changed] if changed else [])}
    _assert_equals_a_full_build(root, tmp_path, partial)

    # the partial build's stamps are whole ones: the next run keeps them, and a change of what every
    # municipality shares (here the configuration) rebuilds them all
    assert _derive(root)[0].rebuilt == ()
    with settings.root.kommuner_toml.open("a") as toml:
        toml.write("\n# reviewed\n")
    assert _derive(root)[0].rebuilt == configured
    assert derived_again["reconcile"][-1] is None and derived_again["events"][-1] is None


def test_a_split_successor_s_change_rebuilds_its_family_only(small_root, tmp_path, as_of, derived_again):
    root = copy_ingested(small_root, tmp_path / "partial")
    assert _derive(root)[1]

    # Ålesund (1508) shares the 2024 split of unit 1507 with Haram (1580): their records are decided together
    before = _rows_by_municipality(root)
    _change_export_of(root, "1508")
    partial, built = _derive(root)
    assert built and partial.rebuilt == ("1508", "1580")
    changed = _rows_changed(before, _rows_by_municipality(root))
    assert set(changed) <= {"1508", "1580"}
    assert derived_again == {"reconcile": [None, ("1508", "1580")], "events": [None] + ([changed] if changed else [])}
    _assert_equals_a_full_build(root, tmp_path, partial)


def test_the_next_morning_keeps_the_episodes_and_what_derives_from_them(
        demo_root, tmp_path, monkeypatch, derived_again):
    """The daily run's as-of date is yesterday, so every morning moves it: the coverage gains a day, but no
    municipality's reconstruction can change (each unit's source runs on, no staged date falls on the new
    day: `timeline.as_of`), so none is rebuilt, and the events and the reconciliation (no extract of that
    year) are kept, not derived again."""
    root = copy_ingested(demo_root, tmp_path / "morning")
    monkeypatch.setenv("KTT_AS_OF_DATE", "2025-06-30")
    _derive(root)
    monkeypatch.setenv("KTT_AS_OF_DATE", "2025-07-01")  # a day of an extract's year: compared again
    _derive(root)
    configured = tuple(sorted(m.nr for m in load_kommuner(load_settings(root).root.kommuner_toml)))
    assert derived_again["reconcile"] == [None, configured]

    monkeypatch.setenv("KTT_AS_OF_DATE", "2026-03-01")
    _derive(root)
    write_daily_allocation(root, dt.date(2017, 1, 1), dt.date(2017, 1, 10))
    unchanged = (EPISODES, EPISODE_STOPS, PROVIDER_CHANGES, EVENTS, *OUTPUTS)
    before = {t.name: t.location(root).stat().st_mtime_ns for t in unchanged}
    aggregated = _mtimes(DAILY_ALLOCATION.partition_folder(root, day="2017-01-05"))
    coverage = pl.read_parquet(COVERAGE.location(root)).height
    calls = {name: len(made) for name, made in derived_again.items()}

    monkeypatch.setenv("KTT_AS_OF_DATE", "2026-03-02")
    morning, built = _derive(root)
    assert not built and morning.rebuilt == ()
    assert pl.read_parquet(COVERAGE.location(root)).height == coverage + 3  # a unit each: the new day
    _assert_equals_a_full_build(root, tmp_path, morning, "full-morning")
    assert {t.name: t.location(root).stat().st_mtime_ns for t in unchanged} == before
    assert {name: len(made) for name, made in derived_again.items()} == calls
    write_daily_allocation(root, dt.date(2017, 1, 11), dt.date(2017, 1, 11))  # the days written are kept
    assert _mtimes(DAILY_ALLOCATION.partition_folder(root, day="2017-01-05")) == aggregated

    # the morning after, a source changed overnight too (the schedule's usual day): only its municipality is
    # rebuilt, and the stages after it derive again only the municipality whose rows changed
    _remove_a_service_of(root, "3301")
    monkeypatch.setenv("KTT_AS_OF_DATE", "2026-03-03")
    whole, built = _derive(root)
    assert built and whole.rebuilt == ("3301",)
    assert derived_again["reconcile"][-1] == derived_again["events"][-1] == ("3301",)
    write_daily_allocation(root, dt.date(2017, 1, 12), dt.date(2017, 1, 12))  # rows changed: all days again
    assert _mtimes(DAILY_ALLOCATION.partition_folder(root, day="2017-01-05")) != aggregated
    _assert_equals_a_full_build(root, tmp_path, whole)


def test_a_moved_as_of_date_rebuilds_the_municipalities_it_can_change_and_equals_a_full_build(
        demo_root, tmp_path, monkeypatch):
    root = copy_ingested(demo_root, tmp_path / "as-of")
    configured = {"1515", "3301", "5001"}
    # as-of dates in turn; within a year, each move is compared with a full build
    walk = [
        # Drammen's unit 3005 has a gap from 2020-01-01 to 2020-06-30 (no EPJ history, no extract): a trailing
        # gap's length decides what an episode with a later end bridges
        "2020-03-01", "2020-03-02",
        # Drammen's first EPJ ends on 2021-03-14 and the next begins on the 15th: a new run of coverage
        "2021-03-14", "2021-03-15",
        # and back a day: an earlier as-of date cuts the runs the same way
        "2021-03-14",
    ]
    for before, day in zip([None, *walk], walk, strict=False):
        monkeypatch.setenv("KTT_AS_OF_DATE", day)
        moved, built = _derive(root)
        assert built and "3301" in moved.rebuilt, day
        if before is None or before[:4] != day[:4]:  # a new year: every unit's successors and extracts may differ
            assert set(moved.rebuilt) == configured
            continue
        # Herøy's yearly extract covers those days, and none of its services or stops begins on them
        assert "1515" not in moved.rebuilt, day
        _assert_equals_a_full_build(root, tmp_path, moved, f"full-{day}")
