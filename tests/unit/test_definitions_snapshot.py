"""A snapshot of the Dagster definitions, so that a change to the graph is a visible diff in review.

`pipelines.definitions.defs` is rendered to sorted, plain text (assets with their group, kinds,
partitions, backfill policy, pool, dependencies, tables and columns; asset checks; jobs; schedules;
sensors; pools; resources) and compared with the committed `tests/fixtures/definitions.txt`. An edge
that appears or disappears, an asset that leaves its pool, a schedule that is no longer on by default:
each is a line of the diff. After a deliberate change, rewrite the file (`make snapshots`, or
KTT_UPDATE_SNAPSHOTS=1 with any pytest run that includes this test) and commit it with the change.
"""

from __future__ import annotations

import difflib
import os
from collections import defaultdict
from collections.abc import Iterable

import dagster as dg

from pipelines.definitions import defs
from tests.conftest import FIXTURES

SNAPSHOT = FIXTURES / "definitions.txt"
UPDATE_VARIABLE = "KTT_UPDATE_SNAPSHOTS"
HEADER = """\
# The Dagster definitions (pipelines.definitions.defs), rendered by tests/unit/test_definitions_snapshot.py.
# Do not edit by hand: after a deliberate change to the graph run `make snapshots` and commit this file.
"""


def _key(key: dg.AssetKey) -> str:
    return key.to_user_string()


def _keys(keys: Iterable[dg.AssetKey]) -> list[str]:
    return sorted(_key(k) for k in keys)


def _listing(label: str, items: Iterable[str], indent: str) -> list[str]:
    """One item per line: a change to a long list is then a one-line diff."""
    items = list(items)
    return [f"{indent}{label}: {'none' if not items else ''}".rstrip()] + [f"{indent}  {i}" for i in items]


def _partitions(partitions: dg.PartitionsDefinition | None) -> str:
    if partitions is None:
        return "none"
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        end = f" to {partitions.end:%Y-%m-%d}" if partitions.end else ""
        return (f"{type(partitions).__name__} from {partitions.start:%Y-%m-%d}{end}, cron '{partitions.cron_schedule}'"
                f", {partitions.timezone}, end offset {partitions.end_offset}")
    if isinstance(partitions, dg.StaticPartitionsDefinition):
        return f"StaticPartitionsDefinition {', '.join(partitions.get_partition_keys())}"
    return f"{type(partitions).__name__} {partitions}"


def _backfill_policy(policy: dg.BackfillPolicy | None) -> str:
    if policy is None:
        return "none"
    if policy.max_partitions_per_run is None:
        return "single run"
    return f"multiple runs of at most {policy.max_partitions_per_run} partitions"


def _asset_lines(graph) -> list[str]:
    lines = ["assets"]
    for key in sorted(graph.get_all_asset_keys(), key=_key):
        node = graph.get(key)
        columns = node.metadata.get("dagster/column_schema")
        tables = sorted((name.removeprefix("table/"), value.value) for name, value in node.metadata.items()
                        if name.startswith("table/"))
        lines += [
            f"  {_key(key)}",
            f"    group: {node.group_name}",
            f"    kinds: {', '.join(sorted(node.kinds)) or 'none'}",
            f"    partitions: {_partitions(node.partitions_def)}",
            f"    backfill policy: {_backfill_policy(node.backfill_policy)}",
            f"    pool: {', '.join(sorted(node.pools or ())) or 'none'}",
            f"    executable: {node.is_executable}",
        ]
        condition = node.automation_condition
        if condition is not None:
            lines.append(f"    automation condition: {condition.get_label() or condition}")
        lines += _listing("deps", _keys(node.parent_keys), "    ")
        lines += _listing("tables", (f"{name} -> {path}" for name, path in tables), "    ")
        lines += _listing("columns", (c.name for c in columns.columns) if columns else (), "    ")
    return lines


def _check_lines(graph) -> list[str]:
    checks = sorted(graph.asset_check_keys, key=lambda k: (_key(k.asset_key), k.name))
    return ["asset checks"] + [f"  {_key(k.asset_key)}: {k.name} (blocking: {graph.get(k).blocking})"
                               for k in checks]


