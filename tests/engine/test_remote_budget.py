"""The rate benchmark as a (slow) test: workers sharing a connection against the Shopify sandbox's leaky bucket
use nearly all of the budget and almost never hear 429. Run with --runslow; figures in BENCHMARKS.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "remote_budget.py"


@pytest.mark.slow
async def test_workers_use_the_remotes_budget_without_overshooting() -> None:
    spec = importlib.util.spec_from_file_location("remote_budget", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    result = await bench.run(seconds=10.0, workers=4, leak=10.0, database_url=None)
    assert result["other_errors"] == 0
    assert result["share_429"] < 0.01
    assert result["budget_ratio"] >= 0.9
