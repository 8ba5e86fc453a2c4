"""EPJ history exports: `epj-a-csv` (three CSV files) and `epj-b-jsonl` (an event log).

Both formats write one row per registration holding the whole record after it (inputs.md
§3–4). epj-a is Windows-1252 with `;`, CRLF, Norwegian dates and decimal comma, sorted by
record and registration time; epj-b is UTF-8 JSON, one event per line in registration
order, split in yearly `events-YYYY.jsonl` files for the big systems.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from .dates import oslo_offsets
from .render_snapshots import render_snapshots
from .segments import Holdings
from .sources import FMT_A, FMT_B, FMT_C, MunicipalityPlan
from .textio import Corruption, assemble, date_no, hours_text, timestamp_no, unmarked, write_bytes

# hook(source_file, table, formatted rows) -> extra (corrupt) rows of the same shape, or None
ExtraRows = Callable[[str, str, pl.DataFrame], pl.DataFrame | None]

BRUKERE = [
    "kommunenr",
    "brukernr",
    "fnr",
    "id_type",
    "kjonn",
    "fodselsar",
    "bydel",
    "dodsdato",
    "registrert_tid",
]
TJENESTER = [
    "kommunenr",
    "brukernr",
    "tjenesteid",
    "tjenestetype",
    "vedtaksdato",
    "fra_dato",
    "til_dato",
    "utforer_orgnr",
    "timer_per_uke",
    "registrert_tid",
    "endringstype",
]
STOPP = ["kommunenr", "tjenesteid", "stoppid", "fra_dato", "til_dato", "registrert_tid", "endringstype"]


def _csv(
    root: Path,
    relative: str,
    table: str,
    fields: list[str],
    rows: pl.DataFrame,
    keys: list[str],
    extra: ExtraRows,
) -> list[Corruption]:
    rows = unmarked(rows.with_columns(pl.lit(0).alias("_tb")))
    more = extra(relative, table, rows)
    if more is not None:
        rows = pl.concat([rows, more.select(rows.columns)])
    rows = rows.with_columns(pl.concat_str([pl.col(f) for f in fields], separator=";").alias("text"))
    body, marks = assemble(rows, [*keys, "_tb"], 2, relative, sep="\r\n")
    header = ";".join(fields) + "\r\n"
    write_bytes(root, relative, (header + body).encode("cp1252"))
    return marks


def _sex(male: str = "male") -> pl.Expr:
    return pl.when(pl.col(male)).then(pl.lit(1)).otherwise(pl.lit(2))


def render_epj_a(root: Path, path: str, h: dict[str, pl.DataFrame], extra: ExtraRows) -> list[Corruption]:
    persons, versions, stops = h["persons"], h["versions"], h["stops"]
    brukere = persons.select(
        pl.col("user_no").cast(pl.Int64).alias("_user"),
        "ts",
        pl.col("unit").alias("kommunenr"),
        pl.col("user_no").alias("brukernr"),
        pl.col("nid").alias("fnr"),
        "id_type",
        _sex().cast(pl.Utf8).alias("kjonn"),
        pl.col("birth").cast(pl.Date).dt.year().cast(pl.Utf8).alias("fodselsar"),
        "bydel",
        date_no("death_v").alias("dodsdato"),
        timestamp_no("ts").alias("registrert_tid"),
    )
    tjenester = versions.select(
        "sid",
        "ts",
        pl.col("unit").alias("kommunenr"),
        pl.col("user_no").alias("brukernr"),
        pl.col("sid").alias("tjenesteid"),
        pl.col("code").cast(pl.Utf8).alias("tjenestetype"),
        date_no("decision").alias("vedtaksdato"),
        date_no("from").alias("fra_dato"),
        date_no("to").alias("til_dato"),
        pl.col("org").fill_null("").alias("utforer_orgnr"),
        hours_text("hours", comma=True).alias("timer_per_uke"),
        timestamp_no("ts").alias("registrert_tid"),
        pl.col("change_type").alias("endringstype"),
    )
    stopp = stops.select(
        "sid",
        pl.col("stop_id").str.slice(2).cast(pl.Int64).alias("_stop"),
        "ts",
        pl.col("unit").alias("kommunenr"),
        pl.col("sid").alias("tjenesteid"),
        pl.col("stop_id").alias("stoppid"),
        date_no("from").alias("fra_dato"),
        date_no("to_v").alias("til_dato"),
        timestamp_no("ts").alias("registrert_tid"),
        pl.col("change_type").alias("endringstype"),
    )
    marks = _csv(root, f"{path}/brukere.csv", "brukere", BRUKERE, brukere, ["_user", "ts"], extra)
    marks += _csv(root, f"{path}/tjenester.csv", "tjenester", TJENESTER, tjenester, ["sid", "ts"], extra)
    marks += _csv(root, f"{path}/stopp.csv", "stopp", STOPP, stopp, ["sid", "_stop", "ts"], extra)
    return marks


def _json_str(col: str | pl.Expr) -> pl.Expr:
    """A JSON string literal, or null; values are ids, codes and dates (no characters to escape)."""
    expr = pl.col(col) if isinstance(col, str) else col
    return (
        pl.when(expr.is_null() | (expr == ""))
        .then(pl.lit("null"))
        .otherwise(pl.concat_str([pl.lit('"'), expr, pl.lit('"')]))
    )


def _json_date(col: str) -> pl.Expr:
    return _json_str(pl.col(col).cast(pl.Date).dt.strftime("%Y-%m-%d"))


def _head(kind: str) -> list[pl.Expr]:
    return [
        pl.lit('"recordedAt": "'),
        pl.col("_iso"),
        pl.lit(f'", "kind": "{kind}", "municipality": "'),
        pl.col("unit"),
        pl.lit('", "clientId": "'),
        pl.col("user_no"),
        pl.lit('", '),
    ]


def _with_iso(frame: pl.DataFrame) -> pl.DataFrame:
    offsets = oslo_offsets(frame["ts"].to_numpy()) if frame.height else np.array([], dtype=str)
    return frame.with_columns(
        pl.concat_str(
            [
                pl.from_epoch(pl.col("ts"), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S"),
                pl.Series(offsets, dtype=pl.Utf8),
            ]
        ).alias("_iso")
    )


def render_epj_b(
    root: Path, path: str, h: dict[str, pl.DataFrame], split: bool, extra: ExtraRows
) -> tuple[list[Corruption], int]:
    persons = _with_iso(h["persons"])
    clients = persons.select(
        "ts",
        pl.lit(0).alias("_kind"),
        pl.col("user_no").alias("_id"),
        pl.concat_str(
            [
                *_head("client"),
                pl.lit('"client": {"nationalId": "'),
                pl.col("nid"),
                pl.lit('", "idType": "'),
                pl.col("id_type"),
                pl.lit('", "sex": '),
                _sex().cast(pl.Utf8),
                pl.lit(', "birthYear": '),
                pl.col("birth").cast(pl.Date).dt.year().cast(pl.Utf8),
                pl.lit(', "district": '),
                _json_str("bydel"),
                pl.lit(', "deathDate": '),
                _json_date("death_v"),
                pl.lit("}}"),
            ]
        ).alias("rest"),
    )
    versions = _with_iso(h["versions"])
    migrated = (
        pl.when(pl.col("mig_sid").is_not_null())
        .then(
            pl.concat_str(
                [
                    pl.lit(', "migratedFrom": {"system": "'),
                    pl.col("mig_system"),
                    pl.lit('", "serviceId": "'),
                    pl.col("mig_sid"),
                    pl.lit('"}'),
                ]
            )
        )
        .otherwise(pl.lit(""))
    )
    services = versions.select(
        "ts",
        pl.lit(1).alias("_kind"),
        pl.col("sid").alias("_id"),
        pl.concat_str(
            [
                *_head("service"),
                pl.lit('"service": {"id": "'),
                pl.col("sid"),
                pl.lit('", "code": "'),
                pl.col("code").cast(pl.Utf8),
                pl.lit('", "decisionDate": '),
                _json_date("decision"),
                pl.lit(', "from": '),
                _json_date("from"),
                pl.lit(', "to": '),
                _json_date("to"),
                pl.lit(', "providerOrg": '),
                _json_str("org"),
                pl.lit(', "weeklyHours": '),
                pl.col("hours").round(1).cast(pl.Utf8).fill_null("null"),
                pl.lit(', "status": "'),
                pl.col("status"),
                pl.lit('"}'),
                migrated,
                pl.lit("}"),
            ]
        ).alias("rest"),
    )
    stops = _with_iso(h["stops"])
    pauses = stops.select(
        "ts",
        pl.lit(2).alias("_kind"),
        pl.col("stop_id").alias("_id"),
        pl.concat_str(
            [
                *_head("pause"),
                pl.lit('"pause": {"id": "'),
                pl.col("stop_id"),
                pl.lit('", "serviceId": "'),
                pl.col("sid"),
                pl.lit('", "from": '),
                _json_date("from"),
                pl.lit(', "to": '),
                _json_date("to_v"),
                pl.lit(', "status": "ACTIVE"}}'),
            ]
        ).alias("rest"),
    )
    events = unmarked(pl.concat([clients, services, pauses]).with_columns(pl.lit(0).alias("_tb")))
    events = events.with_columns(pl.from_epoch(pl.col("ts"), time_unit="s").dt.year().alias("_year"))
    main = f"{path}/events.jsonl"
    more = extra(main, "events", events)
    if more is not None:
        events = pl.concat([events, more.select(events.columns)])
    events = events.sort(["ts", "_kind", "_id", "_tb"], maintain_order=True)
    events = events.with_columns(
        pl.concat_str(
            [
                pl.lit('{"eventId": "e-'),
                pl.int_range(1, pl.len() + 1).cast(pl.Utf8),
                pl.lit('", '),
                pl.col("rest"),
            ]
        ).alias("text"),
        pl.int_range(pl.len()).alias("_n"),
    )
    marks: list[Corruption] = []
    if not split:
        body, marks = assemble(events, ["_n"], 1, main)
        write_bytes(root, main, body.encode("utf-8"))
        return marks, 1
    files = 0
    for (year,), part in events.partition_by("_year", as_dict=True, maintain_order=True).items():
        relative = f"{path}/events-{year}.jsonl"
        body, found = assemble(part, ["_n"], 1, relative)
        # a corruption planted under the single-file name moves with its row into the yearly file
        marks += [Corruption(relative, m.line, m.record_kind, m.rule_id, m.description) for m in found]
        write_bytes(root, relative, body.encode("utf-8"))
        files += 1
    return marks, files


def render_epj(
    root: Path, plans: list[MunicipalityPlan], holdings: Holdings, extra: ExtraRows
) -> tuple[int, list[Corruption]]:
    """Write every exported system's files; returns (files written, planted corruptions)."""
    users = holdings.users
    tables = {
        "persons": holdings.person_rows.join(users, on=["system", "pid"], how="left"),
        "versions": holdings.versions.join(users, on=["system", "pid"], how="left"),
        "stops": holdings.stop_versions.join(users, on=["system", "pid"], how="left"),
    }
    parts = {
        name: frame.partition_by("system", as_dict=True, maintain_order=True)
        for name, frame in tables.items()
    }
    files, marks = 0, []
    for plan in plans:
        for system in plan.systems:
            if not system.exported:
                continue
            h = {name: part.get((system.system,), tables[name].clear()) for name, part in parts.items()}
            if system.fmt == FMT_A:
                marks += render_epj_a(root, system.path, h, extra)
                files += 3
            elif system.fmt == FMT_B:
                found, written = render_epj_b(root, system.path, h, system.split_events, extra)
                marks += found
                files += written
            elif system.fmt == FMT_C:
                found, written = render_snapshots(root, system, h, corrupt=plan.feature == "heroy")
                marks += found
                files += written
    return files, marks
