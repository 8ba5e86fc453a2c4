"""The timeline's tables: coverage and gaps, episodes with their stops, provider changes and
conflicts, and the daily aggregates (timeline.md)."""

from __future__ import annotations

import polars as pl

from transforms.tables.model import Column, Table

UTC = pl.Datetime("us", "UTC")
# what the reconstruction reads of staging (iplos_stops included: 3.7 stops count where IPLOS covers)
RECONSTRUCTION_INPUTS = ("iplos_services", "iplos_persons", "iplos_stops", "epj_service_versions", "epj_persons",
                         "epj_stops", "municipality_codes")

_KOMMUNE = Column("kommune", pl.Utf8, "reporting municipality (kommunenummer today)")
_UNIT = Column("unit", pl.Utf8, "the kommunenummer valid on the day for this part of the municipality's territory")
_EPISODE = Column("episode_id", pl.Utf8, "the episode: municipality and reporting id")
_LINEAGE = Column("lineage", pl.List(pl.Utf8), "the staged rows behind it, as source_file:line")

COVERAGE = Table(
    "coverage",
    "Which source is authoritative for each reporting municipality, unit and day since 2017-01-01.",
    (
        _KOMMUNE, _UNIT,
        Column("day", pl.Date, "the day"),
        Column("source", pl.Utf8, "epj:<system>, iplos:<year> (that year's yearly extract) or gap"),
    ),
    path="timeline/coverage.parquet",
    asset="coverage",
    reads=RECONSTRUCTION_INPUTS,
    sort=("kommune", "unit", "day"),
)

COVERAGE_SEGMENTS = Table(
    "coverage_segments",
    "Runs of consecutive days of one unit with the same authoritative source.",
    (
        _KOMMUNE, _UNIT,
        Column("source", pl.Utf8, "epj:<system>, iplos:<year> or gap"),
        Column("first_day", pl.Date, "first day of the run"),
        Column("last_day", pl.Date, "last day of the run"),
        Column("days", pl.Int64, "days in the run"),
    ),
    path="timeline/coverage_segments.parquet",
    asset="coverage_segments",
    reads=("coverage",),
    sort=("kommune", "unit", "first_day"),
)

GAPS = Table(
    "gaps",
    "Runs of days no source covers: reported, bridged where the rules allow, never an error.",
    (
        _KOMMUNE, _UNIT,
        Column("first_day", pl.Date, "first day without a source"),
        Column("last_day", pl.Date, "last day without a source"),
        Column("days", pl.Int64, "days in the gap"),
    ),
    path="timeline/gaps.parquet",
    asset="gaps",
    reads=("coverage_segments",),
    sort=("kommune", "unit", "first_day"),
)

MISSING_EXTRACTS = Table(
    "missing_extracts",
    "Yearly extracts a unit should have for a data year but that do not exist (or were quarantined whole).",
    (
        _KOMMUNE, _UNIT,
        Column("year", pl.Int32, "data year"),
        Column("days_covered_by_epj", pl.UInt32, "days of that year an EPJ export covers anyway"),
        Column("gap_days", pl.UInt32, "days of that year no source covers"),
    ),
    path="timeline/missing_extracts.parquet",
    asset="missing_extracts",
    reads=("coverage",),
    sort=("kommune", "unit", "year"),
)

EPISODES = Table(
    "episodes",
    "One canonical episode per real service allocation, whichever sources held it (timeline.md).",
    (
        _EPISODE, _KOMMUNE,
        Column("reporting_id", pl.Utf8, "tjenesteID reported for it: its earliest EPJ record's service id, else "
                                        "its earliest 3.7 record's, else derived; '#n' when several share one"),
        Column("reporting_id_derived", pl.Boolean, "the id was derived (IPLOS 3.6 only)"),
        Column("person_key", pl.Utf8, "pseudonym of the person"),
        Column("user_no", pl.Utf8, "the source's local user number (brukerNr)"),
        Column("service_code", pl.Utf8, "service type, code list 9151 (12 and 13 reported as 29)"),
        Column("start_date", pl.Date, "start, by the most detailed source (pre-switch part when stitched)"),
        Column("end_date", pl.Date, "end, by the source of the latest part; null while open"),
        Column("provider_org", pl.Utf8, "provider organisation number, latest"),
        Column("hours_per_week", pl.Float64, "hours per week, latest"),
        Column("start_registered_at", UTC, "when the start was registered (EPJ registration or extract date)"),
        Column("end_registered_at", UTC, "when the end was registered"),
        Column("stitched", pl.Boolean, "continued across an EPJ switch or merger by stitching or migratedFrom"),
        Column("end_imputed", pl.Boolean, "the end is the last day its source covered (the next source "
                                          "does not hold it)"),
        Column("bridged_gap", pl.Boolean, "it runs across a coverage gap"),
        Column("conflict", pl.Boolean, "listed in conflicts"),
        Column("start_source", pl.Utf8, "the source that gave the start: epj:<system> or iplos:<year>"),
        Column("n_records", pl.Int64, "source records linked into it"),
        Column("records", pl.List(pl.Utf8), "its source records (epj:<system>:<id>, i37:..., i36:...)"),
        _LINEAGE,
    ),
    path="timeline/episodes.parquet",
    asset="service_episodes",
    reads=RECONSTRUCTION_INPUTS,
    sort=("episode_id",),
)

