"""Person identifiers over a whole column: check digits, type, birth date and the synthetic range.

`check` decides the identifiers whose digits it can judge without doubt (11-digit birth numbers,
12-digit DUF numbers and identifiers of other declared kinds) and sends every other one to
`transforms.privacy.identity.check_identifier`, the reference, for its rule and message. Pseudonyms
are keyed hashes, computed once per distinct identifier.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from transforms.privacy.identity import (
    TYPE_DNR,
    TYPE_DUF,
    TYPE_FNR,
    TYPE_HNR,
    Pseudonymizer,
    check_identifier,
)
from transforms.reference.codes import person_id_types

_FNR_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_FNR_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_DUF_W = (4, 6, 3, 2, 4, 6, 3, 2, 7, 5)


def _digit(i: int) -> pl.Expr:
    return pl.col("n").str.slice(i, 1).cast(pl.Int32, strict=False)


def _weighted(weights: tuple[int, ...]) -> pl.Expr:
    return pl.sum_horizontal([w * _digit(i) for i, w in enumerate(weights)])


def _birth_number_ok(allow_synthetic: bool) -> tuple[pl.Expr, pl.Expr]:
    """(usable, id type) of 11-digit numbers, by the rules of `check_identifier` and stdnum."""
    day, month, year2, individual = (pl.col("n").str.slice(a, b).cast(pl.Int32, strict=False)
                                     for a, b in ((0, 2), (2, 2), (4, 2), (6, 3)))
    synthetic = month > 80
    month = pl.when(synthetic).then(month - 80).otherwise(month)
    first = _digit(0)
    id_type = (pl.when((first >= 4) & (first <= 7)).then(TYPE_DNR)
               .when(month > 40).then(TYPE_HNR).otherwise(TYPE_FNR))
    k1 = (11 - _weighted(_FNR_W1)) % 11
    k2 = (11 - _weighted(_FNR_W2)) % 11
    digits_ok = (k1 == _digit(9)) & (k2 == _digit(10))
    born_day = pl.when(day > 40).then(day - 40).otherwise(day)
    born_month = pl.when(month > 40).then(month - 40).otherwise(month)
    century = (pl.when(individual < 500).then(1900)
               .when((individual < 750) & (year2 >= 54)).then(1800)
               .when(year2 < 40).then(2000)
               .when(individual >= 900).then(1900))
    born = pl.concat_str([(century + year2).cast(pl.Utf8), born_month.cast(pl.Utf8).str.zfill(2),
                          born_day.cast(pl.Utf8).str.zfill(2)], separator="-").str.strptime(
        pl.Date, "%Y-%m-%d", strict=False)
    usable = digits_ok & (day < 80) & born.is_not_null() & (born <= dt.date.today())
    if not allow_synthetic:
        usable = usable & ~synthetic
    return usable, id_type


def check(identifier: pl.Series, declared: pl.Series, allow_synthetic: bool) -> pl.DataFrame:
    """Per identifier (as written, without spaces) and declared type (9032, may be null): `rule`,
    `message` (null where usable) and the `id_type` to stage."""
    frame = pl.DataFrame({"n": identifier.cast(pl.Utf8), "d": declared.cast(pl.Int32)})
    birth_ok, birth_type = _birth_number_ok(allow_synthetic)
    eleven = pl.col("n").str.contains(r"^[0-9]{11}$")
    twelve = pl.col("n").str.contains(r"^[0-9]{12}$")
    d = pl.col("d")
    duf = (d.is_null() | (d == TYPE_DUF)) & twelve
    duf_ok = duf & (((_weighted(_DUF_W) % 11).cast(pl.Utf8).str.zfill(2)) == pl.col("n").str.slice(10, 2))
    # another kind of identifier of code list 9032 is reported as it is; a type outside the list is the
    # reference's to refuse (code.unknown_value)
    other_kind = (d.is_not_null() & ~d.is_in([TYPE_FNR, TYPE_DNR, TYPE_HNR, TYPE_DUF])
                  & d.is_in(list(person_id_types())) & (pl.col("n") != "")
                  & (pl.col("n").str.len_chars() != 12))
    birth = (d.is_null() | d.is_in([TYPE_FNR, TYPE_DNR, TYPE_HNR])) & eleven
    # lazily, for common-subexpression elimination: `birth_ok` and `birth_type` share the number's parts
    frame = frame.lazy().with_columns(
        pl.when(duf).then(duf_ok).when(other_kind).then(True).when(birth).then(birth_ok)
        .otherwise(False).fill_null(False).alias("ok"),
        pl.when(duf).then(pl.lit(TYPE_DUF)).when(other_kind).then(d).otherwise(birth_type)
        .cast(pl.Int32).alias("id_type"),
    ).collect()
    undecided = frame.filter(~pl.col("ok")).select("n", "d").unique(maintain_order=True)
    results = [check_identifier(n, d, allow_synthetic) for n, d in undecided.iter_rows()]
    slow = undecided.with_columns(
        pl.Series("rule", [r.rule_id for r in results], dtype=pl.Utf8),
        pl.Series("message", [r.message for r in results], dtype=pl.Utf8),
        pl.Series("slow_type", [r.id_type if r.id_type is not None else d for r, (_, d) in
                                zip(results, undecided.iter_rows(), strict=True)], dtype=pl.Int32),
    )
    joined = frame.join(slow, on=["n", "d"], how="left", nulls_equal=True, maintain_order="left")
    return joined.select(
        pl.when(pl.col("ok")).then(None).otherwise(pl.col("rule")).alias("rule"),
        pl.when(pl.col("ok")).then(None).otherwise(pl.col("message")).alias("message"),
        pl.when(pl.col("ok")).then(pl.col("id_type")).otherwise(pl.col("slow_type"))
        .fill_null(9).cast(pl.Int32).alias("id_type"),
    )


def pseudonyms(identifiers: pl.Series, pseudonymizer: Pseudonymizer) -> pl.Series:
    """The keyed pseudonym of each identifier, computed once per distinct value."""
    distinct = identifiers.drop_nulls().unique()
    keys = pl.Series(pseudonymizer.many(distinct.to_list()), dtype=pl.Utf8)
    return identifiers.replace_strict(distinct, keys, default=None, return_dtype=pl.Utf8)
