"""Yearly IPLOS extracts (layouts 3.6 and 3.7) -> staged rows, column-wise and streaming.

`iplos_fast` (xml2arrow) or, where it cannot vouch for the result, `iplos_collect` (lxml `iterparse`)
gathers a batch of persons with their records into columns,
`iplos_rules` judges the batch column by column, and this module hands the outcome to the sink and
counts what was read. The layouts are declarative (`iplos_layouts`), so the real 3.7 schema can be
plugged in as data.

A large file is read in batches of persons, so memory is bounded by the batch. Most files are small
(the median extract is a few hundred kB), and judging a batch costs about a hundred Polars passes
whatever its size, so small files are read whole and judged together (`read_small_iplos_files`): the
rows of each still go to that file's own sink, with the same outcome as had it been judged alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_collect import (
    PERSONS_PER_BATCH,
    Collected,
    Header,
    combine,
    iter_batches,
    root_layout,
)
from transforms.ingest.readers.iplos_fast import fast_batches
from transforms.ingest.readers.iplos_layouts import XmlLayout
from transforms.ingest.readers.iplos_rules import BatchJudge, ExtractFile, Judged
from transforms.ingest.sink import FileSink, prepared_rows

KIND_OF_TABLE = {"iplos_persons": "person", "iplos_services": "service", "iplos_stops": "stop",
                 "iplos_assessments": "assessment", "iplos_diagnoses": "diagnosis"}
SMALL_FILE_BYTES = 1 << 20  # read whole and judged with other small files


def _check_header(header: Header, ctx: ReadContext) -> None:
    if ctx.year is not None and header.year != ctx.year:
        raise FileRejected("file.misfiled", f"header data year {header.year} but filed under {ctx.year}")
    if ctx.unit is not None and header.unit != ctx.unit:
        raise FileRejected("file.misfiled", f"header kommunenummer {header.unit} but filed under {ctx.unit}")


def _count_read(batch: Collected, judged: Judged) -> pl.DataFrame:
    """Records read per file (f, kind, n): every person; below a staged person the records read from it,
    below a quarantined person every record element of its subtree (each is quarantined with its own line)."""
    good = judged.good_persons.implode()
    services = batch.services.filter(pl.col("p").is_in(good))
    stops = batch.stops.filter(pl.col("s").is_in(services["s"].implode()))
    below_bad = judged.rejected.filter(pl.col("rule_id") == "id.parent_quarantined")
    counted = [below_bad.group_by("f", "kind").len()]
    for kind, frame in (("person", batch.persons), ("service", services), ("stop", stops),
                        ("assessment", batch.assessments.filter(pl.col("p").is_in(good))),
                        ("diagnosis", batch.diagnoses.filter(pl.col("p").is_in(good)))):
        counted.append(frame.group_by("f").len().select("f", pl.lit(kind).alias("kind"), "len"))
    return pl.concat(counted)


def _by_file(frame: pl.DataFrame, files: int) -> Iterator[tuple[int, pl.DataFrame]]:
    if files == 1:
        yield 0, frame
        return
    for (f,), part in frame.partition_by("f", as_dict=True).items():
        yield f, part


def _hand_over(sinks: list[FileSink], batch: Collected, judged: Judged) -> None:
    """A judged batch to its files' sinks: counts, staged rows, quarantined records, identities."""
    for f, kind, n in _count_read(batch, judged).iter_rows():
        sinks[f].seen(kind, n)
    position = {sink.rel_path: f for f, sink in enumerate(sinks)}
    together = len(sinks) > 1  # several files' rows made ready for their parts at once, then split
    for table, frame in judged.staged.items():
        if not frame.height:
            continue
        if together:
            frame = prepared_rows(table, frame, sinks[0].pseudonymizer)
            parts = [(rel, part) for (rel,), part in frame.partition_by("source_file", as_dict=True).items()]
        else:
            parts = [(sinks[0].rel_path, frame)]
        for rel, part in parts:
            f = position[rel]
            records = judged.assessments_staged.get(f) if table == "iplos_assessments" else None
            sinks[f].stage_frame(table, KIND_OF_TABLE[table], part, records, prepared=together)
    for f, part in _by_file(judged.rejected, len(sinks)):
        sinks[f].reject_frame(part)
    for f, part in _by_file(judged.identities, len(sinks)):
        sinks[f].register_identities(part)


def batches(path: Path, layout: XmlLayout, header: Header, on_first: Callable[[], None],
            persons_per_batch: int = PERSONS_PER_BATCH) -> Iterator[Collected]:
    """The file's batches: collected by `xml2arrow` where `iplos_fast` can vouch for the result, else by lxml."""
    fast = fast_batches(path, layout, header, on_first, persons_per_batch)
    if fast is not None:
        return iter(fast)
    return iter_batches(path, layout, header, on_first, persons_per_batch)


def read_iplos_file(path: Path, sink: FileSink, ctx: ReadContext) -> None:
    """Stage one yearly extract, batch by batch. Whole-file problems raise `FileRejected`."""
    layout = root_layout(path)
    header = Header()
    judge = BatchJudge(layout, ctx.allow_synthetic_ids, sink.pseudonymizer)
    files = [ExtractFile(sink.rel_path, header)]
    for batch in batches(path, layout, header, lambda: _check_header(header, ctx)):
        batch = combine([batch])
        _hand_over([sink], batch, judge.judge(batch, files))


@dataclass
class _Held:
    """A small file read whole, its elements still in its tree until its batch is judged."""

    sink: FileSink
    layout: XmlLayout
    header: Header
    batch: Collected | None
    rest: Iterator[Collected]  # resumed once judged: frees the tree


def _fits(batch: Collected, sink: FileSink) -> bool:
    """One batch of persons and less than one staged part of each table: judged with others, its rows
    are the same, in the same parts, as when read alone."""
    return batch.persons.height <= PERSONS_PER_BATCH and all(
        frame.height < sink.batch_rows for frame in (batch.persons, batch.services, batch.stops, batch.scores,
                                                     batch.diagnoses))


def read_small_iplos_files(files: list[tuple[Path, FileSink, ReadContext]]) -> list[Exception | None]:
    """Stage small yearly extracts, their batches judged together per layout. Per file: the exception that
    rejects it whole (`FileRejected`, `OSError`; its sink untouched beyond what `discard` forgets), or None."""
    outcomes: list[Exception | None] = [None] * len(files)
    held: list[_Held] = []
    for i, (path, sink, ctx) in enumerate(files):
        try:
            layout = root_layout(path)
            header = Header()
            read = batches(path, layout, header, lambda h=header, c=ctx: _check_header(h, c),
                           persons_per_batch=PERSONS_PER_BATCH + 1)
            batch = next(read, None)
            if batch is not None and not _fits(batch, sink):
                for _ in read:
                    pass
                read_iplos_file(path, sink, ctx)
                continue
            held.append(_Held(sink, layout, header, batch, read))
        except (FileRejected, OSError) as exc:
            outcomes[i] = exc
    for version in sorted({h.layout.version for h in held}):
        group = [h for h in held if h.layout.version == version and h.batch is not None]
        if group:
            judge = BatchJudge(group[0].layout, files[0][2].allow_synthetic_ids, group[0].sink.pseudonymizer)
            batch = combine([h.batch for h in group])
            _hand_over([h.sink for h in group], batch,
                       judge.judge(batch, [ExtractFile(h.sink.rel_path, h.header) for h in group]))
    for h in held:
        h.batch = None
        for _ in h.rest:
            pass
    return outcomes
