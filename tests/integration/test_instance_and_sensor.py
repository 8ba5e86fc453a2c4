"""Instance templates, pools, and the sensor on raw/."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.pools import ALL_POOLS, LEDGER_POOL, WAREHOUSE_POOL
from assets.resources import KttResource
from pipelines.definitions import defs
from pipelines.sensors import raw_files_sensor
from pipelines.ui import UiError, instance_template, port_is_free, prepare_instance
from tests.conftest import REPO
from transforms.core.settings import load_settings
from transforms.ingest import fingerprints as sources


def _instance_settings(template: str) -> dict:
    config = yaml.safe_load(template)
    config.pop("storage", None)
    return config


def test_sqlite_template_loads_as_a_dagster_instance(tmp_path):
    prepared = prepare_instance(tmp_path / "home", "sqlite")
    assert prepared.created and not prepared.differs_from_template
    instance = dg.DagsterInstance.from_config(str(prepared.home))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1
        assert pools.pool_granularity.value == "run"
        assert instance.run_retries_enabled is False
        assert instance.telemetry_enabled is False
    finally:
        instance.dispose()


def test_postgres_template_is_the_sqlite_one_plus_postgres_storage():
    sqlite, postgres = instance_template("sqlite"), instance_template("postgres")
    assert _instance_settings(sqlite) == _instance_settings(postgres)
    assert yaml.safe_load(postgres)["storage"] == {"postgres": {"postgres_url": {"env": "KTT_DAGSTER_PG_URL"}}}


def test_postgres_instance_needs_its_connection(tmp_path, monkeypatch):
    monkeypatch.delenv("KTT_DAGSTER_PG_URL", raising=False)
    with pytest.raises(UiError, match="KTT_DAGSTER_PG_URL"):
        prepare_instance(tmp_path / "home", "postgres")


def test_an_edited_instance_config_is_never_overwritten(tmp_path):
    home = tmp_path / "home"
    prepare_instance(home)
    edited = instance_template("sqlite").replace("max_concurrent_runs: 3", "max_concurrent_runs: 1")
    (home / "dagster.yaml").write_text(edited)
    again = prepare_instance(home)
    assert not again.created and again.differs_from_template
    assert (home / "dagster.yaml").read_text() == edited


def test_every_asset_that_writes_the_data_root_is_in_a_pool():
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    assert all(p and p <= set(ALL_POOLS) for p in pools.values()), pools
    assert pools["daily_submissions"] == {LEDGER_POOL}
    assert pools["warehouse"] == {WAREHOUSE_POOL}


def test_port_check_sees_a_listening_socket():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free("127.0.0.1", sock.getsockname()[1])


@pytest.fixture
def raw_copy(demo_root, tmp_path) -> Path:
    """The ingested demo root, copied so that its raw files can be changed."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("timeline", "ledger", "submissions"))
    return root


def _tick(root: Path):
    context = dg.build_sensor_context(resources={"ktt": KttResource(data_root=str(root))})
    return raw_files_sensor(context)


def test_sensor_is_quiet_when_raw_holds_what_was_staged(raw_copy):
    assert isinstance(_tick(raw_copy), dg.SkipReason)
    assert raw_files_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(sources.staged_fingerprints(load_settings(raw_copy))) == set(sources.group_files(
        load_settings(raw_copy)))


def test_sensor_requests_the_year_of_a_changed_extract_and_the_epj_exports(raw_copy):
    extract = sorted((raw_copy / "raw" / "iplos" / "2019").iterdir())[0]
    extract.write_bytes(extract.read_bytes() + b"\n")
    epj_folder = next(p for p in (raw_copy / "raw" / "epj").iterdir() if p.is_dir())
    shutil.copy(next(p for p in epj_folder.iterdir() if p.is_file()), epj_folder / "late-delivery.jsonl")
    requests = _tick(raw_copy)
    by_job = {(r.job_name, r.partition_key) for r in requests}
    assert by_job == {("ingest_yearly_extracts", "2019"), ("ingest_epj_exports", None)}
    assert len({r.run_key for r in requests}) == 2
    assert [r.run_key for r in _tick(raw_copy)] == [r.run_key for r in requests]  # same state, same keys


def test_sensor_notices_a_removed_extract_and_forgets_after_ingestion(raw_copy, key_file):
    from pipelines.run import Runner

    victim = sorted((raw_copy / "raw" / "iplos" / "2021").iterdir())[0]
    victim.unlink()
    requests = _tick(raw_copy)
    assert [(r.job_name, r.partition_key) for r in requests] == [("ingest_yearly_extracts", "2021")]
    Runner(raw_copy, key_file).ingest([2021])
    assert isinstance(_tick(raw_copy), dg.SkipReason)


def test_sensor_and_jobs_are_in_the_code_location():
    assert defs.resolve_sensor_def("raw_files_sensor") is raw_files_sensor
    job = defs.resolve_job_def("ingest_epj_exports")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {"epj_service_versions",
                                                                                     "identity_vault"}


def test_kubernetes_files_parse_and_match_the_code():
    deploy = REPO / "deploy" / "kubernetes"
    values = yaml.safe_load((deploy / "values.yaml").read_text())
    groups = values["dagster-user-deployments"]["deployments"]
    roots = {g["name"]: next(e["value"] for e in g["env"] if e["name"] == "KTT_DATA_ROOT") for g in groups}
    assert roots == {name: f"/data/groups/{name}" for name in roots} and len(roots) >= 2
    assert all(g["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"] for g in groups)
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": "dagster/code_location", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    cron = yaml.safe_load((deploy / "publish-cronjob.yaml").read_text())
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(secret in arg for arg in args for secret in ("identity", "ledger", "submissions"))
    copied = [line.split()[1] for line in (deploy / "Dockerfile").read_text().splitlines() if line.startswith("COPY")]
    assert {"pipelines", "assets", "transforms"} <= set(copied)
