"""What a moved as-of date can change in a municipality's reconstruction (`timeline.as_of`): the digests
are equal for two dates exactly when no unit's trailing run of coverage changes source or start, none is a
gap, and no staged date lies between them."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from transforms.timeline.as_of import as_of_digests, latest_dates, trailing_coverage

D = dt.date


def _segments(*rows: tuple[str, str, str, dt.date, dt.date]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"kommune": pl.Utf8, "unit": pl.Utf8, "source": pl.Utf8,
                                      "first_day": pl.Date, "last_day": pl.Date}, orient="row")


def _coverage_until(day: dt.date, runs: dict[str, list[tuple[str, dt.date, dt.date | None]]]) -> pl.DataFrame:
    """Segments of a coverage cut at `day`: per (kommune:unit), runs of (source, first day, last day or None =
    open), as the coverage up to `day` holds them."""
    rows = []
    for key, unit_runs in runs.items():
        kommune, unit = key.split(":")
        for source, first, last in unit_runs:
            if first <= day:
                rows.append((kommune, unit, source, first, min(last or day, day)))
    return _segments(*rows)


RUNS = {
    "3301:3301": [("epj:a", D(2024, 1, 1), D(2026, 3, 14)), ("epj:b", D(2026, 3, 15), None)],
    "5001:5001": [("epj:c", D(2018, 1, 1), None)],
    "1515:1515": [("iplos:2025", D(2025, 1, 1), D(2025, 12, 31)), ("gap", D(2026, 1, 1), None)],
}


def _marks(day: dt.date) -> dict[str, str]:
    return trailing_coverage(_coverage_until(day, RUNS), day)


def test_a_unit_whose_source_runs_on_marks_the_same_day_after_day():
    assert _marks(D(2026, 2, 1))["5001"] == _marks(D(2026, 2, 2))["5001"] == _marks(D(2026, 12, 30))["5001"]
    assert _marks(D(2026, 3, 1))["3301"] == _marks(D(2026, 3, 14))["3301"]


def test_a_new_run_of_coverage_or_a_trailing_gap_marks_each_day_differently():
    assert _marks(D(2026, 3, 14))["3301"] != _marks(D(2026, 3, 15))["3301"]  # the next EPJ begins
    assert _marks(D(2026, 3, 15))["3301"] == _marks(D(2026, 3, 16))["3301"]
    assert _marks(D(2026, 2, 1))["1515"] != _marks(D(2026, 2, 2))["1515"]  # a gap grows


def _write(path: Path, frame: pl.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def test_latest_dates_see_the_first_days_of_stops_and_services_up_to_the_day(tmp_path):
    stops = _write(tmp_path / "epj_stops.parquet", pl.DataFrame({
        "registered_at": [dt.datetime(2026, 1, 3, 23, 30, tzinfo=dt.UTC), None],
        "from_date": [D(2026, 1, 1), D(2026, 1, 5)],
        "to_date": [None, D(2026, 1, 3)],
    }, schema_overrides={"registered_at": pl.Datetime("us", "UTC")}))
    services = _write(tmp_path / "iplos_services.parquet", pl.DataFrame({
        "extract_date": [D(2025, 12, 31)], "decision_date": [None], "start_date": [D(2019, 5, 1)],
        "end_date": [D(2026, 1, 2)]}, schema_overrides={"decision_date": pl.Date}))
    persons = _write(tmp_path / "epj_persons.parquet", pl.DataFrame({"death_date": [D(2026, 1, 3)]}))
    files = {"epj_stops": [stops], "iplos_services": [services], "epj_persons": [persons]}

    def latest(day: dt.date) -> dict[Path, dt.date | None]:
        return latest_dates(files, day)

    assert latest(D(2026, 1, 2)) == {stops: D(2026, 1, 1), services: D(2019, 5, 1), persons: None}
    # an end, a registration time, a death on the 3rd: a service ends on its end date whatever the as-of date
    assert latest(D(2026, 1, 4)) == latest(D(2026, 1, 2))
    assert latest(D(2026, 1, 5))[stops] == D(2026, 1, 5)  # a stop begins: it may gain the day's coverage
    assert latest(D(2018, 1, 1)) == {stops: None, services: None, persons: None}


def test_a_municipality_s_digest_follows_its_family_s_files_its_coverage_and_its_overrides(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    families = {"1508": ["1508", "1580"], "1580": ["1508", "1580"], "5001": ["5001"]}
    files = {"1508": [a], "1580": [b]}
    trailing = {"1508": "1508 epj:x from 2024-01-01", "1580": "1580 epj:y from 2024-01-01",
                "5001": "5001 epj:z from 2018-01-01"}

    def digests(day: dt.date, latest: dict, overrides: set[str] = frozenset()) -> dict[str, str]:
        return as_of_digests(day, families, files, latest, trailing, set(overrides))

    first = digests(D(2026, 1, 1), {a: D(2025, 12, 1), b: None})
    assert digests(D(2026, 1, 2), {a: D(2025, 12, 1), b: None}) == first
    moved = digests(D(2026, 1, 2), {a: D(2025, 12, 1), b: D(2026, 1, 2)})  # a date of 1580's files
    assert {nr for nr in first if first[nr] != moved[nr]} == {"1508", "1580"}  # a split family together
    with_override = digests(D(2026, 1, 2), {a: D(2025, 12, 1), b: None}, {"5001"})
    assert {nr for nr in first if first[nr] != with_override[nr]} == {"5001"}
