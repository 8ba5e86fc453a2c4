"""One municipality's yearly extract of one year as sortable text rows: every element of layouts 3.6
and 3.7 on a line of its own, with the keys that put persons, services and their parts in file order.

`render_iplos` writes the rows of one unit (several municipalities' for a split unit) as a file;
the corruption planner adds rows shaped by the same templates.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .dates import OPEN, year_end, year_start
from .sources import MunicipalityPlan
from .textio import date_iso, date_no, hours_text

VARIABLES = (
    "sosialDeltakelse",
    "beslutningerIDagliglivet",
    "hukommelse",
    "styreAtferd",
    "kommunikasjon",
    "skaffeSegVarerOgTjenester",
    "alminneligHusarbeid",
    "lageMat",
    "ivaretaEgenHelse",
    "spise",
    "personligHygiene",
    "kleAvOgPaaSeg",
    "toalett",
    "bevegeSegInnendors",
    "bevegeSegUtendors",
    "syn",
    "horsel",
)
# element order inside a Bruker/Person
EL_OPEN, EL_HOUSEHOLD, EL_ASSESSMENT, EL_DIAGNOSIS, EL_SERVICE, EL_CLOSE = 0, 1, 2, 3, 4, 9
KEYS = ["p_sys", "p_no", "pid", "el", "s_key", "s_id", "sub", "st", "_tb"]
KEY_TYPES = {
    "p_sys": pl.Utf8,
    "p_no": pl.Int64,
    "pid": pl.Int64,
    "el": pl.Int32,
    "s_key": pl.Int64,
    "s_id": pl.Utf8,
    "sub": pl.Int32,
    "st": pl.Int64,
    "_tb": pl.Int32,
}

# Templates for the few hand-made (corrupt) rows; the bulk is built with the polars expressions below.
T37_BRUKER = (
    '    <Bruker brukerNr="{user}" fid="{fid}" typeID="{type}" kjonn="{sex}" fodselsar="{born}" '
    'bydel="" dodsdato="">'
)
T37_SERVICE = (
    '      <Tjeneste tjenesteID="{sid}" tjenesteType="{code}" vedtaksDato="{decided}" startDato="{start}" '
    'sluttDato="{end}" tjenesteOrgNr="{org}" timerPerUke="{hours}"{close}'
)
T37_STOP = '        <MidlertidigStopp stoppID="{stop}" fraDato="{start}" tilDato="{end}"/>'
T37_DIAGNOSIS = '      <Diagnose system="{system}" kode="{code}" dato="{date}"/>'
T36_PERSON = (
    "  <Person>\n    <Brukernr>{user}</Brukernr><Fnr>{fid}</Fnr><Kjonn>{sex}</Kjonn><Fodt>{born}</Fodt>"
    "<Dod></Dod>"
)
T36_SERVICE = (
    "    <Tjeneste><Kode>{code}</Kode><Fra>{start}</Fra><Til>{end}</Til><OrgNr>{org}</OrgNr>"
    "<Timer>{hours}</Timer></Tjeneste>"
)


def assessment_37(date: str, values: list[int]) -> str:
    inner = "\n".join(
        f'        <Variabel navn="{n}" verdi="{v}"/>' for n, v in zip(VARIABLES, values, strict=True)
    )
    return f'      <Funksjonsvurdering dato="{date}">\n{inner}\n      </Funksjonsvurdering>'


def assessment_36(date: str, values: list[int]) -> str:
    inner = "".join(f'<V n="{i}">{v}</V>' for i, v in enumerate(values, start=1))
    return f'    <Vurdering dato="{date}">{inner}</Vurdering>'


def _rows(
    kind: str,
    frame: pl.DataFrame,
    text: pl.Expr,
    el: int,
    s_key: pl.Expr | None = None,
    s_id: pl.Expr | None = None,
    sub: int = 0,
    st: pl.Expr | None = None,
) -> pl.DataFrame:
    """Rows of one element kind with the common sort keys."""
    return frame.select(
        "unit",
        "p_sys",
        "p_no",
        "pid",
        pl.lit(el, dtype=pl.Int32).alias("el"),
        (s_key if s_key is not None else pl.lit(0)).cast(pl.Int64).alias("s_key"),
        (s_id if s_id is not None else pl.lit("")).cast(pl.Utf8).alias("s_id"),
        pl.lit(sub, dtype=pl.Int32).alias("sub"),
        (st if st is not None else pl.lit(0)).cast(pl.Int64).alias("st"),
        pl.lit(0, dtype=pl.Int32).alias("_tb"),
        text.alias("text"),
        pl.lit(kind).alias("_kind"),
    )


def _attr(name: str, expr: pl.Expr) -> list[pl.Expr]:
    return [pl.lit(f' {name}="'), expr, pl.lit('"')]


class YearState:
    """Everything one municipality's extracts of one year are made from."""

    def __init__(
        self,
        year: int,
        world: dict[str, pl.DataFrame],
        holdings: dict[str, pl.DataFrame],
        rng: np.random.Generator,
        plan: MunicipalityPlan,
    ):
        y0, y1 = year_start(year), year_end(year)
        self.year = year
        eps = world["episodes"].filter((pl.col("start") <= y1) & (pl.col("end") >= y0))
        eps = eps.with_columns(pl.min_horizontal("end", pl.lit(y1)).alias("ref"))
        seg = holdings["segments"].select("eid", "system", "sid", "seg_start", "seg_end", "sys_decision")
        eps = eps.join(seg, on="eid").filter(
            (pl.col("seg_start") <= pl.col("ref")) & (pl.col("seg_end") >= pl.col("ref"))
        )
        units = pl.DataFrame(
            {
                "part": list(range(len(plan.muni.parts))),
                "unit": [plan.muni.unit(j, year) for j in range(len(plan.muni.parts))],
            },
            schema={"part": pl.Int32, "unit": pl.Utf8},
        )
        eps = eps.join(units, on="part")
        eps = _value_at(eps, world["provider_changes"], "org", "provider")
        eps = _value_at(eps, world["hours_changes"], "hours_now", "hours", value="hours")
        # the person's user number comes from the system that held their latest service of the year
        latest = (
            eps.sort(["pid", "ref", "seg_start", "eid"])
            .group_by("pid", maintain_order=True)
            .agg(pl.col("system").last())
        )
        persons = (
            world["persons"].join(latest, on="pid").join(holdings["users"], on=["system", "pid"], how="left")
        )
        persons = persons.join(eps.select("pid", "unit").unique("pid", keep="first"), on="pid")
        extract_day = y1 + int(rng.integers(5, 26))
        persons = persons.with_columns(
            pl.when(pl.col("dnr").is_not_null() & (pl.col("dnr_until").fill_null(OPEN) > extract_day))
            .then(pl.col("dnr"))
            .otherwise(pl.col("fnr"))
            .alias("fid"),
            pl.col("user_no").str.replace("c-", "", literal=True).cast(pl.Int64).alias("p_no"),
            pl.col("system").alias("p_sys"),
            pl.when(pl.col("death") <= y1).then(pl.col("death")).otherwise(None).alias("death_y"),
        ).with_columns(
            pl.when(pl.col("fid") == pl.col("dnr")).then(pl.lit(2)).otherwise(pl.lit(1)).alias("type_id")
        )
        self.extract_day = extract_day
        self.persons = persons.sort("pid")
        keys = self.persons.select("pid", "p_sys", "p_no")
        self.services = eps.join(keys, on="pid").sort("eid")
        stops = world["stops"].filter((pl.col("from") <= y1) & (pl.col("to") >= y0))
        self.stops = (
            stops.join(holdings["stops"].select("eid", "from", "stop_id", "system"), on=["eid", "from"])
            .join(
                self.services.select("eid", "system", "unit", "pid", "p_sys", "p_no", "start", "code", "sid"),
                on=["eid", "system"],
            )
            .with_columns(pl.when(pl.col("to") <= y1).then(pl.col("to")).otherwise(None).alias("to_y"))
        )
        # assessments: about a third of the persons were assessed during the year
        n = self.persons.height
        assessed = rng.random(n) < 0.35
        first = self.services.group_by("pid").agg(
            pl.col("start").min().alias("a"), pl.col("ref").max().alias("b")
        )
        span = self.persons.select("pid").join(first, on="pid", how="left").sort("pid")
        lo = np.maximum(span["a"].to_numpy(), y0)
        hi = np.maximum(span["b"].to_numpy(), lo)
        when = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
        scores = np.clip(rng.integers(1, 6, size=(n, 17)) + rng.integers(-1, 2, size=(n, 1)), 1, 5)
        scores[:, 15:] = np.where(rng.random((n, 2)) < 0.15, 9, scores[:, 15:])
        self.assessments = (
            self.persons.select("pid", "unit", "p_sys", "p_no")
            .with_columns(
                pl.Series("when", when, dtype=pl.Int32),
                *[pl.Series(f"v{k}", scores[:, k]).cast(pl.Utf8) for k in range(17)],
            )
            .filter(pl.Series(assessed))
        )
        self.diagnoses = (
            world["diagnoses"]
            .filter(pl.col("date") <= y1)
            .join(self.persons.select("pid", "unit", "p_sys", "p_no"), on="pid")
        )


