"""The directory route, resent messages from outbox/, the ledger shared with a writer during delivery,
and the sensor that retries what is pending."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import dagster as dg

from assets.resources import KttResource
from pipelines.sensors import pending_deliveries_sensor
from tests.delivery_support import (
    KTT,
    accepted_count,
    assert_exactly_once_in_order,
    copy_written,
    delivery_state,
    ktt,
    sandbox,
    setup_sandbox,
    write_faults,
)
from transforms.core.atomic import write_text
from transforms.sandbox.registry import Registry
from transforms.submit.ledger import open_ledger, writer_lock


class Gateway(threading.Thread):
    """A messaging gateway stand-in: hands each outgoing envelope to the sandbox's checks, writes the receipt."""

    def __init__(self, registry: Registry, outgoing: Path, incoming: Path):
        super().__init__(daemon=True)
        self.registry, self.outgoing, self.incoming = registry, outgoing, incoming
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            for envelope in sorted(self.outgoing.glob("*.json")):
                reply = self.registry.message(envelope.read_bytes())
                write_text(self.incoming / f"{envelope.stem}.receipt.json",
                           json.dumps({"status": reply.status, **reply.body}))
                envelope.unlink()


def _directory_root(written_demo, tmp_path) -> tuple[Path, Path, Path]:
    root = copy_written(written_demo, tmp_path)
    setup_sandbox(root, tmp_path)
    outgoing, incoming = tmp_path / "gateway" / "out", tmp_path / "gateway" / "in"
    outgoing.mkdir(parents=True)
    incoming.mkdir(parents=True)
    toml = root / "config" / "delivery.toml"
    toml.write_text(toml.read_text().replace('transport = "kneik-api"', 'transport = "directory"')
                    + f'\n[directory]\noutgoing = "{outgoing}"\nincoming = "{incoming}"\nreceipt_wait_s = 5\n')
    return root, outgoing, incoming


def test_the_directory_route_and_resent_messages_from_the_outbox(written_demo, tmp_path):
    root, outgoing, incoming = _directory_root(written_demo, tmp_path)
    gateway = Gateway(Registry(root / "sandbox"), outgoing, incoming)
    gateway.start()
    try:
        result = ktt("deliver", "--data-root", str(root), "--to", "2017-01-31")
        assert result.returncode == 0, result.stdout + result.stderr
        assert_exactly_once_in_order(root)
        assert {row[3] for row in delivery_state(root) if row[1] <= 5} == {"accepted"}
        # a resend of notifications 1-3 goes out once from the outbox and is acknowledged as a resend
        assert ktt("resend", "--data-root", str(root), "--kommune", "3301", "--between-seqs", "1", "3"
                   ).returncode == 0
        sent = ktt("deliver", "--data-root", str(root), "--outbox")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        again = ktt("deliver", "--data-root", str(root), "--outbox")
        assert again.returncode == 0
    finally:
        gateway.stop.set()
        gateway.join()
    resends = gateway.registry.db.execute("SELECT kommune, first_seq, last_seq FROM resends").fetchall()
    assert resends == [("3301", 1, 3)]
    with open_ledger(root, read_only=True) as con:
        assert con.execute("SELECT state FROM delivery_state WHERE kind = 'resend'").fetchall() == [("accepted",)]
    assert not list(outgoing.iterdir())


def test_a_waiting_writer_gets_the_ledger_while_delivery_runs(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    setup_sandbox(root, tmp_path)
    write_faults(root, slow_rate=1.0, slow_s=0.2)  # every answer takes a while: a delivery of some seconds
    with sandbox(root):
        process = subprocess.Popen([KTT, "deliver", "--data-root", str(root), "--to", "2017-01-31"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        deadline = time.monotonic() + 60
        while accepted_count(root) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        with writer_lock(root, timeout=10), open_ledger(root) as con:  # the database itself is free, too
            running = process.poll() is None
            con.execute("SELECT count(*) FROM deliveries").fetchone()
            time.sleep(0.5)  # delivery waits meanwhile, and loses nothing
        assert running, "delivery ended before the writer asked; slow the sandbox down"
        assert process.wait(120) == 0
    assert_exactly_once_in_order(root)


def test_the_sensor_requests_a_run_for_pending_messages(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    resources = {"ktt": KttResource(data_root=str(root))}
    with dg.instance_for_test() as instance:
        skipped = pending_deliveries_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(skipped, dg.SkipReason) and "transport none" in skipped.skip_message
        setup_sandbox(root, tmp_path)
        request = pending_deliveries_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == "2017-01-01"
    assert request.tags["dagster/asset_partition_range_end"].startswith("2025-12-")
    assert request.run_config["ops"]["kpr_delivery"]["config"]["kommuner"] == ["1515", "3301", "5001"]


def test_a_client_the_token_endpoint_refuses_stops_every_municipality_with_one_line(written_demo, tmp_path):
    from joserfc.jwk import RSAKey

    root = copy_written(written_demo, tmp_path)
    files = setup_sandbox(root, tmp_path)
    stranger = RSAKey.generate_key(2048, private=True, auto_kid=True)  # the registry knows another key
    files.client_public_jwk.write_text(json.dumps(stranger.as_dict(private=False)))
    with sandbox(root):
        result = ktt("deliver", "--data-root", str(root), "--to", "2017-01-31")
    assert result.returncode == 2
    assert "refused client" in result.stdout and "invalid_client" in result.stdout
    assert accepted_count(root) == 0
    assert {row[3] for row in delivery_state(root)} == {"pending"}


def test_tls_is_verified_a_registry_outside_the_trusted_cas_gets_nothing(written_demo, tmp_path):
    root = copy_written(written_demo, tmp_path)
    setup_sandbox(root, tmp_path, ca_bundle="", max_attempts=2, backoff_initial_s=0.01)  # the system's CAs only
    with sandbox(root):
        result = ktt("deliver", "--data-root", str(root), "--to", "2017-01-31")
    assert result.returncode == 1 and accepted_count(root) == 0
    assert {row[3] for row in delivery_state(root)} == {"pending"}
    with open_ledger(root, read_only=True) as con:
        codes = {c for (c,) in con.execute("SELECT DISTINCT code FROM deliveries WHERE event = 'failed'").fetchall()}
    assert codes == {"token-unavailable"}
