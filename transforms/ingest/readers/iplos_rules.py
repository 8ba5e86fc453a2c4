"""A batch of a yearly extract judged column by column: staged rows, and quarantined records with their rules.

The rules and their order are those of the record-at-a-time reader they replace: a person whose
identifier or fields break a rule is quarantined with every record below it (`id.parent_quarantined`),
a quarantined service takes its stops with it (`record.parent_quarantined`), and an assessment is
staged as one row per score or quarantined whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from lxml import etree

from transforms.ingest.readers.iplos_collect import Collected, Header
from transforms.ingest.readers.iplos_layouts import XmlLayout
from transforms.ingest.values import column, persons
from transforms.ingest.values.spec import ValueSpec
from transforms.privacy.identity import Pseudonymizer
from transforms.reference.codes import function_variables

VALID_SCORES = [1, 2, 3, 4, 5, 9]


@dataclass
class Judged:
    staged: dict[str, pl.DataFrame]          # table -> rows (each with its source_file)
    assessments_staged: dict[int, int]       # per file (f): assessment elements behind the score rows
    rejected: pl.DataFrame                   # f, kind, line, location, rule_id, message, raw_value
    identities: pl.DataFrame                 # f, person_key, fid, id_type
    good_persons: pl.Series                  # positions in the batch of the persons that were staged


def _first_error(checks: list[tuple[pl.Series, pl.Series]], height: int) -> pl.DataFrame:
    if not checks:
        return pl.DataFrame({"rule": pl.Series([None] * height, dtype=pl.Utf8),
                             "message": pl.Series([None] * height, dtype=pl.Utf8)})
    frame = pl.DataFrame({**{f"r{i}": r for i, (r, _) in enumerate(checks)},
                          **{f"m{i}": m for i, (_, m) in enumerate(checks)}})
    return frame.select(
        pl.coalesce([pl.col(f"r{i}") for i in range(len(checks))]).alias("rule"),
        pl.coalesce([pl.when(pl.col(f"r{i}").is_not_null()).then(pl.col(f"m{i}")) for i in range(len(checks))])
        .alias("message"))


def _period(start: pl.Series, end: pl.Series, what: str) -> tuple[pl.Series, pl.Series]:
    frame = pl.DataFrame({"s": start, "e": end}).select(
        pl.when((pl.col("e") < pl.col("s")).fill_null(False)).then(pl.lit("period.end_before_start")).alias("r"),
        pl.when((pl.col("e") < pl.col("s")).fill_null(False)).then(pl.concat_str([
            pl.lit(f"{what} ends "), pl.col("e").cast(pl.Utf8), pl.lit(" before it starts "),
            pl.col("s").cast(pl.Utf8)])).alias("m"))
    return frame["r"], frame["m"]


@dataclass(frozen=True)
class ExtractFile:
    """What a batch's rows take from their file: its path (relative to the data root) and its header."""

    source_file: str
    header: Header


