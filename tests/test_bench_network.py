"""`bench/network.py` quick: every figure is printed as JSON, and pod networking meets its
targets beside the hosts' own figures of the same run (pod RTT ≤ 1.3 × host RTT, pod TCP
throughput ≥ 0.8 × host throughput).

On a shared machine one quick run's medians can stray; a run that misses a target is run
once more, and that second run must meet both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from labkit import require_lab

BENCH = Path(__file__).resolve().parent.parent / "bench" / "network.py"
FIGURES = (
    "pod_rtt_us_p50",
    "host_rtt_us_p50",
    "pod_rtt_busy_us_p50",
    "host_rtt_busy_us_p50",
    "pod_tcp_mbps",
    "host_tcp_mbps",
)

pytestmark = [pytest.mark.root, pytest.mark.slow]


def quick_run() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def meets_targets(report: dict[str, Any]) -> bool:
    rtt = float(report["pod_rtt_us_p50"]) <= 1.3 * float(report["host_rtt_us_p50"])
    return rtt and float(report["pod_tcp_mbps"]) >= 0.8 * float(report["host_tcp_mbps"])


def test_quick_bench_prints_every_figure_and_pods_meet_the_targets() -> None:
    require(os.geteuid() == 0, "runs a lab: needs root")
    require_lab()
    for tool in ("ping", "iperf3"):
        require(shutil.which(tool) is not None, f"measures with {tool}: install it (make install)")
    runs = [quick_run()]
    report = runs[0]
    for name in FIGURES:
        assert isinstance(report[name], int | float) and report[name] > 0, name
    assert report["quick"] is True and report["sizes"]["echoes"] > 0
    if not meets_targets(report):
        runs.append(quick_run())
    assert meets_targets(runs[-1]), [
        {k: r[k] for k in (*FIGURES, "pod_rtt_ratio", "pod_tcp_ratio")} for r in runs
    ]
