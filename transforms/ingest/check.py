"""`ktt sources check`: read one EPJ export through its mapping, stage nothing, report what a person can act on.

Every file of the system's export folder is read exactly as ingestion reads it, into a throwaway
sink in a temporary folder; the report says per file how many records of each kind it held, per
staged column the share of records whose value passed its rule, the rules broken with counts and
examples (location and message, identifiers replaced by pseudonym tags as in the quarantine), the
source values a value map does not know, date ranges, and the persons and services found. Nothing
is written under the data root, and no key file is needed (the tags use a throwaway key).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transforms.core.config import ConfigError, EpjSystem, Municipality, load_kommuner
from transforms.core.layout import DataRoot
from transforms.core.settings import Settings
from transforms.ingest.export import FileReader
from transforms.ingest.mapping import Mapping, RecordMap, load_mapping
from transforms.ingest.quarantine import mask_identifiers
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.batch import text_column
from transforms.ingest.records import Evaluated
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import Pseudonymizer
from transforms.tables import QUARANTINE

EXAMPLES = 3


@dataclass
class ColumnStats:
    rows: int = 0
    filled: int = 0      # a value was given
    passed: int = 0      # the value passed its rule (an empty optional value passes)
    low: object = None
    high: object = None


@dataclass
class SourceReport:
    system: str
    kommune: str
    mapping: Mapping
    folder: Path
    files: list[tuple[str, dict[str, int], str | None]] = field(default_factory=list)  # file, kinds, whole-file rule
    problems: pl.DataFrame = field(default_factory=QUARANTINE.empty)  # every rejected record (masked)
    columns: dict[tuple[str, str], ColumnStats] = field(default_factory=dict)
    unmapped: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    persons: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)

    def rules(self) -> pl.DataFrame:
        return self.problems.group_by("rule_id").len().sort(["len", "rule_id"], descending=[True, False])


def find_system(settings: Settings, system_id: str) -> tuple[Municipality, EpjSystem]:
    for municipality in load_kommuner(settings.root.kommuner_toml):
        for system in municipality.epj:
            if system.system == system_id:
                return municipality, system
    raise ConfigError(f"{settings.root.kommuner_toml}: no [[kommune.epj]] has system = {system_id!r}")


class _Observer:
    def __init__(self, report: SourceReport, tag):
        self.report = report
        self.tag = tag

    def __call__(self, record: RecordMap, evaluated: Evaluated) -> None:
        report = self.report
        for column in record.columns:
            parsed = (evaluated.parsed or {}).get(column.target)
            if parsed is None:
                continue
            stats = report.columns.setdefault((record.name, column.target), ColumnStats())
            stats.rows += evaluated.rows.height
            stats.filled += int(parsed.values.is_not_null().sum())
            stats.passed += int(parsed.rule.is_null().sum())
            if parsed.values.dtype in (pl.Date, pl.Datetime("us", "UTC")) and parsed.values.is_not_null().any():
                low, high = parsed.values.min(), parsed.values.max()
                stats.low = low if stats.low is None else min(stats.low, low)
                stats.high = high if stats.high is None else max(stats.high, high)
            if column.spec.value_map is not None and column.source:
                unknown = parsed.rule.is_in(["code.unknown_value", "code.unknown_service"]).fill_null(False)
                words = evaluated.rows[text_column(column.source)].filter(unknown).drop_nulls().str.strip_chars()
                for word, n in words.filter(words != "").value_counts().iter_rows():
                    report.unmapped[(record.name, column.target)][mask_identifiers(word, self.tag)] += n
        good = evaluated.rule.is_null()
        values = evaluated.values.filter(good)
        if record.name == "persons" and "user_no" in values.columns:
            report.persons.update(values["user_no"].drop_nulls().to_list())
        if record.name == "services" and "service_id" in values.columns:
            report.services.update(values["service_id"].drop_nulls().to_list())


def check_system(settings: Settings, system_id: str) -> SourceReport:
    municipality, system = find_system(settings, system_id)
    mapping = load_mapping(system.mapping, settings.data_root)
    folder = settings.root.resolve(system.path)
    report = SourceReport(system.system, municipality.nr, mapping, folder)
    pseudonymizer = Pseudonymizer(os.urandom(32))
    ctx = ReadContext(settings.allow_synthetic_ids, system=system.system, reporting_kommune=municipality.nr)
    problems = []
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="ktt-sources-check-") as tmp:
        for path in files:
            rel = settings.root.relative(path)
            sink = FileSink(DataRoot(Path(tmp)), rel, mapping.name, {"system": "check"}, pseudonymizer, os.urandom(32))
            reader = FileReader(mapping, sink, ctx)
            reader.observer = _Observer(report, pseudonymizer.tag)
            whole = None
            try:
                for _good in reader.read(path):
                    pass
            except FileRejected as exc:
                whole = exc.rejection.rule_id
                sink.discard()
                sink.seen("file")
                sink.reject("file", exc.rejection, None, "", f"{rel}: {exc}")
            report.files.append((rel, dict(sink.records_in), whole))
            problems.append(sink.quarantined_rows())
            sink.discard()
    if problems:
        report.problems = pl.concat(problems)
    return report


def render(report: SourceReport) -> str:
    """The report as text for a terminal."""
    m = report.mapping
    out = [f"EPJ system {report.system} of kommune {report.kommune}: {report.folder}",
           f"mapping {m.name} ({m.origin}), {m.format.type}, history {m.history}", "", "files:"]
    if not report.files:
        out.append("  (the export folder holds no files)")
    for rel, kinds, whole in report.files:
        counts = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items())) or "no records"
        out.append(f"  {rel}: {counts}" + (f"  -- REJECTED WHOLE ({whole})" if whole else ""))
    out += ["", "columns (share of records whose value passed its rule; filled = a value was given):"]
    for (record, target), s in sorted(report.columns.items()):
        share = s.passed / s.rows if s.rows else 1.0
        span = f", {s.low} .. {s.high}" if s.low is not None else ""
        out.append(f"  {record + '.' + target:<34} {share:7.2%} passed, {s.filled / max(s.rows, 1):7.2%} filled{span}")
    rules = report.rules()
    out += ["", f"rules broken ({report.problems.height:,} records):" if rules.height else "rules broken: none"]
    for rule, n in rules.iter_rows():
        out.append(f"  {rule}: {n:,}")
        examples = report.problems.filter(pl.col("rule_id") == rule).head(EXAMPLES)
        for ex in examples.iter_rows(named=True):
            where = f"{ex['source_file']}" + (f":{ex['line']}" if ex["line"] is not None else "")
            out.append(f"      {where} {ex['location']}: {ex['message']}")
    out += ["", "values with no mapping:" if report.unmapped else "values with no mapping: none"]
    for (record, target), words in sorted(report.unmapped.items()):
        listed = ", ".join(f"{w!r} x{n}" for w, n in words.most_common(10))
        out.append(f"  {record}.{target}: {listed}")
    out += ["", f"persons found: {len(report.persons):,}   services found: {len(report.services):,}"]
    return "\n".join(out)
