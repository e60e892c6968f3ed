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
