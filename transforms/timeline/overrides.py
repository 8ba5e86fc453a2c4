"""Analyst overrides, `config/overrides.toml`: the decisions people take on conflicts and doubtful cases.

Each decision is one `[[override]]` table with an `id`, a `kind`, the `kommune` it concerns, a
`reason`, who decided (`decided_by`) and when (`decided_on`, a date: the registration time of a fact
an override sets). The kinds and what they name:

| kind        | names                                  | effect                                                  |
|-------------|----------------------------------------|---------------------------------------------------------|
| `link`      | `records = [A, B]`                     | A and B are one service: they end up in one episode     |
| `unlink`    | `records = [A, B]`                     | the direct link between A and B is removed              |
| `set_start` | `episode`, `start` (a date)            | the episode starts on that day                          |
| `set_end`   | `episode`, `end` (a date, or "open")   | the episode ends on that day (or is open)               |
| `drop`      | `record`                               | the record is no evidence (as if the source lacked it)  |
| `keep`      | `record`                               | a record the rules set aside counts: an extract's record |
|             |                                        | on days an EPJ covers, or an annulled EPJ service       |
| `empty_gap` | `unit`, `first_day` of a gap segment   | no service ran in the gap: no episode is active in it,  |
|             |                                        | none is linked across it                                |

Records are named as in `episodes.records` (`epj:<system>:<id>`, `i37:...`, `i36:...`), episodes by
`episode_id`. Overrides are applied in the timeline in a fixed order (rows, then links, then dates),
each recorded in the lineage of the episodes it touches (`override:<id>`) and in `conflicts` as
`resolved_by`. One that matches nothing any more fails the build, naming it (`StaleOverride`).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

KINDS = ("link", "unlink", "set_start", "set_end", "drop", "keep", "empty_gap")
COMMON = ("id", "kind", "kommune", "reason", "decided_by", "decided_on")
FIELDS = {
    "link": ("records",), "unlink": ("records",), "set_start": ("episode", "start"), "set_end": ("episode", "end"),
    "drop": ("record",), "keep": ("record",), "empty_gap": ("unit", "first_day"),
}
OPEN = "open"


class OverrideError(ValueError):
    """config/overrides.toml is malformed: the message names the file, the override and the rule."""


class StaleOverride(RuntimeError):
    """An override matches nothing any more (the record, link, episode or gap it names is gone)."""


@dataclass(frozen=True)
class Override:
    id: str
    kind: str
    kommune: str
    reason: str
    decided_by: str
    decided_on: dt.date
    records: tuple[str, ...] = ()  # link, unlink: two; drop, keep: one
    episode: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    reopen: bool = False  # set_end with end = "open"
    unit: str | None = None
    first_day: dt.date | None = None


def _date(value: object, where: str, name: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise OverrideError(f"{where}: {name} = {value!r} is not a date (YYYY-MM-DD)")


def _text(value: object, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OverrideError(f"{where}: {name} must be a non-empty string")
    return value.strip()


def _parse(raw: dict, path: Path, index: int) -> Override:
    where = f"{path}: override #{index + 1}" + (f" ({raw['id']})" if isinstance(raw.get("id"), str) else "")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise OverrideError(f"{where}: kind = {kind!r} is not one of {', '.join(KINDS)}")
    missing = [f for f in (*COMMON, *FIELDS[kind]) if f not in raw]
    if missing:
        raise OverrideError(f"{where}: a {kind} override needs {', '.join(missing)}")
    unknown = sorted(set(raw) - set(COMMON) - set(FIELDS[kind]))
    if unknown:
        raise OverrideError(f"{where}: {', '.join(unknown)} not allowed in a {kind} override")
    values: dict = {name: _text(raw[name], where, name) for name in ("id", "kind", "kommune", "reason", "decided_by")}
    values["decided_on"] = _date(raw["decided_on"], where, "decided_on")
    if kind in ("link", "unlink"):
        records = raw["records"]
        if not (isinstance(records, list) and len(records) == 2 and records[0] != records[1]):
            raise OverrideError(f"{where}: records must name two different records")
        values["records"] = tuple(_text(r, where, "records") for r in records)
    elif kind in ("drop", "keep"):
        values["records"] = (_text(raw["record"], where, "record"),)
    elif kind == "set_start":
        values["episode"] = _text(raw["episode"], where, "episode")
        values["start"] = _date(raw["start"], where, "start")
    elif kind == "set_end":
        values["episode"] = _text(raw["episode"], where, "episode")
        if raw["end"] == OPEN:
            values["reopen"] = True
        else:
            values["end"] = _date(raw["end"], where, "end")
    else:
        values["unit"] = _text(raw["unit"], where, "unit")
        values["first_day"] = _date(raw["first_day"], where, "first_day")
    if values.get("episode") and not values["episode"].startswith(values["kommune"] + ":"):
        raise OverrideError(f"{where}: episode {values['episode']} is not one of kommune {values['kommune']}")
    return Override(**values)


def load_overrides(path: Path) -> tuple[Override, ...]:
    """The overrides of `path` (none when it does not exist), validated; ids are unique."""
    if not path.exists():
        return ()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise OverrideError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"override"})
    if unknown:
        raise OverrideError(f"{path}: only [[override]] tables are allowed, found {', '.join(unknown)}")
    overrides = tuple(_parse(raw, path, i) for i, raw in enumerate(document.get("override", [])))
    seen: set[str] = set()
    for override in overrides:
        if override.id in seen:
            raise OverrideError(f"{path}: override id {override.id} is used twice")
        seen.add(override.id)
    return overrides


OVERRIDE_SCHEMA = {
    "override_id": pl.Utf8, "kind": pl.Utf8, "kommune": pl.Utf8, "record_a": pl.Utf8, "record_b": pl.Utf8,
    "episode_id": pl.Utf8, "start_date": pl.Date, "end_date": pl.Date, "reopen": pl.Boolean, "unit": pl.Utf8,
    "first_day": pl.Date, "last_day": pl.Date, "decided_at": pl.Datetime("us", "UTC"), "detail": pl.Utf8,
}


def override_frame(overrides: tuple[Override, ...], gaps: pl.DataFrame) -> pl.DataFrame:
    """One row per override for the SQL (`OVERRIDE_SCHEMA`); an empty_gap gets its gap's last day from `gaps`
    (coverage segments with source 'gap'), null when no such gap segment exists."""
    rows = []
    for o in overrides:
        last_day = None
        if o.kind == "empty_gap":
            match = gaps.filter((pl.col("kommune") == o.kommune) & (pl.col("unit") == o.unit)
                                & (pl.col("first_day") == o.first_day))
            last_day = match["last_day"][0] if match.height else None
        rows.append({
            "override_id": o.id, "kind": o.kind, "kommune": o.kommune,
            "record_a": o.records[0] if o.records else None, "record_b": o.records[1] if len(o.records) > 1 else None,
            "episode_id": o.episode, "start_date": o.start, "end_date": o.end, "reopen": o.reopen, "unit": o.unit,
            "first_day": o.first_day, "last_day": last_day,
            "decided_at": dt.datetime.combine(o.decided_on, dt.time(), dt.UTC),
            "detail": f"{o.kind} by {o.decided_by} on {o.decided_on}: {o.reason}",
        })
    return pl.DataFrame(rows, schema=OVERRIDE_SCHEMA)
