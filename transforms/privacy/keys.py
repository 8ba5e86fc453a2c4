"""The key file: the pseudonymisation key and the vault key, kept outside the data root.

Keys are configuration, never code and never data: a data root copied to an
analyst's laptop must not carry the means to re-identify anyone.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_config_dir

KEY_FILE_ENV = "KTT_KEY_FILE"


class MissingKeyError(RuntimeError):
    """No key file: the message says how to create one."""


def default_key_file() -> Path:
    env = os.environ.get(KEY_FILE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(user_config_dir("ktt-backfill")) / "keys.json"


@dataclass(frozen=True)
class Keys:
    pseudonym_key: bytes
    vault_key: bytes


def init_key_file(path: Path | None = None) -> tuple[Path, bool]:
    """Create a key file with fresh random keys; never overwrite one.

    Returns the path and whether it was created. The file is written with mode
    0600 from the start (O_EXCL), so there is no window where others can read it.
    """
    path = Path(path or default_key_file())
    if path.exists():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = {
        "pseudonym_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "vault_key": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    return path, True


def load_keys(path: Path | None = None) -> Keys:
    path = Path(path or default_key_file())
    if not path.exists():
        raise MissingKeyError(
            f"no key file at {path}. Create one with `ktt keys init` "
            f"(or set {KEY_FILE_ENV} to the path of an existing key file)."
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        return Keys(
            pseudonym_key=base64.b64decode(data["pseudonym_key"]),
            vault_key=base64.b64decode(data["vault_key"]),
        )
    except (KeyError, ValueError) as exc:
        raise MissingKeyError(f"key file {path} is malformed ({exc}); restore it from backup") from exc