def _value_at(
    eps: pl.DataFrame, changes: pl.DataFrame, name: str, initial: str, value: str = "org"
) -> pl.DataFrame:
    """The value of a changing attribute on each service's reference day (end of year or end)."""
    right = changes.select("eid", pl.col("date").alias("ref"), pl.col(value).alias(f"_{name}")).sort("ref")
    joined = eps.sort("ref").join_asof(right, on="ref", by="eid", strategy="backward", check_sortedness=False)
    return joined.with_columns(pl.coalesce(f"_{name}", initial).alias(name)).drop(f"_{name}")


def _service_key() -> pl.Expr:
    return pl.col("start").cast(pl.Int64) * 100 + pl.col("code")


def rows_37(s: YearState) -> pl.DataFrame:
    p = s.persons
    bruker = pl.concat_str(
        [
            pl.lit("    <Bruker"),
            *_attr("brukerNr", pl.col("user_no")),
            *_attr("fid", pl.col("fid")),
            *_attr("typeID", pl.col("type_id").cast(pl.Utf8)),
            *_attr("kjonn", pl.when(pl.col("male")).then(pl.lit("1")).otherwise(pl.lit("2"))),
            *_attr("fodselsar", pl.col("birth").cast(pl.Date).dt.year().cast(pl.Utf8)),
            *_attr("bydel", pl.col("bydel")),
            *_attr("dodsdato", date_iso("death_y")),
            pl.lit(">"),
        ]
    )
    sv = s.services.with_columns(pl.col("eid").is_in(s.stops["eid"].implode()).alias("has_stops"))
    service = pl.concat_str(
        [
            pl.lit("      <Tjeneste"),
            *_attr("tjenesteID", pl.col("sid")),
            *_attr("tjenesteType", pl.col("code").cast(pl.Utf8)),
            *_attr("vedtaksDato", date_iso("sys_decision")),
            *_attr("startDato", date_iso("seg_start")),
            *_attr("sluttDato", date_iso(pl.when(pl.col("end") <= year_end(s.year)).then(pl.col("end")))),
            *_attr("tjenesteOrgNr", pl.col("org").fill_null("")),
            *_attr("timerPerUke", hours_text("hours_now", False)),
            pl.when(pl.col("has_stops")).then(pl.lit(">")).otherwise(pl.lit("/>")),
        ]
    )
    stop = pl.concat_str(
        [
            pl.lit("        <MidlertidigStopp"),
            *_attr("stoppID", pl.col("stop_id")),
            *_attr("fraDato", date_iso("from")),
            *_attr("tilDato", date_iso("to_y")),
            pl.lit("/>"),
        ]
    )
    diag = pl.concat_str(
        [
            pl.lit("      <Diagnose"),
            *_attr("system", pl.col("system")),
            *_attr("kode", pl.col("code")),
            *_attr("dato", date_iso("date")),
            pl.lit("/>"),
        ]
    )
    assess = pl.concat_str(
        [
            pl.lit('      <Funksjonsvurdering dato="'),
            date_iso("when"),
            pl.lit('">\n'),
            *[
                x
                for k, name in enumerate(VARIABLES)
                for x in (
                    pl.lit(f'        <Variabel navn="{name}" verdi="'),
                    pl.col(f"v{k}"),
                    pl.lit('"/>\n'),
                )
            ],
            pl.lit("      </Funksjonsvurdering>"),
        ]
    )
    sv_with_stops = sv.filter(pl.col("has_stops"))
    parts = [
        _rows("person", p, bruker, EL_OPEN),
        _rows(
            "household",
            p,
            pl.concat_str(
                [pl.lit('      <Husstand kode="'), pl.col("household").cast(pl.Utf8), pl.lit('"/>')]
            ),
            EL_HOUSEHOLD,
        ),
        _rows("assessment", s.assessments, assess, EL_ASSESSMENT),
        _rows("diagnosis", s.diagnoses, diag, EL_DIAGNOSIS, s_key=pl.col("date"), s_id=pl.col("code")),
        _rows("service", sv, service, EL_SERVICE, _service_key(), pl.col("sid")),
        _rows("stop", s.stops, stop, EL_SERVICE, _service_key(), pl.col("sid"), sub=1, st=pl.col("from")),
        _rows(
            "service_close",
            sv_with_stops,
            pl.lit("      </Tjeneste>"),
            EL_SERVICE,
            _service_key(),
            pl.col("sid"),
            sub=2,
        ),
        _rows("person_close", p, pl.lit("    </Bruker>"), EL_CLOSE),
    ]
    return pl.concat(parts)


