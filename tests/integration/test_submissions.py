"""Daily submissions: schema validity, ledger numbering and chain, replay, determinism, corrections."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.conftest import OFFICIAL, REPO
from transforms.core.settings import load_settings
from transforms.privacy.identity import merge_vault, read_vault
from transforms.privacy.keys import load_keys
from transforms.submit import writer as writer_module
from transforms.submit.checks import CHECKS, check_replay, check_schema, check_sequence_and_chain, submission_checks
from transforms.submit.events import build_events, write_events
from transforms.submit.ledger import (
    SCHEMA_SQL,
    DayOrderError,
    LedgerBusy,
    integrity_problems,
    open_ledger,
    writer_lock,
)
from transforms.submit.planning import plan_notifications
from transforms.submit.replay import repeated_starts, replay_differences, replay_differences_streamed
from transforms.submit.resend import Selection, resend
from transforms.submit.serializers.xpr56 import load_schema, schema_issues
from transforms.submit.writer import RUNNING_MARKER, PersonsWithoutIdentity, SubmissionWriter
from transforms.tables import EVENTS, IDENTITY_VAULT
from transforms.timeline.build import build_timeline

D = dt.date
AS_OF = D(2025, 12, 31)


# The ledger's DDL as it was written by hand before the table registry (ledgers exist that were created with
# it): the registry's must create the very same tables.
HAND_WRITTEN_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS notifications (
    kommune VARCHAR NOT NULL, seq BIGINT NOT NULL, guid VARCHAR NOT NULL, previous_guid VARCHAR NOT NULL,
    day DATE NOT NULL, status VARCHAR NOT NULL, ref_guid VARCHAR, event_key VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL, event_guid VARCHAR NOT NULL, event_type VARCHAR NOT NULL,
    reporting_id VARCHAR NOT NULL, service_code VARCHAR NOT NULL, event_date DATE NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL, provider_org VARCHAR, stop_id VARCHAR, person_key VARCHAR NOT NULL,
    PRIMARY KEY (kommune, seq)
);
CREATE TABLE IF NOT EXISTS written_days (
    kommune VARCHAR NOT NULL, day DATE NOT NULL, n_notifications BIGINT NOT NULL, first_seq BIGINT,
    last_seq BIGINT, file VARCHAR, sha256 VARCHAR, PRIMARY KEY (kommune, day)
);
CREATE TABLE IF NOT EXISTS persons (
    kommune VARCHAR NOT NULL, person_key VARCHAR NOT NULL, bruker_nr VARCHAR NOT NULL,
    pasient_guid VARCHAR NOT NULL, PRIMARY KEY (kommune, person_key), UNIQUE (kommune, bruker_nr)
);
"""


def _catalog(ddl: str) -> tuple[list, list, list]:
    """Columns (name, type, nullability, position), constraints and indexes that `ddl` creates."""
    with duckdb.connect() as con:
        con.execute(ddl)
        return (con.execute("SELECT table_name, column_index, column_name, data_type, is_nullable "
                            "FROM duckdb_columns() WHERE NOT internal ORDER BY ALL").fetchall(),
                con.execute("SELECT table_name, constraint_type, constraint_column_names, constraint_text "
                            "FROM duckdb_constraints() ORDER BY ALL").fetchall(),
                con.execute("SELECT table_name, index_name, sql FROM duckdb_indexes() ORDER BY ALL").fetchall())


def test_the_registry_s_ledger_ddl_creates_the_tables_the_hand_written_one_did():
    registry, hand_written = _catalog(SCHEMA_SQL), _catalog(HAND_WRITTEN_LEDGER_DDL)
    assert registry == hand_written
    assert {row[0] for row in registry[0]} == {"notifications", "written_days", "persons"}
    assert ("persons", "UNIQUE", ["kommune", "bruker_nr"], "UNIQUE(kommune, bruker_nr)") in registry[1]


def prepare(root: Path) -> None:
    """Timeline, events and the identity vault of an ingested root (what the assets do)."""
    settings = dataclasses.replace(load_settings(root), as_of_date=AS_OF)
    build_timeline(settings)
    write_events(root, settings.cutoff_date)
    merge_vault(settings, load_keys())


