"""The planted services only the extracts list (`truth/extract_only.parquet`), and editing them in the exports."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl

FIRST_RUN_TO = dt.date(2025, 6, 30)
NEXT_DAY = FIRST_RUN_TO + dt.timedelta(days=1)


def copy_ingested(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "timeline", "ledger", "submissions", "outbox", ".dagster", "warehouse.duckdb", "reports"))
    return target


def extract_only(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "truth" / "extract_only.parquet")


def _encoding(path: Path) -> str:
    return "cp1252" if path.suffix == ".csv" else "utf-8"


def _about(line: str, service_id: str) -> bool:
    """A line of an export about the service: CSV, JSONL, or a snapshot dump's decision or pause element."""
    return (f";{service_id};" in line or f'"{service_id}"' in line or f'id="{service_id}"' in line
            or f'tjeneste="{service_id}"' in line)


def export_lines(root: Path, service_id: str) -> list[tuple[Path, str]]:
    """Every line of an EPJ export (CSV, JSONL or XML dump) that is about the service."""
    found = []
    for path in sorted((root / "raw" / "epj").rglob("*")):
        if path.suffix not in (".csv", ".jsonl", ".xml"):
            continue
        for line in path.read_bytes().decode(_encoding(path)).splitlines(keepends=True):
            if _about(line, service_id):
                found.append((path, line))
    return found


def remove_lines(root: Path, service_id: str, keep=lambda line: False) -> int:
    """Remove the service's lines from the exports (except those `keep` accepts); returns lines removed."""
    removed = 0
    for path in sorted({p for p, _ in export_lines(root, service_id)}):
        lines = path.read_bytes().decode(_encoding(path)).splitlines(keepends=True)
        kept = [line for line in lines if not _about(line, service_id) or keep(line)]
        removed += len(lines) - len(kept)
        path.write_bytes("".join(kept).encode(_encoding(path)))
    return removed


def keep_in_later_dumps(root: Path, service_id: str) -> int:
    """A snapshot series annuls a service by leaving it out of the dumps after the annulment: put it (its
    decision, its pauses and its client) back into each of them, as the EPJ held it before. Returns the
    number of dumps changed."""
    dumps = sorted({p for p, line in export_lines(root, service_id)
                    if p.suffix == ".xml" and f'<Tjeneste id="{service_id}"' in line})
    if not dumps:
        return 0
    last = dumps[-1]
    later = sorted(p for p in last.parent.glob("*.xml") if p.name > last.name)
    held = last.read_text(encoding="utf-8").splitlines(keepends=True)
    mine = [line for line in held if _about(line, service_id)]
    client = next(line.split('klient="')[1].split('"')[0] for line in mine if f'id="{service_id}"' in line)
    client_line = next(line for line in held if f'<Klient nr="{client}"' in line)
    for path in later:
        text = path.read_text(encoding="utf-8")
        if f'<Klient nr="{client}"' not in text:
            text = text.replace("  </Klienter>", client_line + "  </Klienter>", 1)
        decisions = "".join(line for line in mine if "<Tjeneste " in line)
        pauses = "".join(line for line in mine if "<Pause " in line and line not in text)  # pauses may stay
        text = text.replace("  </Vedtak>", decisions + "  </Vedtak>", 1).replace(
            "  </Opphold>", pauses + "  </Opphold>", 1)
        path.write_text(text, encoding="utf-8")
    return len(later)


def sent_before_annulment(demo_root: Path, target: Path, key_file: Path) -> Path:
    """The demo with the annulled services' annulment taken out of the exports (as the EPJ was before it
    annulled them), written to FIRST_RUN_TO for the municipalities that hold them."""
    from pipelines.run import Runner
    from transforms.core.settings import load_settings
    from transforms.ingest.staging import ingest_epj
    from transforms.privacy.keys import load_keys

    root = copy_ingested(demo_root, target)
    annulled = extract_only(root).filter(pl.col("kind") == "annulled_in_epj").unique("service_id")
    for service_id in annulled["service_id"]:
        # an audit trail holds the annulment as one line; a snapshot series by leaving the service out
        undone = remove_lines(root, service_id, keep=lambda line: "ANNULLERT" not in line
                              and "CANCELLED" not in line) or keep_in_later_dumps(root, service_id)
        assert undone >= 1, service_id
    runner = Runner(root, key_file)
    ingest_epj(load_settings(root), load_keys(key_file))
    runner.timeline()
    runner.events()
    runner.submissions(dt.date(2017, 1, 1), FIRST_RUN_TO, annulled_kommuner(root))
    return root


def annulled_kommuner(root: Path) -> list[str]:
    return sorted(set(extract_only(root).filter(pl.col("kind") == "annulled_in_epj")["reporting_kommune"]))


def restore_exports(demo_root: Path, root: Path) -> None:
    """The generated exports again (the annulment back in)."""
    for path in sorted((demo_root / "raw" / "epj").rglob("*")):
        if path.is_file():
            shutil.copyfile(path, root / path.relative_to(demo_root))
