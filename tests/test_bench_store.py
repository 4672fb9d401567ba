"""Smoke test of `bench/store.py`: it runs, prints its figures as JSON and cleans up.

No timing is asserted: the numbers of a `--quick` run mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "store.py"
FIGURES = (
    "local_commit_ms_p50",
    "local_commit_ms_p99",
    "lmdb_commit_ms_p50",
    "batch_apply_changes_per_s",
    "batch_apply_verify_each_changes_per_s",
    "batch_apply_per_verify",
    "gossip_apply_changes_per_s",
    "gossip_apply_per_verify",
    "catchup_apply_changes_per_s",
    "catchup_apply_per_verify",
    "gossip_paced_changes_per_s",
    "verify_each_changes_per_s",
    "history_10k_ms",
    "history_raw_scan_ms",
    "bytes_per_change",
    "envelope_bytes_per_change",
)


def test_quick_bench_prints_every_figure_as_positive_json_and_removes_its_stores(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    for name in FIGURES:
        value = report.get(name)
        assert isinstance(value, int | float) and not isinstance(value, bool), (name, value)
        assert value > 0, (name, value)
    assert report["machine"]["cpus"] > 0
    assert list(tmp_path.iterdir()) == []
