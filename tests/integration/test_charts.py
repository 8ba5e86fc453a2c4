"""Charts: valid PNGs of the expected size, identical bytes for identical data, honest empty pictures,
and the assets record them as metadata (inline picture and the path of the full-size file)."""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import struct
import zlib
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets import ingestion, submissions, timeline
from assets.resources import KttResource
from tests.conftest import REPO
from transforms.report import charts
from transforms.report.charts import allocation, coverage, notifications, quarantine
from transforms.report.charts.render import DPI_FILE, DPI_METADATA, WIDTH_IN
from transforms.submit.ledger import SCHEMA_SQL
from transforms.tables import QUARANTINE

D = dt.date
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking each CRC: a truncated or corrupt file fails here."""
    assert png[:8] == PNG_SIGNATURE
    chunks, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, data = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + data) == crc, kind
        chunks.append((kind, data))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    return chunks


def png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png_chunks(png)[0][1][:8])


def assert_clean_png(png: bytes) -> None:
    """Valid, and no text or time chunk (no software version, no creation date: reproducible bytes)."""
    kinds = {kind for kind, _ in png_chunks(png)}
    assert not kinds & {b"tEXt", b"iTXt", b"zTXt", b"tIME"}, kinds


def segments_frame(municipalities: int, gap_every: int = 0) -> pl.DataFrame:
    """Yearly IPLOS then EPJ from 2021; every `gap_every`-th municipality misses 2019."""
    rows = []
    for i in range(municipalities):
        kommune = f"{1000 + i:04d}"
        for year in range(2017, 2026):
            source = f"iplos:{year}" if year < 2021 else f"epj:{kommune}-a"
            if gap_every and i % gap_every == 0 and year == 2019:
                source = "gap"
            rows.append((kommune, kommune, source, D(year, 1, 1), D(year, 12, 31), 365))
    return pl.DataFrame(rows, schema=coverage.SEGMENT_SCHEMA, orient="row")


# ---- the pictures on their own


def test_coverage_chart_is_a_deterministic_png_of_the_expected_size():
    frame = segments_frame(5, gap_every=2)
    first, second = coverage.coverage_charts(frame), coverage.coverage_charts(frame)
    assert first.metadata_png == second.metadata_png and first.file_png == second.file_png
    assert_clean_png(first.metadata_png)
    height_in = coverage.HEADER_IN + 5 * coverage.ROW_IN
    assert png_size(first.metadata_png) == (round(WIDTH_IN * DPI_METADATA), round(height_in * DPI_METADATA))
    assert png_size(first.file_png) == (round(WIDTH_IN * DPI_FILE), round(height_in * DPI_FILE))
    assert first.note == "" and first.shown == first.municipalities == 5


def test_coverage_chart_differs_when_a_gap_appears():
    assert coverage.coverage_png(segments_frame(4)) != coverage.coverage_png(segments_frame(4, gap_every=3))


def test_national_coverage_keeps_the_metadata_chart_modest_and_the_file_complete():
    frame = segments_frame(356, gap_every=10)       # 36 municipalities with a gap
    result = coverage.coverage_charts(frame)
    assert result.municipalities == 356 and result.shown == 36
    assert "36 of 356" in result.note and "full-size" in result.note
    _, height = png_size(result.metadata_png)
    assert height < 40 * coverage.ROW_IN * DPI_METADATA + 400
    assert len(result.metadata_png) < 300_000
    _, file_height = png_size(result.file_png)
    assert file_height >= 356 * coverage.ROW_IN * DPI_FILE       # one row per municipality


def test_coverage_without_gaps_at_national_scale_says_what_it_shows():
    result = coverage.coverage_charts(segments_frame(60))
    assert result.shown == coverage.METADATA_MAX_ROWS and "No municipality has a gap" in result.note


def test_coverage_lanes_for_merged_units():
    """Three units alive together get three lanes; a unit that follows another shares its lane."""
    frame = pl.DataFrame([
        ("3301", "0602", "iplos:2017", D(2017, 1, 1), D(2019, 12, 31), 1095),
        ("3301", "0625", "iplos:2017", D(2017, 1, 1), D(2019, 12, 31), 1095),
        ("3301", "0711", "iplos:2017", D(2017, 1, 1), D(2019, 12, 31), 1095),
        ("3301", "3005", "gap", D(2020, 1, 1), D(2020, 6, 30), 182),
        ("3301", "3005", "epj:a", D(2020, 7, 1), D(2023, 12, 31), 1279),
        ("3301", "3301", "epj:a", D(2024, 1, 1), D(2025, 12, 31), 731),
    ], schema=coverage.SEGMENT_SCHEMA, orient="row")
    lanes = dict(coverage._lanes(frame).select("unit", "lane").iter_rows())
    assert sorted(lanes.values()) == [0, 0, 0, 1, 2]
    assert lanes["3005"] == lanes["3301"] == lanes["0602"]


def test_empty_inputs_give_a_nothing_yet_picture(tmp_path):
    (tmp_path / "staging" / "quarantine").mkdir(parents=True)
    pictures = {
        "coverage": charts.coverage_chart(tmp_path),
        "active": charts.active_users_chart(tmp_path),
        "quarantine": charts.quarantine_chart(tmp_path, "iplos"),
        "notifications": charts.notifications_chart(tmp_path),
    }
    for name, chart in pictures.items():
        assert_clean_png(chart.png)
        assert chart.path.parent == tmp_path / "reports" and chart.path.exists(), name
        assert png_size(chart.png)[0] == round(WIDTH_IN * DPI_METADATA)
        assert png_size(chart.png)[1] < 2 * DPI_METADATA, name       # a small message, not an empty plot
    assert not (tmp_path / "ledger").exists()                       # drawing never creates a ledger


def test_quarantine_counts_by_rule_and_year(tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    pl.DataFrame({
        "source_file": ["raw/iplos/2017/0301.xml"] * 3 + ["raw/iplos/2018/0301.xml", "raw/epj/a/x.csv"],
        "format": ["iplos"] * 4 + ["epj-a-csv"],
        "rule_id": ["id.check_digits", "id.check_digits", "field.missing", "id.check_digits", "org.format"],
    }).write_parquet(folder / "part.parquet")
    counts = quarantine.quarantine_counts(sorted(folder.glob("*.parquet")), "raw/iplos/", by="year")
    counts = counts.sort("rule_id", "part")
    assert counts.rows() == [("field.missing", "2017", 1), ("id.check_digits", "2017", 2),
                             ("id.check_digits", "2018", 1)]
    png = quarantine.quarantine_png(counts, "iplos", by="year")
    assert png == quarantine.quarantine_png(counts, "iplos", by="year")
    assert png != quarantine.quarantine_png(counts.filter(pl.col("part") == "2017"), "iplos", by="year")
    assert png_size(png)[1] > png_size(quarantine.quarantine_png(counts.head(0)))[1]


def test_active_users_average_days_and_count_missing_codes_as_zero(tmp_path):
    daily = tmp_path / "daily"
    for day, rows in {"2017-01-01": [("0301", "15", 10), ("0301", "21", 4), ("1515", "15", 2)],
                      "2017-01-02": [("0301", "15", 14)]}.items():
        (daily / f"day={day}").mkdir(parents=True)
        pl.DataFrame(rows, schema=["kommune", "service_code", "active"], orient="row").with_columns(
            stopped=0, started=0, ended=0).write_parquet(daily / f"day={day}" / "part-0.parquet")
    files = sorted(daily.glob("day=*/*.parquet"))
    frame, unit = allocation.active_per_period(files)
    assert unit == "day"
    assert frame.sort("period", "service_code").rows() == [
        (D(2017, 1, 1), "15", 12.0), (D(2017, 1, 1), "21", 4.0),
        (D(2017, 1, 2), "15", 14.0), (D(2017, 1, 2), "21", 0.0)]
    assert allocation.active_per_period(files, ["1515"])[0]["active"].sum() == 2.0
    assert allocation.period_unit(D(2017, 1, 1), D(2025, 12, 31)) == "month"
    png = allocation.active_users_png(frame, unit)
    assert png == allocation.active_users_png(frame, unit)
    assert png_size(png)[0] == round(WIDTH_IN * DPI_METADATA)


def test_notifications_per_day_from_a_ledger_cut_above_the_initial_load():
    con = duckdb.connect()
    con.execute(SCHEMA_SQL)
    days = [D(2017, 1, 1)] * 500 + [D(2017, 1, 2) + dt.timedelta(days=i % 60) for i in range(300)]
    con.executemany(
        "INSERT INTO notifications VALUES (?, ?, ?, 'p', ?, ?, NULL, 'k', 'h', 'g', 'TjenesteStart', 'r', '15', "
        "?, TIMESTAMPTZ '2017-01-01 00:00:00+00', NULL, NULL, 'pk')",
        [("0301", i, f"guid-{i}", day, "M" if i % 50 == 0 else "N", day) for i, day in enumerate(days)])
    counts = notifications.notification_counts(con)
    assert counts.filter(pl.col("day") == D(2017, 1, 1))["notifications"].sum() == 500
    assert set(counts["status"]) == {"N", "M"}
    figure = notifications.notifications_figure(counts)
    top = figure.axes[0].get_ylim()[1]
    assert top < 50                                              # the axis is cut above the ordinary days
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert any("2017-01-01: 500 (initial load)" in label for label in labels)
    png = notifications.notifications_png(counts)
    assert png == notifications.notifications_png(counts)
    assert_clean_png(png)


# ---- the assets record them


def _image_of(markdown: str) -> bytes:
    match = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:200]
    return base64.b64decode(match.group(1))


def _metadata(result: dg.ExecuteInProcessResult, node: str, asset: str) -> dict:
    found = [m for m in result.asset_materializations_for_node(node) if m.asset_key.to_user_string() == asset]
    assert found, f"no materialisation of {asset}"
    return found[-1].metadata


def _observed(result: dg.ExecuteInProcessResult, asset: str, last_partition: str) -> dict:
    """The chart of an asset run over a range of days: one observation, of the range's last day, and no
    picture in the days' materialisations (a copy in each of 3,287 cost 670 MB of event log)."""
    materialised = [m for m in result.get_asset_materialization_events()
                    if m.asset_key.to_user_string() == asset]
    assert len(materialised) > 1 and not any(
        isinstance(v, dg.MarkdownMetadataValue) for m in materialised for v in m.materialization.metadata.values())
    observed = [e.asset_observation_data.asset_observation for e in result.all_events
                if e.event_type_value == "ASSET_OBSERVATION"
                and e.asset_observation_data.asset_observation.asset_key.to_user_string() == asset]
    assert [o.partition for o in observed] == [last_partition]
    return {**materialised[-1].materialization.metadata, **observed[0].metadata}