def _job_lines(repository) -> list[str]:
    lines = ["jobs"]
    for job in sorted(repository.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit job of all assets
            continue
        selected = job.asset_layer.selected_asset_keys
        checks = sorted(f"{_key(k.asset_key)}: {k.name}" for k in job.asset_layer.asset_graph.asset_check_keys
                        if k.asset_key in selected)
        lines += [f"  {job.name}", f"    partitions: {_partitions(job.partitions_def)}"]
        lines += _listing("assets", _keys(selected), "    ")
        lines += _listing("checks", checks, "    ")
    return lines


def _schedule_lines(repository) -> list[str]:
    return ["schedules"] + [
        f"  {s.name}: cron '{s.cron_schedule}' ({s.execution_timezone or 'UTC'}), job {s.job_name}, "
        f"default {s.default_status.value}"
        for s in sorted(repository.schedule_defs, key=lambda s: s.name)]


def _sensor_lines(repository) -> list[str]:
    return ["sensors"] + [
        f"  {s.name}: jobs {', '.join(sorted(t.job_name for t in s.targets))}, every {s.minimum_interval_seconds} s, "
        f"default {s.default_status.value}"
        for s in sorted(repository.sensor_defs, key=lambda s: s.name)]


def _pool_lines(graph) -> list[str]:
    members: dict[str, list[str]] = defaultdict(list)
    for key in graph.get_all_asset_keys():
        for pool in graph.get(key).pools or ():
            members[pool].append(_key(key))
    lines = ["pools"]
    for pool in sorted(members):
        lines += _listing(pool, sorted(members[pool]), "  ")
    return lines


def render_definitions(definitions: dg.Definitions) -> str:
    """The definitions as stable, sorted text (column order is the table's declared order)."""
    repository = definitions.get_repository_def()
    graph = repository.asset_graph
    sections = [_asset_lines(graph), _check_lines(graph), _job_lines(repository), _schedule_lines(repository),
                _sensor_lines(repository), _pool_lines(graph),
                ["resources"] + [f"  {name}: {type(resource).__name__}"
                                 for name, resource in sorted((definitions.resources or {}).items())]]
    return HEADER + "\n" + "\n\n".join("\n".join(section) for section in sections) + "\n"


def test_definitions_match_the_committed_snapshot():
    rendered = render_definitions(defs)
    if os.environ.get(UPDATE_VARIABLE) == "1":
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if rendered != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(keepends=True), rendered.splitlines(keepends=True),
                                            f"{SNAPSHOT.relative_to(FIXTURES.parents[1])} (committed)",
                                            "pipelines.definitions.defs (now)"))
        raise AssertionError(f"The Dagster definitions differ from the committed snapshot:\n{diff}\n"
                             f"If the change is intended, rewrite the snapshot with `make snapshots` "
                             f"({UPDATE_VARIABLE}=1) and commit {SNAPSHOT.name} with it.")


def test_the_rendering_shows_what_a_reviewer_must_see():
    """The snapshot is only worth its diff if it carries each property; a small graph shows they are there."""
    pool_member = dg.AssetSpec("staged", group_name="ingestion", kinds={"parquet"},
                               partitions_def=dg.StaticPartitionsDefinition(["2017", "2018"]),
                               metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn("b"),
                                                                                           dg.TableColumn("a")]),
                                         "table/staged": dg.MetadataValue.text("staging/staged")})

    @dg.multi_asset(specs=[pool_member], pool="p_staging", backfill_policy=dg.BackfillPolicy.single_run())
    def staged():
        ...

    @dg.asset(deps=[staged], pool="p_daily", partitions_def=dg.DailyPartitionsDefinition("2017-01-01"))
    def daily():
        ...

    @dg.asset_check(asset=daily, blocking=True)
    def chained():
        ...

    job = dg.define_asset_job("both", selection=[staged])
    text = render_definitions(dg.Definitions(
        assets=[staged, daily], asset_checks=[chained], jobs=[job],
        schedules=[dg.ScheduleDefinition(name="morning", job=job, cron_schedule="0 6 * * *")],
        sensors=[dg.SensorDefinition(name="watch", job=job, evaluation_fn=lambda _: None, minimum_interval_seconds=60,
                                     default_status=dg.DefaultSensorStatus.RUNNING)]))
    for expected in ["  daily\n    group: default\n", "    partitions: StaticPartitionsDefinition 2017, 2018\n",
                     "    backfill policy: single run\n", "    pool: p_staging\n", "    deps:\n      staged\n",
                     "    tables:\n      staged -> staging/staged\n", "    columns:\n      b\n      a\n",
                     "DailyPartitionsDefinition from 2017-01-01, cron '0 0 * * *', UTC, end offset 0",
                     "  daily: chained (blocking: True)\n", "  both\n", "    assets:\n      staged\n",
                     "  morning: cron '0 6 * * *' (UTC), job both, default STOPPED\n",
                     "  watch: jobs both, every 60 s, default RUNNING\n", "  p_daily:\n    daily\n"]:
        assert expected in text, expected
    assert render_definitions(defs) == render_definitions(defs)
