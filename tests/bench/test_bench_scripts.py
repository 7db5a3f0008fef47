"""The benchmarks of BENCHMARKS.md run as the commands they are, at a tiny size: each script starts its own
processes (sandboxes, `crossdock serve`, workers, wrk), and its JSON must carry the figures with sane values:
nothing lost, every edit stored, no duplicate label or fulfillment. No speed is asserted; the figures themselves
come from the full runs (BENCHMARKS.md)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parents[2] / "bench"
POSTGRES_URL = os.environ.get("CROSSDOCK_TEST_POSTGRES_URL")


def run_bench(script: str, *args: str, timeout_s: float = 240.0) -> Any:
    """Run bench/<script> with --json in a process of its own; the JSON printed after its table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK_")}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
    assert done.returncode == 0, (
        f"{script} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    out = done.stdout
    start = min(i for i in (out.find("\n{"), out.find("\n[")) if i >= 0)
    return json.loads(out[start:])


def _bench_database(name: str) -> str:
    """A database of the benchmark's own on the test server (the scripts drop and create it; "bench" in its name)."""
    assert POSTGRES_URL is not None
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def _check_ingest(result: dict[str, Any], hubs: int) -> None:
    runs = result["runs"]
    bare = [r for r in runs if r["target"] == "bare ASGI"]
    hub = [r for r in runs if r["target"].startswith("crossdock serve")]
    assert len(bare) == 2 and len(hub) == hubs
    assert result["bare_rate"] > 0
    for r in runs:
        assert r["ok"] > 0 and r["ok"] == r["requests"], r
        assert r["errors_total"] == 0, r
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"], r
        assert r["ratio"] > 0
    for r in hub:
        # Every acknowledged webhook is in the inbox once, as an original.
        assert r["lost"] == 0, r
        assert r["stored"] == r["acked"] == r["ok"], r
        assert r["inbox_duplicates"] == 0, r
        assert r["inbox_rows"] >= r["stored"]
        assert r["server_cpu_s"] > 0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
@pytest.mark.parametrize("processes", [1, 2])
def test_webhook_ingest_acknowledges_only_what_it_stored(processes: int) -> None:
    # With two server processes, two inbox writers share the SQLite file.
    result = run_bench(
        *("webhook_ingest.py", "--seconds", "1", "--warmup", "1", "--connections", "4", "--no-postgres"),
        *("--processes", str(processes)),
    )
    assert result["processes"] == processes
    _check_ingest(result, hubs=1)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_webhook_ingest_on_postgres() -> None:
    url = _bench_database("crossdock_ingest_smoke_bench")
    result = run_bench("webhook_ingest.py", "--seconds", "1", "--warmup", "1", "--database-url", url)
    _check_ingest(result, hubs=2)


def test_statements_times_each_against_its_baseline() -> None:
    result = run_bench("statements.py", "--loops", "30")
    assert result["database"] == "SQLite" and result["loops"] == 30
    names = {"baseline: SELECT 1", "claim + success", "empty claim", "rate-limit slot", "remote-call record"}
    assert set(result["ms"]) == set(result["ratio"]) == names
    assert all(ms > 0 for ms in result["ms"].values())
    assert result["ratio"]["baseline: SELECT 1"] == 1.0
    assert (
        result["ratio"]["claim + success"]
        == result["ms"]["claim + success"] / result["ms"]["baseline: SELECT 1"]
    )


@pytest.mark.parametrize("rtt_ms", ["0", "20"])
def test_remote_connections_opens_one_connection_per_job_only_when_each_job_has_its_own(rtt_ms: str) -> None:
    result = run_bench("remote_connections.py", "--jobs", "8", "--rounds", "2", "--rtt-ms", rtt_ms)
    assert result["jobs"] == 8 and result["rtt_ms"] == float(rtt_ms) and result["calls_per_job"] == 2
    # Counted by the server: a TCP connection per job with a pool of the job's own, none once one is kept alive
    # (the rounds are short, well within the kept connection's 4 s).
    assert result["own"]["connections_per_job"] == 1.0
    assert result["shared"]["connections_per_job"] == 0.0
    # The server's CPU is read in clock ticks (10 ms): 0 for so few jobs is fine.
    for way in ("own", "shared"):
        assert result[way]["wall_ms_per_job"] > 0 and result[way]["client_cpu_ms_per_job"] > 0
        assert result[way]["server_cpu_ms_per_job"] >= 0
    if rtt_ms != "0":  # through the relay every job waits at least its two calls' round trips
        assert result["shared"]["wall_ms_per_job"] >= 2 * 20


def test_incremental_sync_stores_every_edit() -> None:
    result = run_bench("incremental_sync.py", "--orders", "300", "--changes", "20")
    full, incremental = result["full"], result["incremental"]
    assert full["created"] == full["orders"] == 300
    assert result["changes"] == 20
    assert incremental["edits_found"] == incremental["edits_landed"] == 20
    assert incremental["created"] == 0 and incremental["invalid"] == 0
    assert incremental["updated"] >= 20
    assert incremental["read"] >= 20
    assert incremental["window_since"] < incremental["watermark_before"]
    assert result["ratio"] == incremental["seconds"] / full["seconds"] > 0


@pytest.mark.slow
def test_end_to_end_ships_every_order_once() -> None:
    runs = run_bench(
        "end_to_end.py",
        "--workers",
        "1",
        "--rate",
        "5",
        "--seconds",
        "2",
        "--backends",
        "sqlite",
        "--drain",
        "120",
    )
    (run,) = runs
    assert run["placed"] == 10
    assert run["done"] == run["placed"] and run["not_done"] == 0
    assert run["duplicate_labels"] == 0 and run["duplicate_fulfillments"] == 0
    assert run["tracking_mismatched"] == 0
    assert run["labels_max_per_order"] >= 1 and run["fulfillments_max_per_order"] >= 1
    assert run["dead_jobs"] == 0 and run["quarantined"] == 0
    assert 0 < run["p50_s"] <= run["p99_s"] <= run["max_s"] < math.inf
    assert run["throughput"] > 0
    # Every order went through every step, each after the one before; a step is part of an order's way, so no
    # step's median exceeds the longest way (seconds, as the latencies).
    steps = run["step_p50_s"]
    assert list(steps) == ["stored", "imported", "planned", "label", "pushed"]
    assert all(0 <= seconds <= run["max_s"] for seconds in steps.values()), (steps, run["max_s"])