def _assert_picture(metadata: dict, key: str) -> bytes:
    assert f"{key}_error" not in metadata, metadata.get(f"{key}_error")
    png = _image_of(metadata[key].value)
    assert_clean_png(png)
    assert len(png) < 300_000
    path = Path(metadata[f"{key}_file"].value)
    assert path.exists() and path.read_bytes()[:8] == PNG_SIGNATURE
    return png


@pytest.fixture(scope="module")
def materialised(demo_root, tmp_path_factory) -> tuple[Path, dict]:
    """The demo world through every asset (a month of days), keeping each run's result."""
    root = tmp_path_factory.mktemp("charts") / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox", "reports"))
    resources = {"ktt": KttResource(data_root=str(root))}
    instance = dg.DagsterInstance.ephemeral()

    def run(assets, first=None, last=None):
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} \
            if first else None
        result = dg.materialize(assets, resources=resources, instance=instance, tags=tags)
        assert result.success
        return result

    results = {
        "iplos": run([ingestion.iplos_extracts], "2017", "2025"),
        "epj": run([ingestion.epj_histories, ingestion.identity_vault, ingestion.municipality_numbers]),
        "timeline": run([timeline.timeline]),
    }
    run([submissions.service_events])
    results["daily"] = run([timeline.daily_allocation], "2017-01-01", "2017-03-31")
    results["submissions"] = run([submissions.daily_submissions], "2017-01-01", "2017-01-31")
    return root, results