EPISODE_STOPS = Table(
    "stops",
    "Temporary stops of the episodes (EPJ stops; IPLOS 3.7 stops on days IPLOS is authoritative).",
    (
        _EPISODE,
        Column("stop_id", pl.Utf8, "the stop's id (prefixed by its system where two sources use one id)"),
        Column("from_date", pl.Date, "first day of the stop"),
        Column("to_date", pl.Date, "last day of the stop; null while stopped"),
        Column("source", pl.Utf8, "epj:<system> or iplos:<year>"),
        Column("registered_at", UTC, "when the stop was registered"),
        Column("end_registered_at", UTC, "when its end was registered"),
        _LINEAGE,
    ),
    path="timeline/stops.parquet",
    asset="episode_stops",
    reads=RECONSTRUCTION_INPUTS,
    sort=("episode_id", "from_date", "stop_id", "source"),
)

PROVIDER_CHANGES = Table(
    "provider_changes",
    "Changes of an episode's provider: between EPJ versions on the registration's date, between yearly "
    "extracts on 1 January of the later year (imputed).",
    (
        _EPISODE,
        Column("change_date", pl.Date, "the day the new provider took over"),
        Column("provider_org", pl.Utf8, "the new provider's organisation number"),
        Column("imputed", pl.Boolean, "dated 1 January because only yearly extracts show it"),
        Column("registered_at", UTC, "when the change was registered"),
        _LINEAGE,
    ),
    path="timeline/provider_changes.parquet",
    asset="provider_changes",
    reads=RECONSTRUCTION_INPUTS,
    sort=("episode_id", "change_date"),
)

CONFLICTS = Table(
    "conflicts",
    "Doubtful cases the reconstruction met: ambiguous links, start disagreements, several persons or codes "
    "in one episode, the same source twice, id/person mismatches, unresolved persons, shared reporting ids, "
    "and the analysts' decisions on them.",
    (
        _KOMMUNE,
        Column("episode_id", pl.Utf8, "the episode concerned, where there is one"),
        Column("conflict", pl.Utf8, "kind of conflict"),
        Column("record_id", pl.Utf8, "the source record concerned, where there is one"),
        Column("detail", pl.Utf8, "what was found, for a person to read"),
        Column("resolved_by", pl.Utf8, "the analyst override(s) that decided it (config/overrides.toml ids); "
                                       "conflict analyst_decision lists a decision that resolved no other row"),
    ),
    path="timeline/conflicts.parquet",
    asset="conflicts",
    reads=RECONSTRUCTION_INPUTS,
    sort=("kommune", "conflict", "episode_id", "record_id", "detail"),
)

SPLIT_ASSIGNMENTS = Table(
    "split_assignments",
    "The records of split units (Snillfjord and Tysfjord in 2020, Ålesund 1507 in 2024) and the successor each "
    "went to, by the first rule that placed it: an analyst's override, the EPJ configuration, the person's "
    "continuation, the split's default. One row per record and source file; the view split_defaults lists "
    "those placed by the default or left unassigned, to check and move with [[splits.override]].",
    (
        Column("unit", pl.Utf8, "the split unit the record's rows in this file are filed under"),
        Column("divided_unit", pl.Utf8, "the code whose territory was divided (5012, 1850, 1507)"),
        Column("record_id", pl.Utf8, "the record: epj:<system>:<service id>, or i37:/i36: with the divided unit "
                                     "in place of the municipality"),
        Column("source_file", pl.Utf8, "a source file holding rows of the record"),
        Column("rows", pl.Int64, "the record's staged rows in that file (services or service versions)"),
        Column("person_key", pl.Utf8, "pseudonym of the person"),
        Column("service_code", pl.Utf8, "service type, code list 9151 (12 and 13 as 29)"),
        Column("start_date", pl.Date, "the record's start"),
        Column("end_date", pl.Date, "the record's end; null while open"),
        Column("kommune", pl.Utf8, "the successor that reports the record (null: unassigned, the default "
                                   "successor is not configured in this data root)"),
        Column("rule", pl.Utf8, "override, configuration, continuation, default or unassigned"),
        Column("candidates", pl.List(pl.Utf8), "the split's successors configured in this data root"),
    ),
    path="timeline/split_assignments.parquet",
    asset="split_assignments",
    reads=RECONSTRUCTION_INPUTS,
    sort=("record_id", "source_file"),
)

