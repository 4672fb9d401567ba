"""Smoke test of `bench/daemon.py`: with a real daemon, CLI and runc it runs, prints its figures
as JSON and leaves nothing behind (daemon, pods, containers, network namespaces, files).

No timing or target is asserted: the numbers of a `--quick` run mean nothing.
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

BENCH = Path(__file__).resolve().parent.parent / "bench" / "daemon.py"
FIGURES = (
    "apply_to_running_ms_p50",
    "apply_to_running_ms_p90",
    "raw_runc_ms_p50",
    "raw_runc_ms_p90",
    "apply_cli_ms_p50",
    "fresh_rss_mb",
    "idle_rss_mb",
    "rss_mb_50_pods",
    "peak_rss_mb",
    "rss_mb_after_pods_deleted",
    "cli_get_ms_p50",
    "python_startup_ms_p50",
)
MAY_BE_ZERO = ("idle_cpu_percent", "idle_children_cpu_percent")


def require_bench_tools() -> None:
    require(os.geteuid() == 0, "runs a node daemon and containers: needs root")
    require(shutil.which("runc") is not None, "needs runc (apt-get install runc)")
    for tool in ("skopeo", "umoci"):
        require(
            shutil.which(tool) is not None, f"the daemon builds the busybox image: needs {tool}"
        )
    require(
        any(os.access(p, os.X_OK) for p in ("/bin/busybox", "/usr/bin/busybox")),
        "the daemon builds the busybox image: needs busybox-static",
    )
    require(
        os.access(Path(sys.executable).with_name("edgenode"), os.X_OK),
        "needs the edgenode command next to this Python (pip install -e .)",
    )


def number(report: dict[str, object], name: str) -> float:
    value = report.get(name)
    assert isinstance(value, int | float) and not isinstance(value, bool), (name, value)
    return float(value)


@pytest.mark.root
@pytest.mark.slow
def test_quick_daemon_bench_prints_every_figure_as_json_and_leaves_nothing_behind() -> None:
    require_bench_tools()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    for name in FIGURES:
        assert number(report, name) > 0, (name, report[name])
    for name in MAY_BE_ZERO:
        assert number(report, name) >= 0, (name, report[name])
    assert report["runs"] == 3
    samples = report["samples_ms"]
    assert len(samples["raw_runc"]) == len(samples["apply_to_running"]) == 3
    assert len(samples["cli_get"]) == len(samples["python_startup"]) == 5
    assert report["sizes"]["pods"] == 5
    assert report["machine"]["cpus"] > 0
    assert report["machine"]["runc"].startswith("runc version")

    # Every pod was deleted through the daemon; nothing was left for the cleanup to find.
    assert report["cleanup"] == {"pods": [], "netns": [], "netns_left": []}
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
    work = report["work_dir"]
    assert not Path(work).exists()  # the node's state, socket, manifests, raw bundle, log
    assert processes_naming(work) == []  # the daemon, the pods' monitors


def processes_naming(directory: str) -> list[int]:
    """Processes whose command line names a path under `directory`."""
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
