"""A third EPJ export the pipeline has no code for: "Omsorgsjournal" monthly full dumps in XML.

Each dump (`uttrekk_YYYYMMDD.xml`, the last day of every month the system is active, up to the end of
the span) holds every client, decision and pause as registered by the end of that day, with no
history inside: a decision registered by mistake and annulled is deleted, so it vanishes from the
next dump. The vendor writes its own service codes, status words, identifier kinds, sex letters,
dd/mm/yyyy dates and a decimal comma. The only thing that tells the pipeline how to read it is the
source mapping `mappings/omsorgsjournal.toml`, copied into the data root's `config/sources/`.

The last dump of the corrupted system also carries the bad-input corpus's record-level corruptions
in this format (a client with a broken fødselsnummer, four bad decisions, an exact duplicate).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from importlib import resources
from pathlib import Path

import polars as pl

from .dates import SPAN_END, day, to_date
from .ids import break_check_digits
from .sources import SystemPlan
from .textio import Corruption, assemble, hours_text, unmarked, write_bytes

MAPPING_FILE = "omsorgsjournal.toml"
MAPPING_PATH = f"config/sources/{MAPPING_FILE}"
BAD_CLIENT = "99001"


def mapping_text() -> str:
    return resources.files("transforms.synthetic.mappings").joinpath(MAPPING_FILE).read_text("utf-8")


def write_mapping(root: Path) -> None:
    write_bytes(root, MAPPING_PATH, mapping_text().encode("utf-8"))


def _vendor_codes() -> dict[int, str]:
    """Code list 9151 -> the vendor's code, from the mapping itself (one source of truth)."""
    table = tomllib.loads(mapping_text())["maps"]["tjenestekode"]
    return {int(code): word for word, code in table.items()}


def dump_days(system: SystemPlan) -> list[int]:
    """The last day of every month from the system's start to the end of the span (or of the system)."""
    last = min(system.active_to or SPAN_END, SPAN_END)
    current, days = to_date(system.active_from).replace(day=1), []
    while True:
        following = (current + dt.timedelta(days=32)).replace(day=1)
        month_end = day(following - dt.timedelta(days=1))
        if month_end > last:
            break
        days.append(month_end)
        current = following
    return days if days and days[-1] == last else [*days, last]


def _date(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Date).dt.strftime("%d/%m/%Y").fill_null("")


def _latest(frame: pl.DataFrame, cutoff: int, key: str) -> pl.DataFrame:
    """Each record as registered by the end of day `cutoff`."""
    seen = frame.filter(pl.col("ts") < (cutoff + 1) * 86400)
    return seen.sort([key, "ts"], maintain_order=True).group_by(key, maintain_order=True).last()


