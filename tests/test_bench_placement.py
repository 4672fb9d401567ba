"""Smoke test of `bench/placement.py`: a quick run prints every figure as JSON.

No timing is asserted (the numbers of a `--quick` run mean nothing); the spread is, loosely.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "placement.py"


def test_quick_bench_prints_every_figure_as_positive_json() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for name in (
        "place_100_nodes_1k_pods_ms",
        "place_10_nodes_100_pods_ms",
        "place_100_nodes_1k_pods_steady_ms",
        "sort_1k_pods_ms",
        "max_pods_per_node_ratio",
        "sim_split_duplicates",
        "sim_split_duplicate_pod_s",
        "sim_heal_converge_s",
    ):
        assert isinstance(report[name], int | float) and report[name] > 0, name
    assert 1.0 <= report["max_pods_per_node_ratio"] <= 3.0
    assert report["sim_split_duplicates"] <= report["sim_split_minority_pods"]
    assert report["quick"] is True and report["sizes"]["placed"] > 0
    # The real-lab figures (root here; CI runs as root).
    for name in ("detect_dead_s", "detect_dead_all_s", "replacement_start_s", "pod_start_s"):
        assert isinstance(report[name], int | float) and report[name] > 0, name
    assert report["detect_dead_all_s"] >= report["detect_dead_s"]
    assert report["split_duplicates"] >= 1 and report["split_duplicate_s"] > 0