DAILY_ALLOCATION = Table(
    "daily_allocation",
    "Per day, municipality and service code: persons active, stopped, started and ended that day.",
    (
        _KOMMUNE,
        Column("service_code", pl.Utf8, "service type, code list 9151"),
        Column("active", pl.Int64, "episodes active (not stopped) on the day"),
        Column("stopped", pl.Int64, "episodes inside a temporary stop on the day"),
        Column("started", pl.Int64, "episodes starting on the day"),
        Column("ended", pl.Int64, "episodes ending on the day"),
    ),
    path="timeline/daily/day={day}/{part}.parquet",
    asset="daily_allocation",
    reads=("episodes", "stops"),
    sort=("kommune", "service_code"),
    hive_partitioning=True,
)

# the large outputs, written batch by batch as the reconstruction goes
STREAMED_TABLES = (EPISODES, EPISODE_STOPS, PROVIDER_CHANGES)
# the small ones, combined from every batch at the end
COMBINED_TABLES = (COVERAGE, COVERAGE_SEGMENTS, GAPS, MISSING_EXTRACTS, CONFLICTS, SPLIT_ASSIGNMENTS)

# --- reconciliation with the yearly extracts that were not evidence (EPJ-covered years) -----------------
_YEAR = Column("year", pl.Int32, "data year of the yearly extract")
_RECONCILIATION_INPUTS = ("episodes", "coverage", "iplos_services", "iplos_persons", "epj_persons",
                          "epj_service_versions", "municipality_codes")

RECONCILIATION = Table(
    "reconciliation",
    "Per municipality, unit and year whose yearly extract an EPJ made redundant (it covers every day): the "
    "reconstruction against the extract (services matched, only on one side, start and end disagreements).",
    (
        _KOMMUNE, _UNIT, _YEAR,
        Column("authoritative", pl.Utf8, "the source(s) the timeline used instead: epj:<system>"),
        Column("extract_services", pl.Int64, "services the extract lists"),
        Column("timeline_services", pl.Int64, "episodes held under the unit and active on some day of the year"),
        Column("matched", pl.Int64, "extract services matched to an episode (3.7: service id; 3.6: person, code "
                                    "and start within the tolerance)"),
        Column("only_in_extract", pl.Int64, "extract services no episode stands for (e.g. annulled in the EPJ since)"),
        Column("only_in_timeline", pl.Int64, "episodes of the unit and year the extract does not list"),
        Column("start_disagreements", pl.Int64, "matched services whose start differs from the episode's and "
                                                "from the matched record's own"),
        Column("end_disagreements", pl.Int64, "matched services whose end (none: open on 31 December) differs "
                                              "from the episode's end as known on 31 December"),
        Column("agreement", pl.Float64, "matched services that agree on start and end, over all services of "
                                        "either side (null when neither side has any)"),
    ),
    path="timeline/reconciliation.parquet",
    asset="reconciliation",
    reads=_RECONCILIATION_INPUTS,
    sort=("kommune", "unit", "year"),
)

RECONCILIATION_SERVICES = Table(
    "reconciliation_services",
    "Every discrepancy between an extract and the reconstruction: one row per service and kind.",
    (
        _KOMMUNE, _UNIT, _YEAR,
        Column("discrepancy", pl.Utf8, "only_in_extract, only_in_timeline, start_disagrees or end_disagrees"),
        Column("episode_id", pl.Utf8, "the episode (null: only in the extract)"),
        Column("service_id", pl.Utf8, "the extract's service id (layout 3.7; null for 3.6 and timeline-only)"),
        Column("person_key", pl.Utf8, "pseudonym of the person"),
        Column("service_code", pl.Utf8, "service type, code list 9151 (12 and 13 as 29)"),
        Column("extract_start", pl.Date, "start in the extract"),
        Column("extract_end", pl.Date, "end in the extract (null: open on 31 December)"),
        Column("timeline_start", pl.Date, "the episode's start"),
        Column("timeline_end", pl.Date, "the episode's end"),
        Column("lineage", pl.Utf8, "the extract row, as source_file:line"),
    ),
    path="timeline/reconciliation_services.parquet",
    asset=None,
    written_with=("reconciliation",),
    reads=_RECONCILIATION_INPUTS,
    sort=("kommune", "unit", "year", "discrepancy", "service_id", "episode_id", "lineage"),
)

RECONCILIATION_PERSONS = Table(
    "reconciliation_persons",
    "Persons per service code on 31 December of each reconciled year, from the extract and from the timeline.",
    (
        _KOMMUNE, _UNIT, _YEAR,
        Column("service_code", pl.Utf8, "service type, code list 9151 (12 and 13 as 29)"),
        Column("extract_persons", pl.Int64, "persons the extract shows with the service on 31 December"),
        Column("timeline_persons", pl.Int64, "persons the timeline shows with the service on 31 December"),
        Column("difference", pl.Int64, "timeline minus extract"),
    ),
    path="timeline/reconciliation_persons.parquet",
    asset=None,
    written_with=("reconciliation",),
    reads=_RECONCILIATION_INPUTS,
    sort=("kommune", "unit", "year", "service_code"),
)