CUTOFF = D(2017, 1, 1)


def backfill(root: Path, first: dt.date = CUTOFF, last: dt.date = AS_OF, **kwargs):
    settings = dataclasses.replace(load_settings(root), as_of_date=AS_OF)
    return SubmissionWriter(settings, load_keys()).run(first, last, **kwargs)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "submissions").rglob("*.xml"))}


def ledger_rows(root: Path) -> list[tuple]:
    with open_ledger(root, read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (registered_at) FROM notifications ORDER BY kommune, seq").fetchall()


@pytest.fixture(scope="module")
def written(demo_root, tmp_path_factory) -> Path:
    """A copy of the ingested demo root with a complete 2017-2025 backfill."""
    root = tmp_path_factory.mktemp("submissions") / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox"))
    prepare(root)
    backfill(root)
    return root


def test_events_derived_a_few_municipalities_at_a_time_equal_the_whole_country_s(written, tmp_path):
    """A national events table is derived a run of municipalities at a time (it did not fit DuckDB's limit
    as one sorted table): the file must be the same whatever the runs, and equal the one-query events."""
    whole = pl.read_parquet(EVENTS.location(written))
    cutoff = load_settings(written).cutoff_date
    root = tmp_path / "data"
    shutil.copytree(written / "timeline", root / "timeline")
    figures = write_events(root, cutoff, episodes_per_batch=50)
    runs = pl.read_parquet(EVENTS.location(root))
    assert whole["kommune"].n_unique() > 1 and runs.equals(whole)
    assert runs.equals(EVENTS.conform(build_events(root, cutoff)))
    assert figures["events"] == whole.height
    assert figures["initial_load_events"] == whole.filter(pl.col("day") == cutoff).height


def test_every_message_validates_against_the_official_schema(written):
    schema = load_schema(OFFICIAL)
    files = sorted((written / "submissions").rglob("*.xml"))
    assert len(files) > 1000
    bad = [(f.name, schema_issues(f.read_bytes(), schema)) for f in files]
    assert [b for b in bad if b[1]] == []


def test_ledger_numbering_chain_and_replay(written):
    events = pl.read_parquet(written / "timeline" / "events.parquet")
    with open_ledger(written, read_only=True) as con:
        assert integrity_problems(con).height == 0
        assert replay_differences(con, events).height == 0
        assert repeated_starts(con).height == 0
        per_kommune = con.execute("SELECT kommune, min(seq), max(seq), count(*) FROM notifications GROUP BY 1"
                                  ).fetchall()
    assert all(lo == 1 and hi == n for _, lo, hi, n in per_kommune)
    manifest = pl.read_parquet(written / "submissions" / "manifest.parquet")
    assert manifest.height == len(list((written / "submissions").rglob("*.xml")))


def test_the_asset_checks_pass_on_a_backfill_and_name_what_breaks_them(written, tmp_path, monkeypatch):
    from transforms.submit import ledger

    events = pl.read_parquet(EVENTS.location(written))
    with open_ledger(written, read_only=True) as con:
        outcomes = submission_checks(con, written, CUTOFF, AS_OF)
        assert [o.check for o in outcomes] == list(CHECKS) and all(o.passed for o in outcomes)
        files = len(list((written / "submissions").rglob("*.xml")))
        kommuner = con.execute("SELECT count(DISTINCT kommune) FROM written_days WHERE file IS NOT NULL").fetchone()[0]
        assert outcomes[0].figures["files_checked"] == files
        assert outcomes[0].figures["files_revalidated"] == 2 * kommuner < files
        assert outcomes[2].figures["differences"] == outcomes[2].figures["repeated_starts"] == 0
        replayed = [outcomes[2].figures[f"municipalities_{how}"] for how in (
            "replayed_whole", "replayed_since_last_check", "unchanged_since_last_check")]
        assert sum(replayed) == con.execute("SELECT count(DISTINCT kommune) FROM written_days").fetchone()[0]
        # a message file changed after it was written
        day, rel = con.execute("SELECT day, file FROM written_days WHERE file IS NOT NULL AND day >= '2021-03-01' "
                               "ORDER BY day, kommune LIMIT 1").fetchone()
        damaged = tmp_path / "damaged"
        for (other,) in con.execute("SELECT file FROM written_days WHERE day = ? AND file IS NOT NULL", [day]
                                    ).fetchall():
            (damaged / other).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(written / other, damaged / other)
        (damaged / rel).write_bytes((written / rel).read_bytes().replace(b'versjon="56.0.0"', b'versjon="55.0.0"'))
        schema = check_schema(con, damaged, day, day)
        assert not schema.passed and schema.tables["invalid"]["file"].to_list() == [rel]
        assert "56.0.0" in schema.tables["invalid"]["first_issue"][0] or "versjon" in schema.tables["invalid"][
            "first_issue"][0]
        # valid bytes, but not the ones the writer validated and recorded; and a file gone
        other = next(o for (o,) in con.execute("SELECT file FROM written_days WHERE day = ? AND file IS NOT NULL "
                                               "AND file <> ?", [day, rel]).fetchall())
        (damaged / rel).write_bytes((written / rel).read_bytes() + b"\n")
        (damaged / other).unlink()
        schema = check_schema(con, damaged, day, day)
        assert not schema.passed and schema.figures["files_changed"] == schema.figures["files_missing"] == 1
        assert dict(schema.tables["invalid"].rows()) == {
            rel: "not the bytes that were validated and recorded (SHA-256 differs)", other: "file missing"}
        # an event the ledger sent that is no longer an event, another with other content; replayed a few municipalities
        # at a time
        gone, unsent = events["event_key"][0], events.filter(pl.col("day") <= AS_OF)["event_key"][-1]
        events.filter(pl.col("event_key") != gone).write_parquet(tmp_path / "events.parquet")
        replay = check_replay(con, tmp_path / "events.parquet")
        assert not replay.passed and replay.tables["first"].rows() == [(gone.split("|")[0], gone,
                                                                         "sent but no longer an event")]
        changed = events.with_columns(content_hash=pl.when(pl.col("event_key") == unsent).then(pl.lit("other"))
                                      .otherwise(pl.col("content_hash")))
        changed.filter(pl.col("event_key") != gone).write_parquet(tmp_path / "events.parquet")
        streamed = replay_differences_streamed(con, tmp_path / "events.parquet", batch_notifications=100)
        assert streamed.rows() == [(gone.split("|")[0], gone, "sent but no longer an event"),
                                   (unsent.split("|")[0], unsent, "sent with other content")]
    # a hole in the numbering
    shutil.copytree(written / "ledger", tmp_path / "holed" / "ledger")
    with open_ledger(tmp_path / "holed") as con:
        con.execute("DELETE FROM notifications WHERE seq = 5 AND kommune = (SELECT min(kommune) FROM notifications)")
        # and a GUID used twice, in the last municipality (checked a batch of municipalities at a time)
        con.execute("""UPDATE notifications SET guid = (SELECT min(guid) FROM notifications WHERE seq = 1)
                       WHERE seq = 7 AND kommune = (SELECT max(kommune) FROM notifications)""")
        chain = check_sequence_and_chain(con)
        monkeypatch.setattr(ledger, "INTEGRITY_BATCH_NOTIFICATIONS", 10)
        assert check_sequence_and_chain(con).tables["problems"].equals(chain.tables["problems"])
    assert not chain.passed and {"numbering", "guid", "chain"} <= set(chain.tables["problems"]["problem"])


def test_large_municipalities_written_in_parts_give_the_same_files_and_ledger(written, tmp_path, monkeypatch):
    import transforms.submit.writer as writer

    root = tmp_path / "data"
    shutil.copytree(written, root, ignore=shutil.ignore_patterns("ledger", "submissions"))
    monkeypatch.setattr(writer, "JOB_ROWS", 500)  # every municipality in parts of about 500 notifications
    backfill(root)
    assert tree_digest(root) == tree_digest(written)
    assert ledger_rows(root) == ledger_rows(written)


def test_initial_load_holds_the_services_active_on_the_cutoff(written):
    events = pl.read_parquet(written / "timeline" / "events.parquet")
    initial = events.filter(pl.col("day") == D(2017, 1, 1))
    with open_ledger(written, read_only=True) as con:
        sent = con.execute("SELECT count(*) FROM notifications WHERE day = DATE '2017-01-01'").fetchone()[0]
    assert sent == initial.height > 500
    assert (initial.filter(pl.col("event_type") == "TjenesteStart")["event_date"] <= D(2017, 1, 1)).all()


def test_services_across_an_epj_switch_have_one_start_under_their_original_id(written):
    truth = pl.read_parquet(written / "truth" / "episodes.parquet").filter(pl.col("epj_ids").list.len() >= 2)
    original_ids = {i[0].split(":", 1)[1] for i in truth["epj_ids"].to_list()}
    with open_ledger(written, read_only=True) as con:
        starts = dict(con.execute("SELECT reporting_id, count(*) FROM notifications "
                                  "WHERE event_type = 'TjenesteStart' GROUP BY 1").fetchall())
    assert original_ids and all(starts.get(i) == 1 for i in original_ids)


def test_rewriting_a_written_day_reproduces_it_byte_for_byte(written):
    before = tree_digest(written)
    report = backfill(written, D(2021, 3, 1), D(2021, 3, 31))
    assert report.days_reproduced > 0 and report.files == 0
    assert tree_digest(written) == before


def test_a_day_after_a_missing_day_is_refused(written, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(written, root, ignore=shutil.ignore_patterns("ledger", "submissions"))
    backfill(root, D(2017, 1, 1), D(2017, 1, 31))
    with pytest.raises(DayOrderError, match="first missing day 2017-02-01"):
        backfill(root, D(2017, 3, 1), D(2017, 3, 31))


def test_two_backfills_from_empty_ledgers_are_byte_identical(written, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(written, root, ignore=shutil.ignore_patterns("ledger", "submissions"))
    backfill(root, D(2017, 1, 1), D(2019, 12, 31))
    # the second part plans against the same events as the first: every municipality is settled, planned
    # from its new days' events without the ledger's state of its sent keys, and the result is the same
    planned_against = []

    def recording(active, current, first, last):
        planned_against.append((active.height, current["day"].min()))
        return plan_notifications(active, current, first, last)

    monkeypatch.setattr(writer_module, "plan_notifications", recording)
    backfill(root, D(2020, 1, 1), AS_OF)  # in two parts, which must not matter
    assert planned_against and all(n == 0 and day >= D(2020, 1, 1) for n, day in planned_against)
    assert tree_digest(root) == tree_digest(written)
    assert ledger_rows(root) == ledger_rows(written)


def test_the_replay_check_replays_what_came_after_the_last_passed_one(written, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(written, root, ignore=shutil.ignore_patterns("ledger", "submissions"))
    events = root / "timeline" / "events.parquet"

    def replay():
        with open_ledger(root, read_only=True) as con:
            outcome = check_replay(con, events, data_root=root)
        figures = outcome.figures
        return outcome.passed, [figures[f"municipalities_{how}"] for how in (
            "replayed_whole", "replayed_since_last_check", "unchanged_since_last_check")]

    backfill(root, D(2017, 1, 1), D(2017, 6, 30))
    passed, (n, since, unchanged) = replay()
    assert passed and n > 1 and since == unchanged == 0  # nothing recorded yet: every municipality whole
    assert replay() == (True, [0, 0, n])  # nothing new
    backfill(root, D(2017, 7, 1), D(2017, 9, 30))
    assert replay() == (True, [0, n, 0])  # the same events: only the new half-year's keys replayed
    # a notification of the new days that says other than its event is found, by a replay since the last check
    backfill(root, D(2017, 10, 1), D(2017, 11, 30))
    with open_ledger(root) as con:
        kommune, seq = con.execute("SELECT kommune, max(seq) FROM notifications WHERE day >= DATE '2017-10-01' "
                                   "GROUP BY 1 ORDER BY 1 LIMIT 1").fetchone()
        con.execute("UPDATE notifications SET content_hash = 'tampered' WHERE kommune = ? AND seq = ?",
                    [kommune, seq])
    with open_ledger(root, read_only=True) as con:
        outcome = check_replay(con, events, data_root=root)
    assert not outcome.passed and outcome.figures["municipalities_replayed_since_last_check"] == n
    assert outcome.tables["first"].rows() == [(kommune, outcome.tables["first"]["event_key"][0],
                                               "sent with other content")]
    # a municipality that failed is replayed whole next time, and fails again: nothing was recorded for it
    assert replay() == (False, [1, 0, n - 1])
    # an old notification changed in place behind a passed check: the daily check trusts that the ledger only
    # grows (and the chain check that each run's numbering joins it); the whole replay of `ktt ledger status`
    # looks at every notification and finds both
    with open_ledger(root) as con:
        other = con.execute("SELECT kommune FROM notifications WHERE kommune <> ? LIMIT 1", [kommune]).fetchone()[0]
        con.execute("UPDATE notifications SET content_hash = 'tampered' WHERE kommune = ? AND seq = 1", [other])
        assert sorted(replay_differences_streamed(con, events)["kommune"].to_list()) == sorted([kommune, other])
    # a notification numbered after the recorded head but dated on an old day: not among the new days' rows
    # that the replay since the last check reads, so that municipality is replayed whole
    backfill(root, D(2017, 12, 1), D(2017, 12, 1))
    with open_ledger(root) as con:
        third = con.execute("SELECT min(kommune) FROM notifications WHERE kommune NOT IN (?, ?)", [kommune, other]
                            ).fetchone()[0]
        con.execute("""INSERT INTO notifications SELECT * REPLACE (seq + 1 AS seq, DATE '2017-01-02' AS day)
                       FROM notifications WHERE kommune = ? ORDER BY seq DESC LIMIT 1""", [third])
    with open_ledger(root, read_only=True) as con:
        outcome = check_replay(con, events, data_root=root)
    # whole: `kommune` (it failed before) and `third`; `other` since the last check (its old change unseen)
    assert n == 3 and [outcome.figures[f"municipalities_{how}"] for how in (
        "replayed_whole", "replayed_since_last_check", "unchanged_since_last_check")] == [2, 1, 0]
    assert set(outcome.tables["first"]["kommune"].to_list()) == {kommune}
    # other events: every municipality replayed whole
    pl.read_parquet(events).write_parquet(events)
    assert replay()[1] == [n, 0, 0]


def test_persons_sent_whose_identity_is_gone_fail_naming_the_municipality_and_the_cause(written, tmp_path):
    """The sources staged again without the identifiers (another key file, or synthetic test data without
    KTT_ALLOW_SYNTHETIC_IDS=1): the persons the ledger sent are named by their pseudonym, not by a bare key."""
    root = tmp_path / "data"
    shutil.copytree(written, root)
    vault = load_settings(root).root.files(IDENTITY_VAULT)
    assert vault
    for path in vault:
        path.unlink()
    with pytest.raises(PersonsWithoutIdentity, match=r"^municipality 1515: .* \d+ not in the identity vault "
                       r".*id\.synthetic_not_allowed.*KTT_ALLOW_SYNTHETIC_IDS=1") as failure:
        backfill(root, D(2021, 3, 1), D(2021, 3, 31))
    assert failure.value.kommune == "1515" and failure.value.not_in_vault and not failure.value.not_in_ledger
    assert all(key.startswith("p") and not key.isdigit() for key in failure.value.not_in_vault)  # pseudonyms


def test_second_writer_is_refused_with_a_clear_message(written):
    with writer_lock(written), pytest.raises(LedgerBusy, match="being written by another process"):
        backfill(written, D(2025, 12, 31), D(2025, 12, 31), lock_timeout=0.5)


def test_resend_every_selection_leaves_numbering_alone(written):
    before = ledger_rows(written)
    settings, keys = load_settings(written), load_keys()
    with open_ledger(written, read_only=True) as con:
        kommune, guid, person_key = con.execute(
            "SELECT kommune, guid, person_key FROM notifications WHERE seq = 10 ORDER BY kommune LIMIT 1").fetchone()
    vault = read_vault([written / "identity" / "vault.bin"], keys.vault_key)
    fid = vault.filter(pl.col("person_key") == person_key)["fid"][0]
    selections = [Selection(kommune, guid=guid), Selection(kommune, since_date=D(2025, 12, 1)),
                  Selection(kommune, since_seq=100), Selection(kommune, between_dates=(D(2019, 1, 1), D(2019, 1, 31))),
                  Selection(kommune, between_seqs=(5, 25)), Selection(kommune, person_fid=fid)]
    counts = []
    for selection in selections:
        path, count = resend(settings, keys, selection)
        assert path is not None and path.parent.parent.name == "outbox"
        assert schema_issues(path.read_bytes()) == []
        counts.append(count)
    assert counts[0] == 1 and counts[4] == 21 and all(c > 0 for c in counts)
    assert ledger_rows(written) == before


def test_changed_sources_give_exactly_the_expected_corrections(written, tmp_path):
    """Annul a service, move an end date, add a late registration: M, C and N on the next day only."""
    root = tmp_path / "data"
    shutil.copytree(written, root)
    events = pl.read_parquet(root / "timeline" / "events.parquet")
    with open_ledger(root, read_only=True) as con:
        sent_before = con.execute("SELECT count(*) FROM notifications").fetchone()[0]
    kommune = events["kommune"][0]
    mine = events.filter(pl.col("kommune") == kommune)
    ends = mine.filter(pl.col("event_type") == "TjenesteSlutt").sort("event_key")
    annulled_id = ends["reporting_id"][0]
    moved_key = ends["event_key"][1]
    annulled_keys = set(mine.filter(pl.col("reporting_id") == annulled_id)["event_key"].to_list())
    late = mine.filter(pl.col("event_type") == "TjenesteStart").row(0, named=True)
    late_row = {**late, "event_key": f"{kommune}|LATE-1|TjenesteStart", "reporting_id": "LATE-1",
                "event_date": D(2024, 6, 1), "day": D(2024, 6, 1), "content_hash": "late"}
    changed = pl.concat([
        mine.filter(~pl.col("event_key").is_in(list(annulled_keys)))
        .with_columns(pl.when(pl.col("event_key") == moved_key).then(pl.lit("moved"))
                      .otherwise(pl.col("content_hash")).alias("content_hash"),
                      pl.when(pl.col("event_key") == moved_key).then(pl.col("event_date") + pl.duration(days=3))
                      .otherwise(pl.col("event_date")).alias("event_date")),
        pl.DataFrame([late_row], schema=mine.schema),
        events.filter(pl.col("kommune") != kommune),
    ])
    changed.write_parquet(root / "timeline" / "events.parquet")
    next_day = AS_OF + dt.timedelta(days=1)
    report = backfill(root, next_day, next_day, kommuner=[kommune])
    assert report.notifications == {"N": 1, "M": 1, "C": len(annulled_keys)}
    with open_ledger(root, read_only=True) as con:
        new = con.execute("SELECT status, event_key, ref_guid IS NOT NULL FROM notifications "
                          "WHERE day = ? ORDER BY seq", [next_day]).fetchall()
        assert con.execute("SELECT count(*) FROM notifications").fetchone()[0] == sent_before + len(new)
        assert integrity_problems(con).height == 0
        assert replay_differences(con, changed.filter(pl.col("day") <= next_day)).height == 0
    assert {k for s, k, _ in new if s == "C"} == annulled_keys
    assert [k for s, k, _ in new if s == "M"] == [moved_key]
    assert [k for s, k, _ in new if s == "N"] == [late_row["event_key"]]
    assert all(has_ref for s, _, has_ref in new if s != "N")
    # and running the same day again sends nothing new
    again = backfill(root, next_day + dt.timedelta(days=1), next_day + dt.timedelta(days=1), kommuner=[kommune])
    assert again.notifications == {"N": 0, "M": 0, "C": 0}


KILLABLE = """
import dataclasses, datetime as dt, sys
from pathlib import Path
from transforms.privacy.keys import load_keys
from transforms.core.settings import load_settings
from transforms.submit.writer import SubmissionWriter
root = Path(sys.argv[1])
settings = dataclasses.replace(load_settings(root), as_of_date=dt.date(2025, 12, 31))
SubmissionWriter(settings, load_keys(), workers=int(sys.argv[2])).run(dt.date(2017, 1, 1), dt.date(2025, 12, 31))
"""


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "pool"])
def test_a_killed_backfill_rerun_equals_an_uninterrupted_one(written, tmp_path, workers):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "data"
    shutil.copytree(written, root, ignore=shutil.ignore_patterns("ledger", "submissions"))
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, str(root), str(workers)], env={**os.environ},
                               cwd=REPO)
    deadline = time.monotonic() + 120
    # kill it in the middle: after the first municipality is written, well before the last one is (at 3,000 of
    # the 6,164 files the next two municipalities could both be written between two looks, and a run was
    # killed with nothing left to do)
    first = min((written / "submissions").glob("kommune=*"))
    kill_at = sum(1 for _ in first.rglob("*.xml")) + 200
    while time.monotonic() < deadline and process.poll() is None:
        written_now = len(list((root / "submissions").rglob("*.xml")))
        done = (root / "ledger" / "ledger.duckdb").exists() and written_now > kill_at
        if done:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the backfill finished before it could be killed; make the test kill earlier"
    children = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # the pool's processes die with the writer: nothing keeps writing files behind the rerun's back
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.05)
    assert not [c for c in children if Path(f"/proc/{c}").exists()]
    assert workers == 0 or children
    submissions = root / "submissions"
    assert (submissions / RUNNING_MARKER).exists()  # the killed run's: the rerun looks for its temporaries
    planted = next(submissions.rglob("*.xml")).with_name(".left-by-the-killed-writer.xml.999.tmp")
    planted.write_bytes(b"<half")
    backfill(root)
    assert not list(submissions.rglob(".*.tmp")) and not (submissions / RUNNING_MARKER).exists()
    assert ledger_rows(root) == ledger_rows(written)
    assert tree_digest(root) == tree_digest(written)
    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0


