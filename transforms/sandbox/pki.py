"""`ktt sandbox init`: the sandbox's test PKI, the client's secrets and a matching `config/delivery.toml`.

The sandbox's own CA issues its TLS certificate (127.0.0.1 and localhost), the registry's
encryption certificate and the sender's enterprise certificate. The registry's side (its keys,
the client's public JWK, the address register) lives under `<data root>/sandbox/`; the client's
secrets (its private JWK and the enterprise key) go outside the data root, mode 0600, as the
delivery configuration demands of real secrets. An existing PKI is kept (the sandbox's accepted
messages and the ledger's delivery state stay meaningful); only the port is rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tomllib
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import RSAKey

from transforms.core.atomic import write_text
from transforms.core.config import load_kommuner
from transforms.core.layout import DataRoot

CLIENT_ID = "ktt-backfill-sandbox-client"
SCOPE = "hdir:kneik/iplos/submit"
REGISTRY_HER_ID = 8139520
VALID_DAYS = 825


@dataclass(frozen=True)
class SandboxFiles:
    """Where `ktt sandbox init` puts things."""

    folder: Path  # <data root>/sandbox
    secrets: Path  # outside the data root

    @property
    def settings(self) -> Path:
        return self.folder / "sandbox.toml"

    @property
    def port(self) -> int:
        return int(sandbox_settings(self)["port"])

    def __getattr__(self, name: str) -> Path:
        names = {"ca": "ca.pem", "tls_cert": "tls.pem", "tls_key": "tls.key", "registry_cert": "registry.pem",
                 "registry_key": "registry.key", "client_public_jwk": "client.public.jwk.json",
                 "sender_cert": "sender.pem", "faults": "faults.json", "database": "registry.sqlite"}
        if name in names:
            return self.folder / names[name]
        secret = {"client_jwk": "client.jwk.json", "signing_key": "enterprise.key", "signing_cert": "enterprise.pem"}
        if name in secret:
            return self.secrets / secret[name]
        raise AttributeError(name)


def default_secrets_dir(data_root: Path) -> Path:
    from platformdirs import user_config_dir

    slug = str(Path(data_root).resolve()).strip("/").replace("/", "_")
    return Path(user_config_dir("ktt-backfill")) / "sandbox" / slug


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue(subject: str, key: rsa.RSAPrivateKey, ca: x509.Certificate | None, ca_key: rsa.RSAPrivateKey,
          server: bool = False, is_ca: bool = False, days: int = VALID_DAYS,
          not_before: dt.datetime | None = None) -> x509.Certificate:
    """A certificate for `key` signed by `ca_key` (self-signed when `ca` is None)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ktt-backfill sandbox (test only)")])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject if ca else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),
                                        critical=False)
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    if server:
        builder = (builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(ca_key, hashes.SHA256())


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_pki(files: SandboxFiles) -> None:
    files.folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = issue("ktt sandbox test CA", ca_key, None, ca_key, is_ca=True, days=3650)
    tls_key, registry_key, sender_key = _key(), _key(), _key()
    files.ca.write_bytes(_pem(ca))
    files.tls_cert.write_bytes(_pem(issue("127.0.0.1", tls_key, ca, ca_key, server=True)))
    _write_secret(files.tls_key, _pem_key(tls_key))
    files.registry_cert.write_bytes(_pem(issue("KPR registry (sandbox)", registry_key, ca, ca_key)))
    _write_secret(files.registry_key, _pem_key(registry_key))
    sender = issue("Virksomhet (sandbox sender)", sender_key, ca, ca_key)
    files.sender_cert.write_bytes(_pem(sender))
    _write_secret(files.signing_key, _pem_key(sender_key))
    files.signing_cert.write_bytes(_pem(sender))
    jwk = RSAKey.generate_key(2048, private=True, auto_kid=True)
    _write_secret(files.client_jwk, json.dumps(jwk.as_dict(private=True)).encode())
    files.client_public_jwk.write_text(json.dumps(jwk.as_dict(private=False)), encoding="utf-8")


def sandbox_settings(files: SandboxFiles) -> dict:
    return tomllib.loads(files.settings.read_text(encoding="utf-8")) if files.settings.exists() else {}


def init_sandbox(data_root: Path, port: int | None = None, secrets: Path | None = None,
                 renew: bool = False, timeout_s: float = 10.0, parallel: int = 4) -> SandboxFiles:
    """Write (or keep) the sandbox's PKI and settings and a `config/delivery.toml` that points at it."""
    root = DataRoot(Path(data_root).resolve())
    previous = SandboxFiles(root.sandbox, Path(".")) if root.sandbox.exists() else None
    old = sandbox_settings(previous) if previous else {}
    files = SandboxFiles(root.sandbox, Path(secrets or old.get("client_secrets") or default_secrets_dir(root.path)))
    if renew or not (files.ca.exists() and files.client_jwk.exists() and files.signing_key.exists()):
        _write_pki(files)
    port = port or old.get("port") or free_port()
    register = {str(m.her_id): m.nr for m in load_kommuner(root.kommuner_toml) if m.her_id is not None}
    write_text(files.settings, "\n".join([
        "# The sandbox registry (`ktt sandbox`), written by `ktt sandbox init`; test use only.",
        f"port = {port}",
        f'client_id = "{CLIENT_ID}"',
        f'scope = "{SCOPE}"',
        f"to_her_id = {REGISTRY_HER_ID}",
        "token_lifetime_s = 300",
        f'client_secrets = "{files.secrets}"',
        "# token requests without a DPoP proof get a Bearer token (a client with dpop = false)",
        f"bearer_tokens = {'true' if old.get('bearer_tokens', True) else 'false'}",
        "# the message API asks for its own DPoP nonce, as HelseID's token endpoint always does",
        f"api_dpop_nonce = {'true' if old.get('api_dpop_nonce', False) else 'false'}",
        "",
        "# the address register: HER-id -> kommunenummer of the senders it accepts",
        "[register]",
        *[f'{her} = "{nr}"' for her, nr in sorted(register.items())],
        "",
    ]))
    write_text(root.delivery_toml, "\n".join([
        "# Written by `ktt sandbox init`: delivery to the local sandbox registry. For a real test environment",
        "# replace url, authority, client_id, the key files, the registry's certificate and to_her_id (README).",
        'transport = "kneik-api"',
        "",
        "[kneik-api]",
        f'url = "https://127.0.0.1:{port}/api"',
        f'authority = "https://127.0.0.1:{port}/helseid"',
        f'client_id = "{CLIENT_ID}"',
        f'scope = "{SCOPE}"',
        f'jwk_file = "{files.client_jwk}"',
        'algorithm = "PS256"',
        "dpop = true",
        f'signing_certificate = "{files.signing_cert}"',
        f'signing_key = "{files.signing_key}"',
        f'recipient_certificate = "{files.registry_cert}"',
        f"to_her_id = {REGISTRY_HER_ID}",
        'content_encryption = "aes-256-cbc"',
        f'ca_bundle = "{files.ca}"',
        f"timeout_s = {timeout_s}",
        "max_attempts = 6",
        f"parallel_municipalities = {parallel}",
        "",
    ]))
    return files
