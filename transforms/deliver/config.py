"""`config/delivery.toml`: which transport carries the messages and with which credentials (delivery.md).

Everything is checked before anything is sent, and each problem stops delivery with one line naming
the file and the setting: a missing or mistyped setting, a key file that is unreadable, readable by
others than its owner or kept inside the data root (a copied data root must not carry the client's
secrets), an expired certificate, a certificate that does not belong to its key. Secrets are loaded
here and held in memory only; nothing in this module prints them.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc.jwk import RSAKey

from transforms.core.config import ConfigError
from transforms.core.layout import DataRoot

TRANSPORTS = ("none", "kneik-api", "directory")
# the content encryption of the CMS envelope: cryptography's PKCS7EnvelopeBuilder offers AES-CBC only
CONTENT_ENCRYPTION = {"aes-256-cbc": algorithms.AES256, "aes-128-cbc": algorithms.AES128}
ASSERTION_ALGORITHMS = ("PS256", "RS256")


@dataclass(frozen=True)
class PayloadSettings:
    """What makes the signed and encrypted payload: the sender's certificate and key, the registry's."""

    signing_certificate: x509.Certificate
    signing_key: rsa.RSAPrivateKey
    recipient_certificate: x509.Certificate
    to_her_id: int
    content_encryption: str


@dataclass(frozen=True)
class ApiSettings:
    url: str
    authority: str
    client_id: str
    scope: str
    jwk: RSAKey
    algorithm: str
    dpop: bool
    ca_bundle: Path | None
    timeout_s: float


@dataclass(frozen=True)
class DirectorySettings:
    outgoing: Path
    incoming: Path
    receipt_wait_s: float


@dataclass(frozen=True)
class DeliveryConfig:
    path: Path
    transport: str
    payload: PayloadSettings | None = None
    api: ApiSettings | None = None
    directory: DirectorySettings | None = None
    max_attempts: int = 6
    parallel_municipalities: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class _Section:
    """One table of the file, with typed getters whose errors name the file and the setting."""

    def __init__(self, path: Path, name: str, values: dict[str, Any], data_root: Path):
        self.path, self.name, self.values, self.data_root = path, name, values, data_root

    def where(self, key: str) -> str:
        return f"{self.path}: [{self.name}] {key}" if self.name else f"{self.path}: {key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., check=None, hint: str = "") -> Any:
        if key not in self.values or (self.values[key] == "" and default is not ...):
            if default is ...:
                raise ConfigError(f"{self.where(key)} is missing{f' ({hint})' if hint else ''}")
            return default
        value = self.values[key]
        if isinstance(kind, tuple) and float in kind and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
                kind if isinstance(kind, tuple) else (kind,))):
            raise ConfigError(f"{self.where(key)} = {value!r} has the wrong type{f' ({hint})' if hint else ''}")
        if check is not None and not check(value):
            raise ConfigError(f"{self.where(key)} = {value!r} is not allowed{f' ({hint})' if hint else ''}")
        return value

    def url(self, key: str) -> str:
        value = self.get(key, str, hint="an https:// URL")
        if not value.startswith("https://"):
            raise ConfigError(f"{self.where(key)} = {value!r} must be an https:// URL (TLS is always verified)")
        return value.rstrip("/")

    def file(self, key: str, secret: bool = False) -> Path:
        path = Path(self.get(key, str, hint="a file path")).expanduser()
        where = self.where(key)
        try:
            info = path.stat()
        except OSError as exc:
            raise ConfigError(f"{where}: {path} cannot be read ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: {path} is not a file")
        if secret:
            if info.st_mode & 0o077:
                raise ConfigError(f"{where}: {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                                  f"chmod 600 it")
            if path.resolve().is_relative_to(self.data_root.resolve()):
                raise ConfigError(f"{where}: {path} is inside the data root; keep secrets outside it")
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: {path} cannot be read ({exc.strerror})") from None
        return path


def _certificate(section: _Section, key: str, now: dt.datetime) -> x509.Certificate:
    path = section.file(key)
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise ConfigError(f"{section.where(key)}: {path} is not a PEM certificate") from None
    if cert.not_valid_after_utc < now:
        raise ConfigError(f"{section.where(key)}: certificate {path} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise ConfigError(f"{section.where(key)}: certificate {path} is not valid before "
                          f"{cert.not_valid_before_utc:%Y-%m-%d}")
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise ConfigError(f"{section.where(key)}: certificate {path} must hold an RSA key (CMS key transport)")
    return cert


def _private_key(section: _Section, key: str) -> rsa.RSAPrivateKey:
    path = section.file(key, secret=True)
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{section.where(key)}: {path} is not an unencrypted PEM private key") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigError(f"{section.where(key)}: {path} must be an RSA private key")
    return private


def _jwk(section: _Section, key: str) -> RSAKey:
    path = section.file(key, secret=True)
    try:
        jwk = RSAKey.import_key(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"{section.where(key)}: {path} is not an RSA JWK (JSON)") from None
    if not jwk.is_private:
        raise ConfigError(f"{section.where(key)}: {path} holds a public key; the client needs its private JWK")
    if not jwk.kid:
        raise ConfigError(f"{section.where(key)}: {path} has no \"kid\" (the key id HelseID knows it by)")
    return jwk


def _payload(section: _Section, now: dt.datetime) -> PayloadSettings:
    cert = _certificate(section, "signing_certificate", now)
    key = _private_key(section, "signing_key")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise ConfigError(f"{section.where('signing_certificate')}: the certificate does not match the key in "
                          f"{section.values['signing_key']} (signing_key)")
    return PayloadSettings(
        signing_certificate=cert, signing_key=key,
        recipient_certificate=_certificate(section, "recipient_certificate", now),
        to_her_id=section.get("to_her_id", int, check=lambda v: v > 0, hint="the registry's HER-id"),
        content_encryption=section.get("content_encryption", str, "aes-256-cbc", check=CONTENT_ENCRYPTION.__contains__,
                                       hint=" or ".join(CONTENT_ENCRYPTION)),
    )


def load_delivery_config(data_root: Path, now: dt.datetime | None = None) -> DeliveryConfig:
    """The checked configuration; no file means transport "none" (messages are written, not sent)."""
    root = DataRoot(Path(data_root))
    path = root.delivery_toml
    if not path.exists():
        return DeliveryConfig(path=path, transport="none")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    now = now or dt.datetime.now(dt.UTC)
    top = _Section(path, "", data, root.path)
    transport = top.get("transport", str, "none", check=TRANSPORTS.__contains__, hint=" / ".join(TRANSPORTS))
    if transport == "none":
        return DeliveryConfig(path=path, transport="none")
    api_values = data.get("kneik-api", {})
    section = _Section(path, transport, data.get(transport, {}), root.path)
    if transport not in data or not isinstance(data[transport], dict):
        raise ConfigError(f"{path}: [{transport}] is missing (transport = {transport!r})")
    limits = _Section(path, transport, {**api_values, **section.values}, root.path)
    # the payload settings belong to [kneik-api]; the directory route may set its own or share them
    payload_section = section if transport == "directory" and "signing_certificate" in section.values else \
        _Section(path, "kneik-api", api_values, root.path)
    payload = _payload(payload_section, now)
    api = directory = None
    if transport == "kneik-api":
        api = ApiSettings(
            url=section.url("url"), authority=section.url("authority"),
            client_id=section.get("client_id", str, check=bool), scope=section.get("scope", str, check=bool),
            jwk=_jwk(section, "jwk_file"),
            algorithm=section.get("algorithm", str, "PS256", check=ASSERTION_ALGORITHMS.__contains__,
                                  hint=" or ".join(ASSERTION_ALGORITHMS)),
            dpop=section.get("dpop", bool, True),
            ca_bundle=section.file("ca_bundle") if section.values.get("ca_bundle") else None,
            timeout_s=section.get("timeout_s", (int, float), 30.0, check=lambda v: v > 0),
        )
    else:
        directory = DirectorySettings(
            outgoing=Path(section.get("outgoing", str, check=bool)).expanduser(),
            incoming=Path(section.get("incoming", str, check=bool)).expanduser(),
            receipt_wait_s=section.get("receipt_wait_s", (int, float), 30.0, check=lambda v: v >= 0),
        )
        for key, folder in (("outgoing", directory.outgoing), ("incoming", directory.incoming)):
            if not folder.is_dir():
                raise ConfigError(f"{section.where(key)}: {folder} is not a folder")
    return DeliveryConfig(
        path=path, transport=transport, payload=payload, api=api, directory=directory,
        max_attempts=limits.get("max_attempts", int, 6, check=lambda v: 1 <= v <= 100),
        parallel_municipalities=limits.get("parallel_municipalities", int, 4, check=lambda v: 1 <= v <= 64),
        backoff_initial_s=limits.get("backoff_initial_s", (int, float), 0.5, check=lambda v: v >= 0),
        backoff_max_s=limits.get("backoff_max_s", (int, float), 30.0, check=lambda v: v >= 0),
    )


def her_ids(municipalities: list, kommuner_toml: Path) -> dict[str, int]:
    """Each reporting municipality's HER-id (FromHerId); one missing stops delivery naming the entry."""
    missing = [m.nr for m in municipalities if m.her_id is None]
    if missing:
        raise ConfigError(f"{kommuner_toml}: [[kommune]] nr = \"{missing[0]}\" has no her_id (its HER-id in the "
                          f"address register, the FromHerId of its messages)")
    return {m.nr: m.her_id for m in municipalities}