def test_small_backfill_validates_and_replays(small_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox", "timeline"))
    prepare(root)
    report = backfill(root)
    assert report.files > 10_000 and report.municipalities == 9
    schema = load_schema(OFFICIAL)
    invalid = [f.name for f in (root / "submissions").rglob("*.xml") if schema_issues(f.read_bytes(), schema)]
    assert invalid == []
    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0
        assert replay_differences(con, pl.read_parquet(root / "timeline" / "events.parquet")).height == 0
        assert repeated_starts(con).height == 0


def test_an_invalid_message_is_not_written_and_the_run_fails_loudly(written, tmp_path):
    from transforms.submit.serializers import MessageInvalid

    root = tmp_path / "data"
    shutil.copytree(written, root)
    events = pl.read_parquet(root / "timeline" / "events.parquet")
    kommune = events["kommune"][0]
    bad = events.filter(pl.col("kommune") == kommune).row(0, named=True)
    bad = {**bad, "event_key": f"{kommune}|BAD-1|TjenesteStart", "reporting_id": "BAD-1", "service_code": "99",
           "content_hash": "bad", "day": AS_OF}
    with_bad = pl.concat([events, pl.DataFrame([bad], schema=events.schema)])
    with_bad.write_parquet(root / "timeline" / "events.parquet")
    before = ledger_rows(root)
    next_day = AS_OF + dt.timedelta(days=1)
    # events are read one municipality at a time: a file not in the table's order is refused, not half read
    with pytest.raises(ValueError, match="not sorted by municipality"):
        backfill(root, next_day, next_day, kommuner=[kommune])
    EVENTS.sorted(with_bad).write_parquet(root / "timeline" / "events.parquet")
    with pytest.raises(MessageInvalid) as failure:
        backfill(root, next_day, next_day, kommuner=[kommune])
    assert "99" in str(failure.value) and "notification" in str(failure.value).lower()
    assert not (root / "submissions" / f"kommune={kommune}" / str(next_day.year) / f"{next_day}.xml").exists()
    assert ledger_rows(root) == before
