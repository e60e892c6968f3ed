"""`topup cost`: the arithmetic of the cost model, from a results file as `make bench` writes it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from topup import cost_model

TOPUP = str(Path(sys.executable).parent / "topup")


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "latest.json"
    path.write_text(
        json.dumps(
            {
                "results": {
                    "cost_inputs": {
                        "events_per_request": 1.0,
                        "ingest_record_bytes": 800.0,
                        "ingest_lambda_ms": 0.07,
                        "process_ms_per_event": 0.05,
                        "sessions_per_event": 0.3,
                        "archive_record_bytes": 420.0,
                        "postgres_bytes_per_event": 500.0,
                    }
                }
            }
        )
    )
    return path


def test_cost_command_prints_both_deployments_as_json(results):
    out = subprocess.run(
        [TOPUP, "cost", "--events-per-month", "10000000", "--results", str(results), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    assert report["inputs"]["measured"] is True
    for name in ("default", "cheapest"):
        deployment = report[name]
        total = sum(line["monthly_usd"] for line in deployment["lines"])
        assert deployment["total_monthly_usd"] == pytest.approx(total, abs=0.02)
        assert deployment["total_per_million"] == pytest.approx(
            deployment["total_monthly_usd"] / 10, rel=1e-3
        )
    assert report["cheapest"]["total_per_million"] < report["default"]["total_per_million"]
    assert report["price_per_million"] == 10.0 and report["original_estimate_per_million"] == 1.74


def test_firehose_rounds_every_record_up_to_5_kb(results):
    prices = cost_model.load_prices()
    inputs = cost_model.load_inputs(results)
    default = cost_model.price(1_000_000, inputs, prices, cheapest=False)
    ingest = next(line for line in default.lines if line.item.startswith("ingest stream"))
    expected = 1_000_000 * 5120 / 1024**3 * prices["prices"]["firehose_ingest_gb"]["usd"]
    assert ingest.monthly_usd == pytest.approx(expected, abs=1e-4)
    # Fixed costs do not grow with volume; per event costs do.
    bigger = cost_model.price(100_000_000, inputs, prices, cheapest=False)
    fixed = [line.monthly_usd for line in default.lines if line.fixed]
    assert fixed == [line.monthly_usd for line in bigger.lines if line.fixed]
    assert bigger.total_per_million < default.total_per_million


def test_without_measurements_the_defaults_are_flagged(tmp_path):
    out = subprocess.run(
        [TOPUP, "cost", "--events-per-month", "1000000", "--results", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "defaults, not measured" in out
    assert "Aurora: compute floor" in out and "per million" in out


def test_aurora_io_is_the_wal_in_4_kb_units_and_dashboard_lines_follow_the_views(results):
    prices = cost_model.load_prices()
    inputs = cost_model.load_inputs(results)
    io_price = prices["prices"]["aurora_io_request"]["usd"]

    def lines(usage):
        found = cost_model.price(10_000_000, inputs, prices, cheapest=True, usage=usage)
        return {line.item.split(" (")[0]: line.monthly_usd for line in found.lines}

    usual = lines(cost_model.Usage())
    assert usual["write I/O"] == pytest.approx(
        10_000_000 * inputs.wal_bytes_per_event / 4096 * io_price, abs=1e-4
    )
    idle = lines(cost_model.Usage(views=0, archive_views=0))
    assert idle["compute for 0 dashboard views"] == 0
    assert idle["0 archive dashboard views"] == 0
    doubled = lines(cost_model.Usage(views=600, archive_views=60))
    assert doubled["compute for 600 dashboard views"] == pytest.approx(
        2 * usual["compute for 300 dashboard views"], rel=1e-3
    )


def test_athena_bills_at_least_10_mb_a_query(results):
    prices = cost_model.load_prices()
    inputs = cost_model.load_inputs(results)
    small = cost_model.price(1000, inputs, prices, cheapest=True, usage=cost_model.Usage())
    athena = next(line for line in small.lines if line.service == "Athena")
    minimum = 30 * inputs.archive_overview_queries * 10 * 1024**2
    assert athena.monthly_usd == pytest.approx(
        minimum / 1024**4 * prices["prices"]["athena_tb_scanned"]["usd"], abs=1e-4
    )


def test_cost_command_takes_the_dashboard_views(results):
    out = subprocess.run(
        [TOPUP, "cost", "--events-per-month", "1000000", "--results", str(results),
         "--views-per-month", "1000", "--archive-views-per-month", "0", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["usage"] == {"views": 1000, "archive_views": 0}
    items = [line["item"] for line in report["default"]["lines"]]
    assert any(item.startswith("compute for 1,000 dashboard views") for item in items)


async def test_the_benchmarks_meter_postgres_cpu_and_wal(db):
    """The process and query benchmarks' Aurora inputs: the embedded server's CPU and WAL."""
    from loadtest.pg_usage import Meter

    await db.execute("CREATE TABLE metered (id bigint, body text)")

    async def insert(rows):
        async with Meter(db) as meter:
            await db.execute(
                "INSERT INTO metered SELECT i, repeat('x', 100) FROM generate_series(1, $1) i", rows
            )
        return meter.usage

    small, large = await insert(1_000), await insert(100_000)
    assert small.cpu_s is not None and large.cpu_s is not None and large.cpu_s > 0
    assert 1_000 * 100 < small.wal_bytes < large.wal_bytes
    assert large.wal_bytes > 100_000 * 100


def test_aurora_is_awake_from_each_delivery_until_it_pauses():
    prices = cost_model.load_prices()
    acu_hour = prices["prices"]["aurora_acu_hour"]["usd"]
    assert cost_model.aurora_awake_fraction(900) == pytest.approx((15 + 60 + 300) / 900)
    assert cost_model.aurora_awake_fraction(60) == 1.0  # the default's deliveries never let it
    cheapest = cost_model.price(10_000_000, cost_model.CostInputs(), prices, cheapest=True)
    floor = next(line for line in cheapest.lines if "compute floor" in line.item)
    assert floor.fixed and "awake 42%" in floor.item
    assert floor.monthly_usd == pytest.approx(0.5 * 730 * 375 / 900 * acu_hour, abs=1e-3)


def test_the_cheapest_buffer_delivers_sooner_when_it_fills_and_wakes_aurora_longer():
    prices = cost_model.load_prices()
    inputs = cost_model.CostInputs(ingest_record_bytes=700.0)
    month = 730 * 3600
    # 10M a month: 4 MiB takes longer than 900 s to fill, so a delivery every 900 s.
    assert cost_model.deliveries_per_month(10_000_000, inputs, 900, 4) == month / 900
    # 100M: the buffer fills every ~157 s, and Aurora never gets to pause.
    busy = cost_model.deliveries_per_month(100_000_000, inputs, 900, 4)
    assert busy == pytest.approx(100_000_000 * 700 / 4 / 1024**2)
    cheapest = cost_model.price(100_000_000, inputs, prices, cheapest=True)
    floor = next(line for line in cheapest.lines if "compute floor" in line.item)
    assert "awake 100%" in floor.item


def test_the_cheapest_archive_costs_requests_per_delivery_not_records_per_row():
    prices = cost_model.load_prices()
    p = {name: entry["usd"] for name, entry in prices["prices"].items()}
    inputs = cost_model.CostInputs(archive_files_per_commit=4.0)
    default = cost_model.price(10_000_000, inputs, prices, cheapest=False)
    cheapest = cost_model.price(10_000_000, inputs, prices, cheapest=True)
    assert any(line.item.startswith("archive streams") for line in default.lines)
    assert not any(line.service == "Firehose" and "archive" in line.item for line in cheapest.lines)
    commits = 730 * 3600 / 900 * 2  # a delivery every 900 s, two tables
    appends = next(line for line in cheapest.lines if line.item.startswith("archive appends"))
    assert appends.monthly_usd == pytest.approx(
        commits * (4 * p["s3_put_request"] + 2 * p["s3_get_request"]), abs=1e-4
    )
    glue = next(line for line in cheapest.lines if line.service == "Glue")
    assert glue.monthly_usd == pytest.approx(commits * 2 * p["glue_catalog_request"], abs=1e-4)