def rows_36(s: YearState) -> pl.DataFrame:
    p = s.persons
    person = pl.concat_str(
        [
            pl.lit("  <Person>\n    <Brukernr>"),
            pl.col("user_no"),
            pl.lit("</Brukernr><Fnr>"),
            pl.col("fid"),
            pl.lit("</Fnr><Kjonn>"),
            pl.when(pl.col("male")).then(pl.lit("1")).otherwise(pl.lit("2")),
            pl.lit("</Kjonn><Fodt>"),
            pl.col("birth").cast(pl.Date).dt.year().cast(pl.Utf8),
            pl.lit("</Fodt><Dod>"),
            date_no("death_y"),
            pl.lit("</Dod>"),
        ]
    )
    service = pl.concat_str(
        [
            pl.lit("    <Tjeneste><Kode>"),
            pl.col("original_code").cast(pl.Utf8),
            pl.lit("</Kode><Fra>"),
            date_no("seg_start"),
            pl.lit("</Fra><Til>"),
            date_no(pl.when(pl.col("end") <= year_end(s.year)).then(pl.col("end"))),
            pl.lit("</Til><OrgNr>"),
            pl.col("org").fill_null(""),
            pl.lit("</OrgNr><Timer>"),
            hours_text("hours_now", True),
            pl.lit("</Timer></Tjeneste>"),
        ]
    )
    assess = pl.concat_str(
        [
            pl.lit('    <Vurdering dato="'),
            date_no("when"),
            pl.lit('">'),
            *[x for k in range(17) for x in (pl.lit(f'<V n="{k + 1}">'), pl.col(f"v{k}"), pl.lit("</V>"))],
            pl.lit("</Vurdering>"),
        ]
    )
    return pl.concat(
        [
            _rows("person", p, person, EL_OPEN),
            _rows(
                "household",
                p,
                pl.concat_str(
                    [pl.lit("    <Husstand>"), pl.col("household").cast(pl.Utf8), pl.lit("</Husstand>")]
                ),
                EL_HOUSEHOLD,
            ),
            _rows("assessment", s.assessments, assess, EL_ASSESSMENT),
            _rows("service", s.services, service, EL_SERVICE, _service_key(), pl.col("sid")),
            _rows("person_close", p, pl.lit("  </Person>"), EL_CLOSE),
        ]
    )
