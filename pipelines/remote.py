"""`ktt backfill --via-daemon`: the same backfill, submitted to a running webserver's GraphQL API.

For headless use (a cron job, a remote shell): the backfill daemon of `ktt ui` runs it, so it
queues behind other runs for the ledger pool and shows in the UI like one launched there.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      runs { runId status }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsInProgress
            numPartitionsMaterialized numPartitionsFailed
          }
          ... on UnpartitionedAssetStatus { assetKey { path } inProgress materialized failed }
        }
      }
    }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""

FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}


class RemoteError(RuntimeError):
    """The webserver refused or failed the request; the message says what it answered."""


def graphql(url: str, query: str, variables: dict, timeout: float = 60.0) -> dict:
    request = urllib.request.Request(f"{url.rstrip('/')}/graphql",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.URLError as exc:
        raise RemoteError(f"no Dagster webserver answers at {url} ({exc.reason}); start one with `ktt ui`") from exc
    if body.get("errors"):
        raise RemoteError(f"{url} rejected the request: {body['errors'][0].get('message')}")
    return body["data"]


def backfill_targets(defs: dg.Definitions, first: dt.date, last: dt.date) -> list[dict]:
    """Every asset of the graph, as `ktt backfill` runs it: days in [first, last], all data years."""
    graph = defs.resolve_asset_graph()
    targets = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        selector: dict = {"assetKey": {"path": list(key.path)}}
        if isinstance(node.partitions_def, dg.TimeWindowPartitionsDefinition):
            selector["partitions"] = {"range": {"start": first.isoformat(), "end": last.isoformat()}}
        targets.append(selector)
    return targets


def launch_backfill(url: str, targets: list[dict], title: str, kommuner: Sequence[str] = ()) -> str:
    params: dict = {"partitionsByAssets": targets, "title": title,
                    "tags": [{"key": "ktt/launched_by", "value": "ktt backfill --via-daemon"}]}
    if kommuner:
        params["runConfigData"] = {"ops": {"daily_submissions": {"config": {"kommuner": list(kommuner)}}}}
    result = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RemoteError(f"backfill not launched: {result['__typename']}: {result.get('message', '')}")
    return result["backfillId"]


@dataclass(frozen=True)
class BackfillProgress:
    status: str
    done: int
    total: int
    failed_runs: tuple[str, ...]
    error: str | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED and not self.failed_runs


def backfill_progress(url: str, backfill_id: str) -> BackfillProgress:
    data = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if data["__typename"] != "PartitionBackfill":
        raise RemoteError(f"backfill {backfill_id}: {data.get('message', data['__typename'])}")
    done = total = 0
    for status in (data.get("assetBackfillData") or {}).get("assetBackfillStatuses", []):
        if status["__typename"] == "AssetPartitionsStatusCounts":
            total += status["numPartitionsTargeted"]
            done += status["numPartitionsMaterialized"]
        else:
            total += 1
            done += int(status["materialized"])
    failed = tuple(run["runId"] for run in data.get("runs") or [] if run["status"] in ("FAILURE", "CANCELED"))
    return BackfillProgress(status=data["status"], done=done, total=total, failed_runs=failed,
                            error=(data.get("error") or {}).get("message"))


def follow_backfill(url: str, backfill_id: str, on_progress: Callable[[BackfillProgress], None],
                    poll_seconds: float = 2.0, timeout: float | None = None) -> BackfillProgress:
    """Poll until the backfill finishes; `on_progress` sees every poll."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        progress = backfill_progress(url, backfill_id)
        on_progress(progress)
        if progress.finished:
            return progress
        if deadline is not None and time.monotonic() > deadline:
            raise RemoteError(f"backfill {backfill_id} still {progress.status} after {timeout:.0f} s")
        time.sleep(poll_seconds)
