"""The packed integer keys of the episode rules order records exactly as the spec's ORDER BY does."""

import datetime as dt
import random

import duckdb
import pytest

from transforms.timeline.episodes import ID_KEY, LATEST_KEY, START_KEY, check_record_count

D = dt.date


def _parts(rng: random.Random, n: int, first: D, last: D) -> list[tuple]:
    """Records of one episode with few distinct values per field, so that ties reach every later field."""
    days = [first + dt.timedelta(days=rng.randrange((last - first).days + 1)) for _ in range(4)] + [None]
    rows = []
    for rid in rng.sample(range(1 << 20), n):
        kind = rng.choice(["epj", "i37", "i36"])
        precedence = {"epj": 1, "i37": 2, "i36": 3}[kind]
        rows.append((rid, kind, precedence, rng.choice(days) if kind == "epj" else None,
                     rng.choice([2017, 2019, None]) if kind != "epj" else None, rng.choice(days),
                     rng.choice(days), rng.random() < 0.3))
    return rows


ORDERS = {
    "ID_KEY": (ID_KEY, "precedence, CASE WHEN kind = 'epj' THEN system_active_from END NULLS LAST, "
                       "first_year NULLS LAST, start_date NULLS LAST, rid"),
    "START_KEY": (START_KEY, "continuation, precedence, start_date NULLS LAST, rid"),
    "LATEST_KEY": (LATEST_KEY, "last_covered DESC NULLS LAST, precedence, rid"),
}


@pytest.mark.parametrize("name", sorted(ORDERS))
@pytest.mark.parametrize("span", [(D(1990, 1, 1), D(2030, 12, 31)), (D(1900, 1, 1), D(2258, 11, 10))])
def test_a_packed_key_orders_records_as_its_order_by(name, span):
    packed, order = ORDERS[name]
    rng = random.Random(f"{name}{span}")
    con = duckdb.connect()
    con.execute("CREATE TABLE parts (rid BIGINT, kind VARCHAR, precedence INTEGER, system_active_from DATE, "
                "first_year INTEGER, start_date DATE, last_covered DATE, continuation BOOLEAN)")
    con.executemany("INSERT INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _parts(rng, 400, *span))
    by_key = [r[0] for r in con.execute(f"SELECT rid FROM parts ORDER BY {packed}").fetchall()]
    by_spec = [r[0] for r in con.execute(f"SELECT rid FROM parts ORDER BY {order}").fetchall()]
    assert by_key == by_spec
    assert con.execute(f"SELECT typeof({packed}) FROM parts LIMIT 1").fetchone()[0] == "BIGINT"


def test_the_reporting_id_key_takes_dates_beyond_its_range_as_its_ends():
    con = duckdb.connect()
    rows = [(1, D(1850, 1, 1)), (2, D(1899, 12, 31)), (3, D(1900, 1, 2)), (4, D(2300, 1, 1))]
    con.execute("CREATE TABLE parts (rid BIGINT, start_date DATE)")
    con.executemany("INSERT INTO parts VALUES (?, ?)", rows)
    picked = con.execute(f"""SELECT rid FROM (SELECT *, 'i37' AS kind, 2 AS precedence, NULL::DATE AS
        system_active_from, 2019 AS first_year FROM parts) ORDER BY {ID_KEY}""").fetchall()
    # 1850 and 1899 both count as 1900-01-01, so record order decides between them; both precede 1900-01-02
    assert [r[0] for r in picked] == [1, 2, 3, 4]


def test_a_batch_with_more_records_than_the_keys_can_order_is_refused():
    check_record_count((1 << 24) - 1)
    with pytest.raises(ValueError, match="rows_per_batch"):
        check_record_count(1 << 24)
