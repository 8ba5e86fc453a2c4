"""Yearly IPLOS extracts (layouts 3.6 and 3.7) -> staged rows, column-wise and streaming.

`iplos_collect` gathers a batch of persons with their records into columns (lxml `iterparse`),
`iplos_rules` judges the batch column by column, and this module hands the outcome to the sink and
counts what was read. The layouts are declarative (`iplos_layouts`), so the real 3.7 schema can be
plugged in as data.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_collect import Collected, Header, iter_batches, root_layout
from transforms.ingest.readers.iplos_rules import BatchJudge, Judged
from transforms.ingest.sink import FileSink

KIND_OF_TABLE = {"iplos_persons": "person", "iplos_services": "service", "iplos_stops": "stop",
                 "iplos_assessments": "assessment", "iplos_diagnoses": "diagnosis"}


def _check_header(header: Header, ctx: ReadContext) -> None:
    if ctx.year is not None and header.year != ctx.year:
        raise FileRejected("file.misfiled", f"header data year {header.year} but filed under {ctx.year}")
    if ctx.unit is not None and header.unit != ctx.unit:
        raise FileRejected("file.misfiled", f"header kommunenummer {header.unit} but filed under {ctx.unit}")


def _count_read(sink: FileSink, batch: Collected, judged: Judged) -> None:
    """Records read: every person; below a staged person the records read from it, below a quarantined
    person every record element of its subtree (each is quarantined with its own line)."""
    sink.seen("person", batch.persons.height)
    below_bad = judged.rejected.filter(pl.col("rule_id") == "id.parent_quarantined")
    for kind, n in below_bad["kind"].value_counts().iter_rows():
        sink.seen(kind, n)
    good = judged.good_persons.implode()
    services = batch.services.filter(pl.col("p").is_in(good))
    sink.seen("service", services.height)
    sink.seen("stop", batch.stops.filter(pl.col("s").is_in(services["s"].implode())).height)
    sink.seen("assessment", batch.assessments.filter(pl.col("p").is_in(good)).height)
    sink.seen("diagnosis", batch.diagnoses.filter(pl.col("p").is_in(good)).height)


def read_iplos_file(path: Path, sink: FileSink, ctx: ReadContext) -> None:
    """Stage one yearly extract. Whole-file problems raise `FileRejected`."""
    layout = root_layout(path)
    header = Header()
    judge = BatchJudge(layout, header, sink.rel_path, ctx.allow_synthetic_ids, sink.pseudonymizer)
    for batch in iter_batches(path, layout, header, lambda: _check_header(header, ctx)):
        judged = judge.judge(batch)
        _count_read(sink, batch, judged)
        for table, frame in judged.staged.items():
            if frame.height:
                records = judged.assessments_staged if table == "iplos_assessments" else None
                sink.stage_frame(table, KIND_OF_TABLE[table], frame, records)
        sink.reject_frame(judged.rejected)
        sink.register_identities(judged.identities)