class BatchJudge:
    """Judges batches of one layout; a batch may hold the records of several small files (`f`, the file's
    position in the list handed to `judge`), so that a file's fixed cost is not one pass per rule."""

    def __init__(self, layout: XmlLayout, allow_synthetic: bool, pseudonymizer: Pseudonymizer):
        self.layout = layout
        self.files: list[ExtractFile] = []
        self.allow_synthetic = allow_synthetic
        self.pseudonymizer = pseudonymizer
        fmt, comma = layout.date_format, layout.decimal_comma
        self.spec = {
            "id_type": ValueSpec("integer", "typeID"), "fid": ValueSpec("identifier", "fid"),
            "user_no": ValueSpec("text", "brukerNr", required=True), "sex": ValueSpec("integer", "kjonn"),
            "birth_year": ValueSpec("integer", "fodselsar"), "district": ValueSpec("text", "bydel"),
            "death_date": ValueSpec("date", "dodsdato", date_format=fmt),
            "household": ValueSpec("integer", "husstand"),
            "start_date": ValueSpec("date", "start date", required=True, date_format=fmt),
            "end_date": ValueSpec("date", "end date", date_format=fmt),
            "service_id": ValueSpec("text", "tjenesteID", required=True),
            "service_code": ValueSpec("service_code", "service code"),
            "decision_date": ValueSpec("date", "decision date", date_format=fmt),
            "provider_org": ValueSpec("org", "organisation number"),
            "hours_per_week": ValueSpec("hours", "hours per week", decimal_comma=comma),
            "from_date": ValueSpec("date", "fraDato", required=True, date_format=fmt),
            "to_date": ValueSpec("date", "tilDato", date_format=fmt),
            "stop_id": ValueSpec("text", "stoppID", required=True),
            "assessment_date": ValueSpec("date", "assessment date", date_format=fmt),
            "system": ValueSpec("text", "system", required=True), "code": ValueSpec("text", "kode", required=True),
            "diagnosis_date": ValueSpec("date", "dato", date_format=fmt),
            "variable_number": ValueSpec("integer", "variable number"), "score": ValueSpec("integer", "score"),
        }

    # --- helpers ---------------------------------------------------------------------------------
    def parse(self, frame: pl.DataFrame, source: str, spec: str, strip: bool = False) -> column.Parsed:
        text = frame[source] if source in frame.columns else pl.Series([None] * frame.height, dtype=pl.Utf8)
        return column.parse(self.spec[spec], text.str.strip_chars() if strip else text)

    def parse_all(self, frame: pl.DataFrame, fields: list[tuple[str, str]], strip: tuple[str, ...] = ()
                  ) -> dict[str, column.Parsed]:
        """Several fields of one frame in one pass: (source column, spec name) -> Parsed by spec name."""
        columns = []
        for source, spec in fields:
            text = frame[source] if source in frame.columns else pl.Series([None] * frame.height, dtype=pl.Utf8)
            columns.append((self.spec[spec], text.str.strip_chars() if spec in strip else text, None))
        return dict(zip([spec for _, spec in fields], column.parse_many(columns), strict=True))

    def prefix(self, frame: pl.DataFrame, extract_date: bool = True) -> list[pl.Series | pl.Expr]:
        """The columns every staged row starts with: its file's path and header, its line and location."""
        def per_file(name: str, value, dtype: pl.DataType) -> pl.Series | pl.Expr:
            if len(self.files) == 1:
                return pl.lit(value(self.files[0]), dtype=dtype).alias(name)
            return frame["f"].replace_strict({i: value(x) for i, x in enumerate(self.files)},
                                             return_dtype=dtype).alias(name)
        columns = [per_file("source_file", lambda x: x.source_file, pl.Utf8), frame["line"].alias("line"),
                   frame["location"].alias("location"), pl.lit(self.layout.version).alias("layout"),
                   per_file("data_year", lambda x: x.header.year, pl.Int32),
                   per_file("unit", lambda x: x.header.unit, pl.Utf8)]
        if extract_date:
            columns.append(per_file("extract_date", lambda x: x.header.extract_date, pl.Date))
        return columns

    @staticmethod
    def raw(batch: Collected, kind: str, index: pl.Series) -> pl.Series:
        return pl.Series([etree.tostring(batch.element(kind, i), encoding="unicode", with_tail=False)
                          for i in index.to_list()], dtype=pl.Utf8)

    # --- the batch -------------------------------------------------------------------------------
    def judge(self, batch: Collected, files: list[ExtractFile]) -> Judged:
        """Judge a batch whose frames carry `f`, the position of their file in `files`."""
        layout = self.layout
        self.files = files
        rejected: list[pl.DataFrame] = []
        people = batch.persons.with_columns(
            pl.concat_str([pl.lit(f"/{layout.root}/{layout.person}["), pl.col("p").cast(pl.Utf8), pl.lit("]")])
            .alias("location"), pl.int_range(pl.len()).alias("e"))
        person_rows, person_ok, identities = self.persons(people)
        bad_people = people.filter(~person_ok)
        if bad_people.height:
            rejected.append(self.reject("person", bad_people.with_columns(
                person_rows["rule"].filter(~person_ok).alias("rule"),
                person_rows["message"].filter(~person_ok).alias("message")), batch))
            rejected.append(self.subtrees(bad_people, person_rows.filter(~person_ok), batch))
        good = people.filter(person_ok).select("e", "location", pl.lit(0).alias("_")).join(
            person_rows.filter(person_ok).select("e", "user_no", "person_key"), on="e")
        staged = {"iplos_persons": person_rows.filter(person_ok).drop("e", "rule", "message")}
        services = batch.services.join(good.rename({"e": "p", "location": "person_path"}).drop("_"), on="p")
        staged["iplos_services"], stops_of_good, bad_stop_parents = self.services(services, batch, rejected)
        staged["iplos_stops"] = self.stops(stops_of_good, batch, rejected, bad_stop_parents)
        assessments = batch.assessments.join(good.rename({"e": "p", "location": "person_path"}).drop("_"), on="p")
        staged["iplos_assessments"], assessments_staged = self.assessments(assessments, batch, rejected)
        diagnoses = batch.diagnoses.join(good.rename({"e": "p", "location": "person_path"}).drop("_"), on="p")
        staged["iplos_diagnoses"] = self.diagnoses(diagnoses, batch, rejected)
        frames = [r for r in rejected if r.height]
        out = pl.concat(frames) if frames else pl.DataFrame(schema=_REJECTED)
        return Judged(staged, assessments_staged, out, identities, good["e"])

    def reject(self, kind: str, frame: pl.DataFrame, batch: Collected, index: str = "e") -> pl.DataFrame:
        return pl.DataFrame({"f": frame["f"], "kind": [kind] * frame.height, "line": frame["line"],
                             "location": frame["location"],
                             "rule_id": frame["rule"], "message": frame["message"],
                             "raw_value": self.raw(batch, kind, frame[index])}, schema=_REJECTED)

    def persons(self, people: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
        parsed = self.parse_all(people, [(n, n) for n in ("id_type", "fid", "user_no", "sex", "birth_year",
                                                              "district", "death_date", "household")])
        declared = parsed["id_type"].values
        identity = persons.check(parsed["fid"].values, declared, self.allow_synthetic)
        checks = [(parsed["id_type"].rule, parsed["id_type"].message), (identity["rule"], identity["message"])]
        checks += [(parsed[n].rule, parsed[n].message) for n in
                   ("user_no", "sex", "birth_year", "death_date", "household")]
        first = _first_error(checks, people.height)
        ok = first["rule"].is_null()
        keys = persons.pseudonyms(parsed["fid"].values, self.pseudonymizer)
        rows = people.select("e", *self.prefix(people)).with_columns(
            parsed["user_no"].values.alias("user_no"), keys.alias("person_key"), identity["id_type"].alias("id_type"),
            parsed["sex"].values.alias("sex"), parsed["birth_year"].values.alias("birth_year"),
            parsed["district"].values.alias("district"), parsed["death_date"].values.alias("death_date"),
            parsed["household"].values.alias("household"), first["rule"].alias("rule"),
            first["message"].alias("message"))
        identities = pl.DataFrame({"f": people["f"], "person_key": keys, "fid": parsed["fid"].values,
                                   "id_type": identity["id_type"]}).filter(ok)
        return rows, ok, identities

    def subtrees(self, bad: pl.DataFrame, judged: pl.DataFrame, batch: Collected) -> pl.DataFrame:
        """Every record below a quarantined person, each with its own line and a `//Tag[n]` path."""
        layout = self.layout
        kinds = {layout.q(layout.service): "service", layout.q(layout.assessment): "assessment"}
        if layout.stop:
            kinds[layout.q(layout.stop)] = "stop"
        if layout.diagnosis:
            kinds[layout.q(layout.diagnosis)] = "diagnosis"
        rows = []
        for f, e, path, rule in zip(bad["f"].to_list(), bad["e"].to_list(), bad["location"].to_list(),
                                    judged["rule"].to_list(), strict=True):
            message = f"belongs to a person quarantined for {rule}"
            counters: dict[str, int] = {}
            person = batch.person_elements[e]
            for child in person.iter():
                if child is person or not isinstance(child.tag, str) or child.tag not in kinds:
                    continue
                local = etree.QName(child).localname
                counters[local] = counters.get(local, 0) + 1
                rows.append((f, kinds[child.tag], child.sourceline, f"{path}//{local}[{counters[local]}]",
                             "id.parent_quarantined", message,
                             etree.tostring(child, encoding="unicode", with_tail=False)))
        return pl.DataFrame(rows, schema=_REJECTED, orient="row")

    def services(self, services: pl.DataFrame, batch: Collected, rejected: list
                 ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        layout = self.layout
        services = services.with_columns(pl.concat_str([pl.col("person_path"), pl.lit(f"/{layout.service}["),
                                                        pl.col("i").cast(pl.Utf8), pl.lit("]")]).alias("location"))
        names = ["start_date", "end_date", *(["service_id"] if layout.version != "3.6" else []), "service_code",
                 "decision_date", "provider_org", "hours_per_week"]
        parsed = self.parse_all(services, [(n, n) for n in names], strip=("start_date",))
        start, end = parsed.pop("start_date"), parsed.pop("end_date")
        service_id = parsed.pop("service_id", None)
        checks = [(start.rule, start.message), (end.rule, end.message), _period(start.values, end.values, "service")]
        if service_id is not None:
            checks.append((service_id.rule, service_id.message))
        checks += [(p.rule, p.message) for p in parsed.values()]
        first = _first_error(checks, services.height)
        ok = first["rule"].is_null()
        judged = services.with_columns(first["rule"].alias("rule"), first["message"].alias("message"))
        if (~ok).any():
            rejected.append(self.reject("service", judged.filter(~ok), batch, "s"))
        ids = service_id.values if service_id is not None else pl.Series([None] * services.height, dtype=pl.Utf8)
        rows = services.select(*self.prefix(services)).with_columns(
            services["user_no"], services["person_key"], ids.alias("service_id"),
            parsed["service_code"].values.alias("service_code"), parsed["decision_date"].values.alias("decision_date"),
            start.values.alias("start_date"), end.values.alias("end_date"),
            parsed["provider_org"].values.alias("provider_org"),
            parsed["hours_per_week"].values.alias("hours_per_week"))
        keyed = judged.select("s", "location", "person_key", "rule").with_columns(ids.alias("service_id"))
        stops = batch.stops.join(keyed.rename({"location": "service_path"}), on="s")
        return rows.filter(ok), stops.filter(pl.col("rule").is_null()), stops.filter(pl.col("rule").is_not_null())

    def stops(self, stops: pl.DataFrame, batch: Collected, rejected: list, orphans: pl.DataFrame) -> pl.DataFrame:
        layout = self.layout
        if not layout.stop:
            return pl.DataFrame()

        def located(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.with_row_index("x").with_columns(pl.concat_str([
                pl.col("service_path"), pl.lit(f"/{layout.stop}["), pl.col("j").cast(pl.Utf8), pl.lit("]")])
                .alias("location"))
        stop_index = self._stop_index(batch)
        if orphans.height:
            orphans = located(orphans).join(stop_index, on=["s", "j"])
            rejected.append(self.reject("stop", orphans.with_columns(
                pl.lit("record.parent_quarantined").alias("rule"),
                pl.concat_str([pl.lit("belongs to a service quarantined for "), pl.col("rule")]).alias("message")),
                batch, "n"))
        stops = located(stops.drop("rule")).join(stop_index, on=["s", "j"])
        parsed = self.parse_all(stops, [("from_date", "from_date"), ("to_date", "to_date"), ("stop_id", "stop_id")],
                                strip=("from_date",))
        start, end, stop_id = parsed["from_date"], parsed["to_date"], parsed["stop_id"]
        first = _first_error([(start.rule, start.message), (end.rule, end.message),
                              _period(start.values, end.values, "stop"), (stop_id.rule, stop_id.message)],
                             stops.height)
        ok = first["rule"].is_null()
        if (~ok).any():
            rejected.append(self.reject("stop", stops.with_columns(*first.get_columns()).filter(~ok),
                                        batch, "n"))
        rows = stops.select(*self.prefix(stops)).with_columns(
            stops["person_key"], stops["service_id"], stop_id.values.alias("stop_id"),
            start.values.alias("from_date"), end.values.alias("to_date"))
        return rows.filter(ok)

    @staticmethod
    def _stop_index(batch: Collected) -> pl.DataFrame:
        """(service, stop number) -> the stop's position among the batch's stop elements."""
        return batch.stops.select("s", "j").with_row_index("n").with_columns(pl.col("n").cast(pl.Int64))

    def assessments(self, frame: pl.DataFrame, batch: Collected, rejected: list) -> tuple[pl.DataFrame, int]:
        layout = self.layout
        frame = frame.with_columns(pl.concat_str([pl.col("person_path"), pl.lit(f"/{layout.assessment}["),
                                                  pl.col("i").cast(pl.Utf8), pl.lit("]")]).alias("location"))
        date = self.parse(frame, "date", "assessment_date")
        scores = batch.scores.join(frame.select("a"), on="a", how="semi")
        names = function_variables()
        fields = [("value", "score"), *([("variable", "variable_number")] if layout.score_variable_is_number else [])]
        parsed_scores = self.parse_all(scores, fields)
        number, score = parsed_scores.get("variable_number"), parsed_scores["score"]
        if number is not None:
            variable = number.values.replace_strict(names, default=None, return_dtype=pl.Utf8)
            var_rule = pl.select(pl.when(number.rule.is_not_null()).then(number.rule)
                                 .when(variable.is_null()).then(pl.lit("code.unknown_value"))).to_series()
            unknown = number.rule.is_null() & variable.is_null()
            var_msg = pl.select(pl.when(number.rule.is_not_null()).then(number.message).when(variable.is_null())
                                .then(pl.concat_str([pl.lit("function variable number "),
                                                     _reprs(scores["variable"], unknown), pl.lit(" unknown")])
                                      )).to_series()
        else:
            variable = scores["variable"]
            unknown = ~variable.is_in(list(names.values())).fill_null(False)
            var_rule = pl.select(pl.when(unknown).then(pl.lit("code.unknown_value"))).to_series()
            var_msg = pl.select(pl.when(unknown).then(pl.concat_str([
                pl.lit("function variable "), _reprs(variable, unknown), pl.lit(" unknown")]))).to_series()
        bad_score = ~score.values.is_in(VALID_SCORES).fill_null(False) & score.rule.is_null()
        score_msg = pl.select(pl.when(bad_score).then(pl.concat_str([
            pl.lit("score "), score.values.cast(pl.Utf8).fill_null("None"), pl.lit(" of "), variable.fill_null("None"),
            pl.lit(" not in 1-5 or 9")]))).to_series()
        per_score = _first_error([(var_rule, var_msg), (score.rule, score.message),
                                  (pl.select(pl.when(bad_score).then(pl.lit("code.unknown_value"))).to_series(),
                                   score_msg)], scores.height)
        scored = scores.with_columns(*per_score.get_columns(), variable.alias("variable_name"),
                                     score.values.alias("score"))
        first_bad = (scored.filter(pl.col("rule").is_not_null()).sort("a", "k").group_by("a", maintain_order=True)
                     .first().select("a", pl.col("rule").alias("score_rule"), pl.col("message").alias("score_msg")))
        counts = scores.group_by("a").len()
        frame = frame.join(first_bad, on="a", how="left").join(counts, on="a", how="left")
        none = frame["len"].is_null()
        first = _first_error([(date.rule, date.message), (frame["score_rule"], frame["score_msg"]),
                              (pl.select(pl.when(none).then(pl.lit("field.missing"))).to_series(),
                               pl.select(pl.when(none).then(pl.lit("function assessment without scores")))
                               .to_series())], frame.height)
        ok = first["rule"].is_null()
        if (~ok).any():
            rejected.append(self.reject("assessment", frame.with_columns(*first.get_columns()).filter(~ok),
                                        batch, "a"))
        good = frame.with_columns(date.values.alias("assessment_date")).filter(ok)
        rows = (scored.join(good.select("a", "line", "location", "person_key", "assessment_date"), on="a")
                .sort("a", "k"))
        out = rows.select(*self.prefix(rows, extract_date=False), "person_key", "assessment_date",
                          pl.col("variable_name").alias("variable"), "score")
        return out, dict(good.group_by("f").len().iter_rows())

    def diagnoses(self, frame: pl.DataFrame, batch: Collected, rejected: list) -> pl.DataFrame:
        layout = self.layout
        if not layout.diagnosis:
            return pl.DataFrame()
        frame = frame.with_columns(pl.concat_str([pl.col("person_path"), pl.lit(f"/{layout.diagnosis}["),
                                                  pl.col("i").cast(pl.Utf8), pl.lit("]")]).alias("location"))
        parsed = self.parse_all(frame, [("system", "system"), ("code", "code"), ("diagnosis_date", "diagnosis_date")])
        date = parsed["diagnosis_date"]
        first = _first_error([(parsed["system"].rule, parsed["system"].message),
                              (parsed["code"].rule, parsed["code"].message), (date.rule, date.message)], frame.height)
        ok = first["rule"].is_null()
        if (~ok).any():
            rejected.append(self.reject("diagnosis", frame.with_columns(*first.get_columns()).filter(~ok),
                                        batch, "d"))
        rows = frame.select(*self.prefix(frame, extract_date=False)).with_columns(
            frame["person_key"], parsed["system"].values.alias("system"), parsed["code"].values.alias("code"),
            date.values.alias("diagnosis_date"))
        return rows.filter(ok)


def _reprs(values: pl.Series, where: pl.Series) -> pl.Series:
    """Python's repr of each value where `where` holds (null elsewhere): only a message's rows pay for it."""
    out = pl.Series([None] * len(values), dtype=pl.Utf8)
    rows = where.fill_null(False).arg_true()
    if len(rows):
        out = out.scatter(rows, pl.Series([repr(v) for v in values.gather(rows).to_list()], dtype=pl.Utf8))
    return out


_REJECTED = {"f": pl.Int64, "kind": pl.Utf8, "line": pl.Int64, "location": pl.Utf8, "rule_id": pl.Utf8,
             "message": pl.Utf8, "raw_value": pl.Utf8}
