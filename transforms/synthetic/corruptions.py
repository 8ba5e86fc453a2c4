"""The bad-input corpus: extra records and files that break exactly one rule each.

Every corruption is an extra record (or a yearly file whose days an EPJ export covers
anyway), so the ground-truth episodes are the same with or without them; the one
exception is the duplicated CSV row, an exact copy of a real row (the second copy is the
bad one). Record-level corruptions sit in Drammen's two exports, Drammen's 2018 extract
(layout 3.6) and Herøy's 2021 extract (layout 3.7), so every rule that applies to a
format has at least one sample in it; the renderers report the line of each.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from .ids import break_check_digits
from .iplos_rows import (
    EL_ASSESSMENT,
    EL_CLOSE,
    EL_DIAGNOSIS,
    EL_HOUSEHOLD,
    EL_OPEN,
    EL_SERVICE,
    T36_PERSON,
    T36_SERVICE,
    T37_BRUKER,
    T37_DIAGNOSIS,
    T37_SERVICE,
    T37_STOP,
    assessment_36,
    assessment_37,
)
from .sources import MunicipalityPlan
from .textio import Corruption

BAD_USER = 99001
BAD_SCORES = [3, 2, 4, 1, 2, 3, 4, 4, 3, 2, 3, 2, 1, 2, 3, 9, 1]
_SERVICE_RULES = (  # rule id, what is wrong, field overrides for the CSV/JSON record
    ("period.end_before_start", "service ends before it starts"),
    ("code.unknown_service", "service code 99 is not in code list 9151"),
    ("hours.out_of_range", "hours per week 200.0 is above 168"),
    ("date.unparseable", "start date is not a calendar date"),
)


def _no_to_date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%d.%m.%Y").date()


class CorruptionPlanner:
    """Decides which files get which bad records and builds those records on request."""

    def __init__(self, plans: list[MunicipalityPlan]):
        drammen = next(p for p in plans if p.feature == "drammen")
        heroy = next(p for p in plans if p.feature == "heroy")
        self.epj_a = drammen.system(f"epj{drammen.muni.nr}a").path
        self.epj_b = drammen.system(f"epj{drammen.muni.nr}b").path
        self.xml36 = "raw/iplos/2018/0602.xml"
        self.xml37 = f"raw/iplos/2021/{heroy.muni.nr}.xml"
        self.files: list[Corruption] = []
        for plan in plans:
            for (unit, year), rule in sorted(plan.corrupted.items()):
                what = (
                    "truncated in the middle of an element"
                    if rule == "file.unparseable"
                    else "prolog declares UTF-8 but the bytes are ISO-8859-1 (ø is byte 0xF8)"
                )
                self.files.append(Corruption(f"raw/iplos/{year}/{unit}.xml", None, "file", rule, what))

    # -- dispatch -------------------------------------------------------------------------
    def rows(self, source_file: str, table: str, frame: pl.DataFrame) -> pl.DataFrame | None:
        if source_file == f"{self.epj_a}/brukere.csv":
            return self._brukere(frame)
        if source_file == f"{self.epj_a}/tjenester.csv":
            return self._tjenester(frame)
        if source_file == f"{self.epj_b}/events.jsonl":
            return self._events(frame)
        if source_file == self.xml36:
            return self._xml(frame, "3.6")
        if source_file == self.xml37:
            return self._xml(frame, "3.7")
        return None

    def file_bytes(self, source_file: str, rule: str, data: bytes) -> bytes:
        if rule == "file.unparseable":
            cut = data.find(b"<Tjeneste ", len(data) // 2)
            cut = data.find(b"<Tjeneste", len(data) // 2) if cut < 0 else cut
            assert cut > 0, source_file
            return data[: cut + 25]
        if rule == "file.encoding_mismatch":
            assert b"\xf8" in data and data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>'), (
                source_file
            )
            return data.replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"', 1)
        raise ValueError(rule)

    # -- epj-a-csv --------------------------------------------------------------------------
    @staticmethod
    def _mark(frame: pl.DataFrame, rule: str, kind: str, description: str) -> pl.DataFrame:
        return frame.with_columns(
            pl.lit(rule).alias("rule_id"),
            pl.lit(kind).alias("record_kind"),
            pl.lit(description).alias("description"),
        )

    def _brukere(self, frame: pl.DataFrame) -> pl.DataFrame:
        real = frame.filter(pl.col("id_type") == "FNR").sort(["_user", "ts"]).head(1)
        bad = real.with_columns(
            pl.lit(BAD_USER, dtype=pl.Int64).alias("_user"),
            pl.lit(str(BAD_USER)).alias("brukernr"),
            pl.lit(break_check_digits(real["fnr"].item())).alias("fnr"),
        )
        return self._mark(bad, "id.check_digits", "person", "fødselsnummer fails its mod-11 check digits")

    def _tjenester(self, frame: pl.DataFrame) -> pl.DataFrame:
        news = frame.filter(pl.col("endringstype") == "NY").sort(["sid", "ts"])
        template = news.slice(news.height // 2, 1)
        prefix = template["tjenesteid"].item().split("-")[0]
        start = _no_to_date(template["fra_dato"].item())
        out = []
        for k, (rule, what) in enumerate(_SERVICE_RULES, start=1):
            sid = f"{prefix}-9{k:05d}"
            row = template.with_columns(
                pl.lit(sid).alias("sid"),
                pl.lit(sid).alias("tjenesteid"),
                pl.lit("").alias("til_dato"),
                pl.lit("4").alias("tjenestetype"),
            )
            if rule == "period.end_before_start":
                row = row.with_columns(
                    pl.lit((start - dt.timedelta(days=10)).strftime("%d.%m.%Y")).alias("til_dato")
                )
            elif rule == "code.unknown_service":
                row = row.with_columns(pl.lit("99").alias("tjenestetype"))
            elif rule == "hours.out_of_range":
                row = row.with_columns(pl.lit("200,0").alias("timer_per_uke"))
            else:
                row = row.with_columns(pl.lit("31.02.2019").alias("fra_dato"))
            out.append(self._mark(row, rule, "service", what))
        # an exact copy of a real row, right after it: the second copy is the bad one
        changed = frame.filter(pl.col("endringstype") == "ENDRET").sort(["sid", "ts"])
        original = (changed if changed.height else frame.sort(["sid", "ts"])).head(1)
        out.append(
            self._mark(
                original.with_columns(pl.lit(1).alias("_tb")),
                "record.duplicate",
                "service",
                "exact duplicate of the row before it",
            )
        )
        return pl.concat(out)

    # -- epj-b-jsonl ------------------------------------------------------------------------
    def _events(self, frame: pl.DataFrame) -> pl.DataFrame:
        services = frame.filter(pl.col("_kind") == 1).sort(["ts", "_id"])
        template = services.slice(services.height // 2, 1)
        record = json.loads("{" + template["rest"].item())
        clients = frame.filter(pl.col("_kind") == 0).sort(["ts", "_id"])
        client = json.loads("{" + clients.slice(clients.height // 3, 1)["rest"].item())
        rows = []
        bad_client = dict(client)
        bad_client["clientId"] = f"c-{BAD_USER}"
        bad_client["client"] = dict(
            client["client"], nationalId=break_check_digits(client["client"]["nationalId"]), idType="FNR"
        )
        rows.append(
            ("client", bad_client, "id.check_digits", "person", "nationalId fails its mod-11 check digits")
        )
        prefix = record["service"]["id"].split("-")[0]
        for k, (rule, what) in enumerate(_SERVICE_RULES, start=1):
            event = dict(record)
            event.pop("migratedFrom", None)
            service = dict(record["service"], id=f"{prefix}-9{k:05d}", code="4", to=None, status="ACTIVE")
            if rule == "period.end_before_start":
                start = dt.date.fromisoformat(service["from"])
                service["to"] = (start - dt.timedelta(days=10)).isoformat()
            elif rule == "code.unknown_service":
                service["code"] = "99"
            elif rule == "hours.out_of_range":
                service["weeklyHours"] = 200.0
            else:
                service["from"] = "2019-13-45"
            event["service"] = service
            rows.append(("service", event, rule, "service", what))
        out = []
        for n, (kind, event, rule, record_kind, what) in enumerate(rows):
            source = template if kind == "service" else clients.slice(clients.height // 3, 1)
            out.append(
                source.with_columns(
                    pl.lit(json.dumps(event, ensure_ascii=False)[1:]).alias("rest"),
                    pl.lit(f"~{n}").alias("_id"),
                    pl.lit(rule).alias("rule_id"),
                    pl.lit(record_kind).alias("record_kind"),
                    pl.lit(what).alias("description"),
                )
            )
        return pl.concat(out)

    # -- yearly extracts --------------------------------------------------------------------
    def _xml(self, frame: pl.DataFrame, layout: str) -> pl.DataFrame:
        unit = frame["unit"][0]
        people = frame.filter((pl.col("el") == EL_OPEN) & (pl.col("_kind") == "person")).sort(
            ["p_sys", "p_no", "pid"]
        )
        host = people.row(people.height // 2, named=True)
        fid = _fid_of(host["text"], layout)
        bad_fid = break_check_digits(fid)
        rows: list[dict] = []

        def add(
            el: int,
            text: str,
            kind: str | None,
            rule: str | None,
            what: str | None,
            p: dict | None = None,
            s_key: int = 0,
            s_id: str = "",
            sub: int = 0,
        ) -> None:
            who = p or {"p_sys": "~", "p_no": BAD_USER, "pid": -1}
            rows.append(
                {
                    "unit": unit,
                    "p_sys": who["p_sys"],
                    "p_no": who["p_no"],
                    "pid": who["pid"],
                    "el": el,
                    "s_key": s_key,
                    "s_id": s_id,
                    "sub": sub,
                    "st": 0,
                    "_tb": 1,
                    "text": text,
                    "_kind": kind or "",
                    "rule_id": rule,
                    "record_kind": kind if rule else None,
                    "description": what,
                }
            )

        parent = "the person's identifier failed validation"
        if layout == "3.6":
            add(
                EL_OPEN,
                T36_PERSON.format(user=BAD_USER, fid=bad_fid, sex=2, born=1941),
                "person",
                "id.check_digits",
                "Fnr fails its mod-11 check digits",
            )
            add(EL_HOUSEHOLD, "    <Husstand>1</Husstand>", None, None, None)
            add(
                EL_ASSESSMENT,
                assessment_36("02.03.2018", BAD_SCORES),
                "assessment",
                "id.parent_quarantined",
                parent,
            )
            add(
                EL_SERVICE,
                T36_SERVICE.format(code=15, start="01.02.2018", end="", org="", hours="3,5"),
                "service",
                "id.parent_quarantined",
                parent,
            )
            add(EL_CLOSE, "  </Person>", None, None, None)
            values = {
                "period.end_before_start": dict(code=4, start="01.03.2018", end="01.02.2018", hours="2,0"),
                "code.unknown_service": dict(code=99, start="01.03.2018", end="", hours="2,0"),
                "hours.out_of_range": dict(code=4, start="01.03.2018", end="", hours="200,0"),
                "date.unparseable": dict(code=4, start="31.02.2018", end="", hours="2,0"),
            }
            for k, (rule, what) in enumerate(_SERVICE_RULES):
                add(
                    EL_SERVICE,
                    T36_SERVICE.format(org="", **values[rule]),
                    "service",
                    rule,
                    what,
                    host,
                    s_key=9 * 10**15,
                    s_id=f"~{k}",
                )
        else:
            add(
                EL_OPEN,
                T37_BRUKER.format(user=BAD_USER, fid=bad_fid, type=1, sex=2, born=1941),
                "person",
                "id.check_digits",
                "fid fails its mod-11 check digits",
            )
            add(EL_HOUSEHOLD, '      <Husstand kode="1"/>', None, None, None)
            add(
                EL_ASSESSMENT,
                assessment_37("2021-03-02", BAD_SCORES),
                "assessment",
                "id.parent_quarantined",
                parent,
            )
            add(
                EL_DIAGNOSIS,
                T37_DIAGNOSIS.format(system="ICD10", code="I50", date="2020-11-02"),
                "diagnosis",
                "id.parent_quarantined",
                parent,
            )
            add(
                EL_SERVICE,
                T37_SERVICE.format(
                    sid="Q-900001",
                    code=15,
                    decided="2021-01-28",
                    start="2021-02-01",
                    end="",
                    org="",
                    hours="3.5",
                    close=">",
                ),
                "service",
                "id.parent_quarantined",
                parent,
                s_key=1,
            )
            add(
                EL_SERVICE,
                T37_STOP.format(stop="QS-1", start="2021-06-01", end="2021-06-20"),
                "stop",
                "id.parent_quarantined",
                parent,
                s_key=1,
                sub=1,
            )
            add(EL_SERVICE, "      </Tjeneste>", None, None, None, s_key=1, sub=2)
            add(EL_CLOSE, "    </Bruker>", None, None, None)
            values = {
                "period.end_before_start": dict(code=4, start="2021-03-01", end="2021-02-01", hours="2.0"),
                "code.unknown_service": dict(code=99, start="2021-03-01", end="", hours="2.0"),
                "hours.out_of_range": dict(code=4, start="2021-03-01", end="", hours="200.0"),
                "date.unparseable": dict(code=4, start="2019-13-45", end="", hours="2.0"),
            }
            for k, (rule, what) in enumerate(_SERVICE_RULES):
                v = values[rule]
                add(
                    EL_SERVICE,
                    T37_SERVICE.format(sid=f"Q-9{k + 2:05d}", decided="2021-02-20", org="", close="/>", **v),
                    "service",
                    rule,
                    what,
                    host,
                    s_key=9 * 10**15,
                    s_id=f"~{k}",
                )
        schema = {c: frame.schema[c] for c in frame.columns}
        return pl.DataFrame(rows, schema=schema)


def _fid_of(text: str, layout: str) -> str:
    marker = "<Fnr>" if layout == "3.6" else 'fid="'
    start = text.index(marker) + len(marker)
    return text[start : start + 11]