def test_assets_record_the_charts_on_the_demo(materialised):
    root, results = materialised
    pictures = {
        "quarantine_iplos": _assert_picture(_metadata(results["iplos"], "iplos_extracts", "iplos_services"),
                                            "quarantined_by_rule_chart"),
        "quarantine_epj": _assert_picture(_metadata(results["epj"], "epj_histories", "epj_service_versions"),
                                          "quarantined_by_rule_chart"),
        "coverage": _assert_picture(_metadata(results["timeline"], "timeline", "coverage"), "coverage_chart"),
        "active_users": _assert_picture(_observed(results["daily"], "daily_allocation", "2017-03-31"),
                                        "active_users_chart"),
        "notifications": _assert_picture(_observed(results["submissions"], "daily_submissions", "2017-01-31"),
                                         "notifications_per_day_chart"),
    }
    assert {p.name for p in (root / "reports").glob("*.png")} == {f"{name}.png" for name in pictures}
    # the demo has quarantined records and notifications: real charts, not the "nothing yet" message
    for name, png in pictures.items():
        assert png_size(png)[1] > 2 * DPI_METADATA, name
    # the metadata picture is the file's picture at a lower resolution
    file_width, _ = png_size((root / "reports" / "coverage.png").read_bytes())
    assert file_width == round(WIDTH_IN * DPI_FILE)


