"""Smoke test of `bench/gossip.py`: a quick run prints every figure as JSON.

Only what a quick run shows reliably is asserted: the figures are there, the real-lab slots
are left empty, and a catch-up costs at most 1.3 × the bytes it missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gossip.py"


def test_quick_bench_prints_every_figure_and_leaves_the_lab_slots_empty() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", "--nodes", "50", "--no-lab"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for name in (
        "sim_50_rounds_all",
        "sim_50_seconds_all",
        "sim_false_suspicions_10pct_loss",
        "sim_false_deaths_10pct_loss",
        "sim_distinct_false_suspicions_10pct_loss",
        "sim_reliable_bytes_per_node_s_10pct_loss",
        "idle_bytes_per_s_100_objects",
        "idle_bytes_per_s_10k_objects",
        "catchup_bytes_ratio",
    ):
        assert isinstance(report[name], int | float) and report[name] >= 0, name
    assert report["sim_50_rounds_all"] > 0 and report["idle_bytes_per_s_100_objects"] > 0
    assert report["mesh_visible_ms_p50"] is None and report["mesh_visible_ms_p99"] is None
    assert 1.0 <= report["catchup_bytes_ratio"] <= 1.3
