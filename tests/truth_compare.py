"""Measuring a reconstruction against the generator's ground truth.

For every reporting municipality and every day on which all its units are covered by
a source, the set of (person, service code) active per the reconstruction must equal
the truth. Both sides are expanded to days in DuckDB and compared with EXCEPT.

Layout 3.6 (2017-2018) carries no temporary stops, so on days a 3.6 extract is the
authority a stopped service is indistinguishable from an active one: on those days
both sides are compared on allocation (active or stopped), everywhere else on the
active state itself. The same holds for a service no EPJ export holds on days an EPJ is
the authority (a split unit's record placed by the default or by continuation, on days the
EPJ of another piece of the unit covers it): its stops come from no authoritative source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.core import duck
from transforms.privacy.identity import Pseudonymizer
from transforms.privacy.keys import load_keys


@dataclass(frozen=True)
class Agreement:
    compared_days: int
    truth_rows: int
    reconstructed_rows: int
    n_missing: int  # (kommune, day, person, code) in the truth, not reconstructed
    n_extra: int  # reconstructed, not in the truth
    missing: pl.DataFrame  # a sample of each, for messages
    extra: pl.DataFrame

    @property
    def agreement(self) -> float:
        return 1.0 - (self.n_missing + self.n_extra) / max(self.truth_rows, 1)


EXPAND = """
SELECT c.kommune, c.day, e.person_key, e.service_code
FROM {episodes} e
JOIN covered_days c ON c.kommune = e.kommune AND c.day BETWEEN e.start_date AND coalesce(e.end_date, DATE '9999-12-31')
WHERE ({ignore_stops_on_36} AND (c.layout_36 OR (c.any_epj AND NOT e.in_epj)))
   OR NOT EXISTS (SELECT 1 FROM {stops} s WHERE s.episode_id = e.episode_id
                  AND c.day BETWEEN s.from_date AND coalesce(s.to_date, DATE '9999-12-31'))
"""


def compare_with_truth(root: Path, key_file: Path | None = None, sample: int = 50, every_nth_day: int = 1,
                       kommuner: list[str] | None = None) -> Agreement:
    """`every_nth_day` > 1 compares a regular sample of days (for the large scales); `kommuner` only those."""
    keys = load_keys(key_file)
    pseudonym = Pseudonymizer(keys.pseudonym_key)
    truth = pl.read_parquet(root / "truth" / "episodes.parquet")
    truth = truth.with_columns(
        person_key=pl.col("fid").map_elements(pseudonym, return_dtype=pl.Utf8),
        episode_id=pl.col("truth_episode_id").cast(pl.Utf8),
        kommune=pl.col("reporting_kommune"),
        in_epj=pl.col("epj_ids").list.len() > 0,
    ).select("episode_id", "kommune", "person_key", pl.col("service_code").cast(pl.Utf8), "start_date", "end_date",
             "in_epj")
    # a person whose D-nummer was replaced later is the truth's one person under the final number; a service
    # that only sources from before the replacement held (an extract of a service ended before it, with no
    # later record of the same user number) is reconstructed under the D-nummer, as the sources knew it
    previous = pl.read_parquet(root / "truth" / "persons.parquet").select("fid", "previous_ids").explode(
        "previous_ids", empty_as_null=True).drop_nulls()
    aliases = {pseudonym(old): pseudonym(new) for new, old in previous.iter_rows()}
    truth_stops = pl.read_parquet(root / "truth" / "stops.parquet").select(
        pl.col("truth_episode_id").cast(pl.Utf8).alias("episode_id"), "from_date", "to_date")
    with duck.connect() as con:
        con.register("truth_episodes", truth.to_arrow())
        con.register("truth_stops", truth_stops.to_arrow())
        tl = root / "timeline"
        con.register("aliases", pl.DataFrame({"alias": list(aliases), "person": list(aliases.values())},
                                              schema={"alias": pl.Utf8, "person": pl.Utf8}).to_arrow())
        con.execute(f"CREATE VIEW rec_episodes AS SELECT e.* REPLACE (coalesce(a.person, e.person_key) AS person_key), "
                    "list_bool_or([r LIKE 'epj:%' FOR r IN e.records]) AS in_epj "
                    f"FROM read_parquet('{tl / 'episodes.parquet'}') e LEFT JOIN aliases a ON a.alias = e.person_key")
        con.execute(f"CREATE VIEW rec_stops AS SELECT * FROM read_parquet('{tl / 'stops.parquet'}')")
        con.execute(f"""
            CREATE TABLE covered_days AS
            SELECT kommune, day, bool_or(source IN ('iplos:2017', 'iplos:2018')) AS layout_36,
                   bool_or(source LIKE 'epj:%') AS any_epj
            FROM read_parquet('{tl / 'coverage.parquet'}')
            WHERE (day - DATE '2017-01-01') % {every_nth_day} = 0
              AND ({kommuner is None} OR kommune IN (SELECT unnest($kommuner)))
            GROUP BY kommune, day HAVING bool_and(source <> 'gap')""", {"kommuner": kommuner or []})
        for table, source in (("t", "truth"), ("r", "rec")):
            expand = EXPAND.format(episodes=f"{source}_episodes", stops=f"{source}_stops", ignore_stops_on_36="TRUE")
            con.execute(f"CREATE TABLE {table} AS {expand}")
        # each difference computed once: the day-level tables are tens of millions of rows at `small` scale
        con.execute("CREATE TABLE missing AS SELECT * FROM t EXCEPT ALL SELECT * FROM r")
        con.execute("CREATE TABLE extra AS SELECT * FROM r EXCEPT ALL SELECT * FROM t")
        missing = con.execute(f"SELECT * FROM missing ORDER BY ALL LIMIT {sample}").pl()
        extra = con.execute(f"SELECT * FROM extra ORDER BY ALL LIMIT {sample}").pl()
        n_missing = con.execute("SELECT count(*) FROM missing").fetchone()[0]
        n_extra = con.execute("SELECT count(*) FROM extra").fetchone()[0]
        days = con.execute("SELECT count(*) FROM covered_days").fetchone()[0]
        truth_rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        rec_rows = con.execute("SELECT count(*) FROM r").fetchone()[0]
    return Agreement(days, truth_rows, rec_rows, n_missing, n_extra, missing, extra)
