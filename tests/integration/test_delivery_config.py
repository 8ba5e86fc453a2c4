"""config/delivery.toml: each wrong setting stops delivery with one line naming the file and the setting."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.delivery_support import setup_sandbox
from transforms.core.config import ConfigError, load_kommuner
from transforms.deliver.config import her_ids, load_delivery_config
from transforms.sandbox.pki import issue

KOMMUNER = """
[[kommune]]
nr = "3301"
navn = "Drammen"
her_id = 90003301

[[kommune]]
nr = "1515"
navn = "Herøy"
"""


@pytest.fixture(scope="module")
def configured(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("delivery-config")
    root = base / "data"
    (root / "config").mkdir(parents=True)
    (root / "config" / "kommuner.toml").write_text(KOMMUNER)
    setup_sandbox(root, base)
    return root


def _edit(root: Path, old: str, new: str) -> None:
    toml = root / "config" / "delivery.toml"
    text = toml.read_text()
    assert re.search(old, text, flags=re.M), old
    toml.write_text(re.sub(old, new, text, flags=re.M))


@pytest.fixture()
def root(configured, tmp_path) -> Path:
    """A fresh copy of the sandbox's delivery.toml over the module's PKI."""
    copy = tmp_path / "data"
    (copy / "config").mkdir(parents=True)
    for name in ("kommuner.toml", "delivery.toml"):
        (copy / "config" / name).write_text((configured / "config" / name).read_text())
    return copy


def _error(root: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_delivery_config(root)
    message = str(caught.value)
    assert "\n" not in message and str(root / "config" / "delivery.toml") in message
    return message


def test_the_sandbox_configuration_is_valid(root):
    config = load_delivery_config(root)
    assert config.transport == "kneik-api" and config.api.dpop and config.payload.content_encryption == "aes-256-cbc"


def test_no_file_means_transport_none(tmp_path):
    assert load_delivery_config(tmp_path).transport == "none"


def test_a_missing_setting_is_named(root):
    _edit(root, r"^client_id = .*\n", "")
    assert "[kneik-api] client_id is missing" in _error(root)


def test_a_wrong_setting_is_named(root):
    _edit(root, r"^timeout_s = .*$", 'timeout_s = "soon"')
    assert "[kneik-api] timeout_s" in _error(root) and "wrong type" in _error(root)
    _edit(root, r'^transport = .*$', 'transport = "carrier-pigeon"')
    assert "transport = 'carrier-pigeon' is not allowed" in _error(root)


def test_plain_http_is_refused(root):
    _edit(root, r"^url = \"https", 'url = "http')
    assert "[kneik-api] url" in _error(root) and "https://" in _error(root)


def test_an_unreadable_key_file_is_named(root):
    _edit(root, r'^jwk_file = ".*"$', f'jwk_file = "{root.parent / "nowhere.json"}"')
    assert "[kneik-api] jwk_file" in _error(root) and "cannot be read" in _error(root)


def test_a_world_readable_key_file_is_refused(root):
    text = (root / "config" / "delivery.toml").read_text()
    original = Path(re.search(r'^signing_key = "(.*)"$', text, flags=re.M).group(1))
    loose = root.parent / "loose.key"
    loose.write_bytes(original.read_bytes())
    loose.chmod(0o644)
    _edit(root, r'^signing_key = ".*"$', f'signing_key = "{loose}"')
    message = _error(root)
    assert "[kneik-api] signing_key" in message and "readable by others" in message and "0644" in message


def test_a_key_file_inside_the_data_root_is_refused(root):
    text = (root / "config" / "delivery.toml").read_text()
    original = Path(re.search(r'^jwk_file = "(.*)"$', text, flags=re.M).group(1))
    inside = root / "config" / "client.jwk.json"
    inside.write_bytes(original.read_bytes())
    inside.chmod(0o600)
    _edit(root, r'^jwk_file = ".*"$', f'jwk_file = "{inside}"')
    assert "inside the data root" in _error(root)


def _key_pair(tmp: Path, days: int, start: dt.datetime | None = None) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue("sender", key, None, key, days=days, not_before=start)
    cert_path, key_path = tmp / f"cert-{days}.pem", tmp / f"key-{days}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_an_expired_certificate_is_named(root):
    cert, key = _key_pair(root.parent, 1, dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    _edit(root, r'^signing_certificate = ".*"$', f'signing_certificate = "{cert}"')
    _edit(root, r'^signing_key = ".*"$', f'signing_key = "{key}"')
    message = _error(root)
    assert "[kneik-api] signing_certificate" in message and "expired on" in message


def test_a_certificate_that_does_not_match_its_key_is_named(root):
    _, other_key = _key_pair(root.parent, 30)
    _edit(root, r'^signing_key = ".*"$', f'signing_key = "{other_key}"')
    message = _error(root)
    assert "[kneik-api] signing_certificate" in message and "does not match" in message and "signing_key" in message


def test_a_municipality_without_her_id_is_named(root):
    path = root / "config" / "kommuner.toml"
    with pytest.raises(ConfigError, match=r'nr = "1515" has no her_id'):
        her_ids(load_kommuner(path), path)


def test_ktt_deliver_prints_the_one_line_and_stops(root):
    _edit(root, r"^scope = .*\n", "")
    result = subprocess.run([str(Path(sys.executable).with_name("ktt")), "deliver", "--data-root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout.count("\n") == 1 and "error:" in result.stdout
    assert "[kneik-api] scope is missing" in result.stdout