def test_charts_from_the_same_outputs_are_byte_identical(materialised, tmp_path):
    root, results = materialised
    recorded = _image_of(_observed(results["daily"], "daily_allocation", "2017-03-31")["active_users_chart"].value)
    assert charts.active_users_chart(root, out_dir=tmp_path).png == recorded
    assert (tmp_path / "active_users.png").read_bytes() == (root / "reports" / "active_users.png").read_bytes()


def test_a_chart_of_the_same_data_is_taken_from_its_file_not_drawn_again(tmp_path, monkeypatch):
    folder = tmp_path / "staging" / "quarantine"
    folder.mkdir(parents=True)
    frame = pl.DataFrame({"source_file": ["raw/iplos/2017/0301.xml"] * 2, "format": ["iplos"] * 2,
                          "rule_id": ["id.check_digits", "field.missing"]})
    frame.write_parquet(folder / "part.parquet")
    first = charts.quarantine_chart(tmp_path, "iplos")
    drawn = quarantine.quarantine_figure
    monkeypatch.setattr(quarantine, "quarantine_figure", None)  # drawing again would fail
    again = charts.quarantine_chart(tmp_path, "iplos")
    assert again == first and again.path.read_bytes() == first.path.read_bytes()
    monkeypatch.setattr(quarantine, "quarantine_figure", drawn)
    frame.head(1).write_parquet(folder / "part.parquet")  # other data: drawn again
    fewer = charts.quarantine_chart(tmp_path, "iplos")
    assert fewer.png != first.png
    fewer.path.write_bytes(b"edited")  # a file changed by hand is drawn again
    assert charts.quarantine_chart(tmp_path, "iplos") == fewer and fewer.path.read_bytes() != b"edited"


DRAWN_DIGEST = """
import sys
from pathlib import Path
from transforms.report import charts
from transforms.report.charts import quarantine
from transforms.tables import QUARANTINE
counts = quarantine.quarantine_counts(QUARANTINE.files(Path(sys.argv[1])), "raw/iplos/", "year")
print(charts._drawn_digest("quarantine_iplos", (counts, "yearly IPLOS extracts", "year")))
"""


def test_the_drawn_digest_is_of_the_rows_not_their_arrow_buffers(tmp_path):
    """Equal counts made by a group-by in two processes lie in differently laid out Arrow buffers (their IPC
    bytes differed run to run, so the quarantine charts were drawn again every day): the digest is the same."""
    import subprocess
    import sys

    folder = tmp_path / "staging" / "quarantine"
    folder.mkdir(parents=True)
    for i in range(60):
        pl.DataFrame({"source_file": [f"raw/iplos/{2017 + i % 9}/{i:04d}.xml"] * (5 + i), "format": "iplos",
                      "rule_id": [f"rule.number_{j % 7}_with_a_long_name" for j in range(5 + i)]}
                     ).write_parquet(folder / f"part-{i}.parquet")
    digests = {subprocess.run([sys.executable, "-c", DRAWN_DIGEST, str(tmp_path)], capture_output=True, text=True,
                              check=True, cwd=REPO).stdout for _ in range(3)}
    assert len(digests) == 1
    counts = quarantine.quarantine_counts(QUARANTINE.files(tmp_path), "raw/iplos/", "year")
    assert charts._drawn_digest("q", (counts, "x")) != charts._drawn_digest("q", (counts, "y"))
    assert charts._drawn_digest("q", (counts,)) != charts._drawn_digest("q", (counts.head(1),))
