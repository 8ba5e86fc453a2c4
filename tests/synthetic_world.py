"""Reading a generated synthetic world in the generator's tests (`test_synthetic_files`, `_world`)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import polars as pl
from lxml import etree

NS = "{urn:no:iplos:aarsmelding:3.7}"
RULES = {
    "id.check_digits",
    "id.parent_quarantined",
    "period.end_before_start",
    "code.unknown_service",
    "hours.out_of_range",
    "record.duplicate",
    "date.unparseable",
    "file.unparseable",
    "file.encoding_mismatch",
}


def truth(root: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(root / "truth" / f"{name}.parquet")


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def corrupted_files(root: Path) -> set[str]:
    return set(truth(root, "corruptions").filter(pl.col("line").is_null())["source_file"])


def xml_files(root: Path) -> list[Path]:
    return sorted((root / "raw" / "iplos").rglob("*.xml"))


def parse_xml(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), etree.XMLParser(huge_tree=True))


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="cp1252"), newline=""), delimiter=";"))


def read_jsonl(folder: Path) -> list[dict]:
    return [
        json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text("utf-8").splitlines()
    ]


def physical_line(root: Path, relative: str, line: int) -> str:
    data = (root / relative).read_bytes()
    encoding = "cp1252" if relative.endswith(".csv") else "utf-8"
    if relative.endswith(".xml"):
        encoding = "utf-8" if b'encoding="UTF-8"' in data[:60] else "iso-8859-1"
    return data.decode(encoding).split("\n")[line - 1].rstrip("\r")


def bad_numbers(root: Path) -> set[str]:
    """The identifiers the corpus planted on purpose (id.check_digits lines)."""
    rows = truth(root, "corruptions").filter(pl.col("rule_id") == "id.check_digits")
    found = set()
    for rel, line in rows.select("source_file", "line").iter_rows():
        text = physical_line(root, rel, line)
        if text.strip() == "<Person>":  # layout 3.6 has the person's fields on the next line
            text = physical_line(root, rel, line + 1)
        found |= set(re.findall(r"(?<!\d)\d{11}(?!\d)", text))
    return found


def desynthesise(number: str) -> str:
    return number[:2] + f"{int(number[2:4]) - 80:02d}" + number[4:]
