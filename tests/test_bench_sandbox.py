"""Smoke test of `bench/sandbox.py`: with real runc it runs, prints its figures as JSON and
leaves nothing behind (pods, containers, network namespaces, files).

No timing is asserted: the numbers of a `--quick` run mean nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

BENCH = Path(__file__).resolve().parent.parent / "bench" / "sandbox.py"
FIGURES = (
    "raw_runc_start_ms_p50",
    "raw_runc_start_ms_p90",
    "edgenode_start_ms_p50",
    "edgenode_start_ms_p90",
    "start_ratio",
    "pod_overhead_kb",
    "container_pss_kb",
    "pod_overhead_private_kb",
    "container_private_kb",
    "pod_files_kb",
)


def require_bench_tools() -> None:
    require(os.geteuid() == 0, "runs containers and network namespaces: needs root")
    require(shutil.which("runc") is not None, "needs runc (apt-get install runc)")
    for tool in ("skopeo", "umoci"):
        require(shutil.which(tool) is not None, f"builds the busybox image: needs {tool}")
    require(
        any(os.access(p, os.X_OK) for p in ("/bin/busybox", "/usr/bin/busybox")),
        "builds the busybox image: needs busybox-static",
    )


@pytest.mark.root
@pytest.mark.slow
def test_quick_bench_prints_every_figure_as_positive_json_and_leaves_nothing_behind() -> None:
    require_bench_tools()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    for name in FIGURES:
        value = report.get(name)
        assert isinstance(value, int | float) and not isinstance(value, bool), (name, value)
        assert value > 0, (name, value)
    assert report["runs"] == 3
    assert len(report["samples_ms"]["raw_runc"]) == len(report["samples_ms"]["edgenode"]) == 3
    assert report["machine"]["cpus"] > 0
    assert report["machine"]["runc"].startswith("runc version")

    pods, namespace = report["names"]["pods"], report["names"]["netns"]
    assert namespace.startswith("edgenode-") and namespace.endswith(pods)
    netns = Path("/run/netns")
    left = [p.name for p in netns.iterdir()] if netns.is_dir() else []
    assert [n for n in left if n.startswith(namespace)] == []
    listed = subprocess.run(
        ["runc", "list", "--quiet"], capture_output=True, text=True, timeout=30, check=True
    )
    assert [c for c in listed.stdout.split() if c.startswith(pods)] == []
    key = namespace.split("-")[1]  # the node's runtime state went with its last pod
    assert not Path("/run/edgenode-runtime", key).exists()
    assert not Path(report["work_dir"]).exists()  # the node's state: pods, images, bundles
    assert monitors_under(report["work_dir"]) == []


def monitors_under(directory: str) -> list[int]:
    """Processes whose command line names a path under `directory` (the pods' monitors)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(directory.encode()) for a in argv):
            found.append(int(proc.name))
    return found
