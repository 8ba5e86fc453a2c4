"""Delivery to the sandbox registry: the demo world delivered whole, a rejection that stops one municipality."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pytest

from assets.delivery import kpr_delivery
from assets.resources import KttResource
from tests.delivery_support import (
    assert_exactly_once_in_order,
    copy_written,
    delivery_state,
    ktt,
    ledger_notifications,
    sandbox,
    sandbox_notifications,
    setup_sandbox,
    write_faults,
)
from transforms.sandbox.registry import accepted_messages


def test_the_demo_world_delivered_whole_replays_to_the_ledger(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    setup_sandbox(root, tmp_path)
    with sandbox(root):
        result = ktt("deliver", "--data-root", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    # every notification of every municipality, in ledger order, exactly once
    assert sandbox_notifications(root) == ledger_notifications(root)
    assert_exactly_once_in_order(root)
    assert {s for *_, s, _, _ in delivery_state(root)} == {"accepted"}
    status = ktt("delivery", "status", "--data-root", str(root))
    assert status.returncode == 0, status.stdout
    assert "2025-12-" in status.stdout and "rejected" in status.stdout
    # a second run finds nothing to send and sends nothing
    messages = len(accepted_messages(root / "sandbox"))
    with sandbox(root):
        again = ktt("deliver", "--data-root", str(root))
    assert again.returncode == 0 and len(accepted_messages(root / "sandbox")) == messages


@pytest.mark.parametrize(("client", "registry"), [
    ({"dpop": False}, {}),                                  # a Bearer token (a HelseID client without DPoP)
    ({}, {"api_dpop_nonce": "true"}),                       # the API asks for its own DPoP nonce
], ids=["bearer", "api-nonce"])
def test_a_month_delivered_with_a_bearer_token_or_an_api_nonce(written_demo, tmp_path, client, registry):
    root = copy_written(written_demo, tmp_path)
    files = setup_sandbox(root, tmp_path, **client)
    text = files.settings.read_text()
    for key, value in registry.items():
        text = text.replace(f"{key} = false", f"{key} = {value}")
    files.settings.write_text(text)
    with sandbox(root):
        result = ktt("deliver", "--data-root", str(root), "--to", "2017-01-31")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_exactly_once_in_order(root)
    january = sorted(root.glob("submissions/kommune=*/2017/2017-01-*.xml"))
    assert january and len(accepted_messages(root / "sandbox")) == len(january)
    assert "rejected" not in {s for *_, s, _, _ in delivery_state(root)}


def _messages(root, kommune: str, n: int) -> list[tuple[dt.date, int]]:
    """(day, last sequence number) of a municipality's first `n` messages."""
    with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
        return con.execute("SELECT day, last_seq FROM written_days WHERE kommune = ? AND file IS NOT NULL "
                           "ORDER BY day LIMIT ?", [kommune, n]).fetchall()


def _materialize(root, last: dt.date, retry: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [kpr_delivery], resources={"ktt": KttResource(data_root=str(root))}, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": "2017-01-01", "dagster/asset_partition_range_end": str(last)},
        run_config={"ops": {"kpr_delivery": {"config": {"retry_rejected": retry}}}})


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_a_rejected_message_stops_its_municipality_until_retried(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    setup_sandbox(root, tmp_path)
    last = dt.date(2017, 2, 28)
    first_two, (refused, _) = _messages(root, "3301", 3)[:2], _messages(root, "3301", 3)[2]
    write_faults(root, reject=[["3301", str(refused)]])
    with sandbox(root):
        result = ktt("deliver", "--data-root", str(root), "--to", str(last))
        assert result.returncode == 1, result.stdout + result.stderr
        held = assert_exactly_once_in_order(root)
        # 3301 stops after its message of the refused day; the others deliver everything up to `last`
        assert held["3301"] == first_two[-1][1]
        state = {(k, s) for k, _, _, s, _, _ in delivery_state(root)}
        assert ("3301", "rejected") in state
        with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
            waiting = con.execute("SELECT kommune, min(day) FROM delivery_state WHERE state <> 'accepted' "
                                  "AND kind = 'stream' GROUP BY kommune ORDER BY kommune").fetchall()
        assert dict(waiting)["3301"] == refused
        assert all(day > last for k, day in waiting if k != "3301")

        status = ktt("delivery", "status", "--data-root", str(root))
        assert status.returncode == 1
        assert "sandbox.rejected" in status.stdout and str(refused) in status.stdout
        assert "--retry-rejected" in status.stdout

        # the asset's blocking checks fail on it
        run = _materialize(root, last)
        assert _checks(run) == {"nothing_rejected": False, "range_accepted": False}

        # fixed on the registry's side: a plain run still holds 3301, --retry-rejected completes it
        write_faults(root)
        before = len(accepted_messages(root / "sandbox"))
        plain = ktt("deliver", "--data-root", str(root), "--to", str(last))
        assert plain.returncode == 1 and len(accepted_messages(root / "sandbox")) == before
        retried = ktt("deliver", "--data-root", str(root), "--kommune", "3301", "--to", str(last),
                      "--retry-rejected")
        assert retried.returncode == 0, retried.stdout + retried.stderr
        run = _materialize(root, last)
        assert _checks(run) == {"nothing_rejected": True, "range_accepted": True}
    assert_exactly_once_in_order(root)
    with duckdb.connect(str(root / "ledger" / "ledger.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM delivery_state WHERE state <> 'accepted' AND day <= ?",
                           [last]).fetchone()[0] == 0


@pytest.mark.parametrize("transport", ["none"])
def test_the_asset_without_a_transport_sends_nothing_and_passes_with_a_note(written_demo, tmp_path, transport):
    root = copy_written(written_demo, tmp_path)
    run = _materialize(root, dt.date(2017, 1, 31))
    assert run.success and _checks(run) == {"nothing_rejected": True, "range_accepted": True}
    meta = run.asset_materializations_for_node("kpr_delivery")[0].metadata
    assert meta["transport"].value == "none"


@pytest.mark.slow
def test_the_small_world_delivered_whole_replays_to_the_ledger(small_root, tmp_path):
    import shutil

    from tests.integration.test_submissions import backfill, prepare

    root = tmp_path / "data"
    shutil.copytree(small_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox"))
    prepare(root)
    backfill(root)
    setup_sandbox(root, tmp_path)
    with sandbox(root):
        result = ktt("deliver", "--data-root", str(root), timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox_notifications(root) == ledger_notifications(root)
    assert_exactly_once_in_order(root)