def _element(tag: str, attributes: list[tuple[str, pl.Expr]], children: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """One record on one line: `<Tag a="..."><Child>text</Child><Empty/></Tag>`."""
    parts: list[pl.Expr] = [pl.lit(f"    <{tag}")]
    for name, value in attributes:
        parts += [pl.lit(f' {name}="'), value, pl.lit('"')]
    parts.append(pl.lit(">"))
    for name, value in children:
        parts.append(pl.when(value == "").then(pl.lit(f"<{name}/>"))
                     .otherwise(pl.concat_str([pl.lit(f"<{name}>"), value, pl.lit(f"</{name}>")])))
    parts.append(pl.lit(f"</{tag}>"))
    return pl.concat_str(parts)


def _clients(persons: pl.DataFrame) -> pl.DataFrame:
    kind = pl.col("id_type").str.slice(0, 1)
    personnr = pl.concat_str([pl.lit('<Personnr type="'), kind, pl.lit('">'), pl.col("nid"), pl.lit("</Personnr>")])
    rest = _element("Klient", [("nr", pl.col("user_no")), ("kommune", pl.col("unit"))], [
        ("Kjonn", pl.when(pl.col("male")).then(pl.lit("M")).otherwise(pl.lit("K"))),
        ("Fodt", pl.col("birth").cast(pl.Date).dt.year().cast(pl.Utf8)),
        ("Bydel", pl.col("bydel").fill_null("")),
        ("Dod", _date("death_v")),
    ])
    text = pl.concat_str([rest.str.extract(r"^(.*?>)", 1), personnr, rest.str.extract(r"^.*?>(.*)$", 1)])
    return persons.select(pl.lit(1).alias("_section"), pl.col("user_no").cast(pl.Int64).alias("_key"),
                          text.alias("text"))


def _decisions(versions: pl.DataFrame, dump: int, codes: dict[int, str]) -> pl.DataFrame:
    ended = pl.col("to").is_not_null() & (pl.col("to") <= dump)
    return versions.select(
        pl.lit(3).alias("_section"), pl.col("sid").str.slice(2).cast(pl.Int64).alias("_key"),
        _element("Tjeneste", [("id", pl.col("sid")), ("klient", pl.col("user_no")), ("kommune", pl.col("unit"))], [
            ("Type", pl.col("code").replace_strict(codes, default="UKJENT", return_dtype=pl.Utf8)),
            ("Vedtatt", _date("decision")), ("Fra", _date("from")), ("Til", _date("to")),
            ("Utforer", pl.col("org").fill_null("")), ("TimerUke", hours_text("hours", comma=True)),
            ("Status", pl.when(ended).then(pl.lit("Avsluttet")).otherwise(pl.lit("Aktiv"))),
        ]).alias("text"))


def _pauses(stops: pl.DataFrame) -> pl.DataFrame:
    return stops.select(
        pl.lit(5).alias("_section"), pl.col("stop_id").str.slice(2).cast(pl.Int64).alias("_key"),
        _element("Pause", [("id", pl.col("stop_id")), ("tjeneste", pl.col("sid")), ("kommune", pl.col("unit"))],
                 [("Fra", _date("from")), ("Til", _date("to_v"))]).alias("text"))


def _static(section: int, text: str) -> pl.DataFrame:
    return pl.DataFrame({"_section": [section], "_key": [0], "text": [text]},
                        schema={"_section": pl.Int32, "_key": pl.Int64, "text": pl.Utf8})


def _mark(frame: pl.DataFrame, rule: str, kind: str, what: str) -> pl.DataFrame:
    return frame.with_columns(pl.lit(rule).alias("rule_id"), pl.lit(kind).alias("record_kind"),
                              pl.lit(what).alias("description"))


def _corruptions(clients: pl.DataFrame, persons: pl.DataFrame, decisions: pl.DataFrame, dump: int,
                 codes: dict[int, str]) -> pl.DataFrame:
    """The corpus's record-level corruptions in this format, as extra lines of the last dump."""
    fnr = persons.filter(pl.col("id_type") == "FNR").sort("user_no").row(0, named=True)
    bad_client = clients.filter(pl.col("_key") == int(fnr["user_no"])).with_columns(
        pl.lit(int(BAD_CLIENT), dtype=pl.Int64).alias("_key"),
        pl.col("text").str.replace(f'nr="{fnr["user_no"]}"', f'nr="{BAD_CLIENT}"', literal=True)
        .str.replace(fnr["nid"], break_check_digits(fnr["nid"]), literal=True))
    rows = [_mark(bad_client, "id.check_digits", "person", "Personnr fails its mod-11 check digits")]
    ordered = decisions.sort("sid")
    template = ordered.slice(ordered.height // 2, 1).with_columns(pl.lit(None, dtype=pl.Int32).alias("to"))
    changes = {
        "period.end_before_start": ("decision ends before it starts", {"to": pl.col("from") - 10}),
        "code.unknown_service": ("service code UKJENT has no mapping to code list 9151", {"code": pl.lit(99)}),
        "hours.out_of_range": ("hours per week 200,0 is above 168", {"hours": pl.lit(200.0)}),
        "date.unparseable": ("start date is not a calendar date", {}),
    }
    for k, (rule, (what, values)) in enumerate(changes.items(), start=1):
        sid = f"E-9{k:05d}"
        record = template.with_columns(pl.lit(sid).alias("sid"),
                                       *[v.cast(template.schema[c]).alias(c) for c, v in values.items()])
        line = _decisions(record, dump, codes)
        if rule == "date.unparseable":
            line = line.with_columns(pl.col("text").str.replace(r"<Fra>[^<]*</Fra>", "<Fra>31/02/2025</Fra>"))
        rows.append(_mark(line.with_columns(pl.lit(9 * 10**6 + k, dtype=pl.Int64).alias("_key")), rule,
                          "service", what))
    original = _decisions(template.drop("to").join(decisions.select("sid", "to"), on="sid"), dump, codes)
    rows.append(_mark(original.with_columns(pl.lit(1).alias("_tb")), "record.duplicate", "service",
                      "exact duplicate of the decision before it"))
    return pl.concat(rows, how="diagonal")


def render_snapshots(root: Path, system: SystemPlan, h: dict[str, pl.DataFrame], corrupt: bool
                     ) -> tuple[list[Corruption], int]:
    """Write every monthly dump of `system`; returns (planted corruptions, files written)."""
    codes = _vendor_codes()
    days = dump_days(system)
    marks: list[Corruption] = []
    for n, dump in enumerate(days):
        persons = _latest(h["persons"], dump, "pid")
        decisions = _latest(h["versions"], dump, "sid").filter(pl.col("change_type") != "ANNULLERT")
        pauses = _latest(h["stops"], dump, "stop_id")
        clients, vedtak = _clients(persons), _decisions(decisions, dump, codes)
        stamp = to_date(dump)
        frame = pl.concat([
            _static(0, f'<?xml version="1.0" encoding="UTF-8"?>\n<Uttrekk system="{system.system}" '
                       f'dato="{stamp:%d/%m/%Y}">\n  <Klienter>'),
            clients, _static(2, "  </Klienter>\n  <Vedtak>"), vedtak,
            _static(4, "  </Vedtak>\n  <Opphold>"), _pauses(pauses), _static(6, "  </Opphold>\n</Uttrekk>"),
        ], how="vertical_relaxed").with_columns(pl.lit(0).alias("_tb"))
        frame = unmarked(frame)
        relative = f"{system.path}/uttrekk_{stamp:%Y%m%d}.xml"
        if corrupt and n == len(days) - 1:
            extra = _corruptions(clients, persons, decisions, dump, codes).with_columns(pl.col("_tb").fill_null(1))
            frame = pl.concat([frame, extra.select(frame.columns)], how="vertical_relaxed")
        body, found = assemble(frame, ["_section", "_key", "_tb"], 1, relative)
        marks += found
        write_bytes(root, relative, body.encode("utf-8"))
    return marks, len(days)
