"""Input stamps: whether a derived stage's outputs are still those its current inputs would give.

Why: the daily schedule runs `ktt backfill --from D --to D`; with no source changed, rebuilding every
timeline, the reconciliation and the events reproduces the files already written, byte for byte, for
minutes at national scale. Each of those stages is deterministic, so it records beside its outputs a
digest of everything it reads (the files by path, size and modification time; the configuration and
settings that shape it; the package's own code) together with the state of the outputs it wrote. When
the next run's digest and outputs are the same, the stage keeps its outputs instead of building them
again. A changed source, setting, override, code or a touched output means a rebuild.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from transforms.core.atomic import write_text
from transforms.core.settings import Settings

PACKAGE = Path(__file__).resolve().parents[1]  # transforms/


def file_lines(root: Path, paths: Iterable[Path]) -> list[str]:
    """Path (relative to the data root `root`: a root copied with its times keeps its stamps), size and
    modification time of each file ('-' for one that does not exist)."""
    lines = []
    prefix = f"{root}/"
    for path in sorted(paths):
        text = str(path)
        name = text.removeprefix(prefix)  # on strings: pathlib's relative_to took half the time of 27,000 lines
        try:
            stat = os.stat(text)
            lines.append(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}")
        except FileNotFoundError:
            lines.append(f"{name}\t-")
    return lines


@functools.cache
def code_digest() -> str:
    """The package's code and bundled reference data: an upgrade rebuilds what it may change."""
    digest = hashlib.sha256()
    for path in sorted(p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in {".py", ".csv", ".toml", ".json"}
                       and "__pycache__" not in p.parts):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def settings_digest(settings: Settings) -> str:
    """The effective settings (the data root aside) and the configuration files that shape derived outputs
    (all of `config/` but the delivery's, which shapes none)."""
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k != "data_root"}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    config = settings.root.config
    for path in sorted(p for p in config.rglob("*") if p.is_file()) if config.is_dir() else []:
        if path != settings.root.delivery_toml:
            digest.update(path.relative_to(config).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Stamp:
    """The stamp of one stage of the data root `root`: `path` (beside its outputs) holds the inputs' digest,
    the outputs' state and the figures the stage reported, so a kept build can report them again."""

    root: Path
    path: Path
    outputs: tuple[Path, ...]

    def inputs_digest(self, settings: Settings | None, files: Iterable[Path], *extra: object) -> str:
        """The digest of the code, the settings (None: a stage no setting shapes), `extra` and `files`."""
        digest = hashlib.sha256()
        shaped = settings_digest(settings) if settings is not None else "-"
        for part in (code_digest(), shaped, *map(str, extra), *file_lines(self.root, files)):
            digest.update(part.encode() + b"\n")
        return digest.hexdigest()

    def kept(self, digest: str) -> dict | None:
        """The recorded figures when the outputs are still those of inputs with this digest, else None."""
        recorded = self._recorded()
        return recorded.get("figures", {}) if recorded is not None and recorded.get("inputs") == digest else None

    def recorded_figures(self) -> dict | None:
        """The recorded figures when the outputs are still those the stamp recorded, whatever their inputs were:
        what a stage that rebuilds only part of its outputs starts from (None: no stamp, or outputs touched)."""
        recorded = self._recorded()
        return recorded.get("figures", {}) if recorded is not None else None

    def _recorded(self) -> dict | None:
        """The stamp's record when the outputs are still in the state it recorded."""
        try:
            recorded = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return recorded if recorded.get("outputs") == file_lines(self.root, self.outputs) else None

    def record(self, digest: str, figures: dict | None = None) -> None:
        """After the outputs were written: what they were built from, and their state now."""
        write_text(self.path, json.dumps({"inputs": digest, "outputs": file_lines(self.root, self.outputs),
                                          "figures": figures or {}}, indent=1))

    def forget(self) -> None:
        """Before the outputs are rewritten: a build killed half-way must not be taken for a kept one."""
        self.path.unlink(missing_ok=True)
