"""The sandbox's pure parts: id ranges, relaxation checks, runtime detection, the config."""

from __future__ import annotations

import itertools
import platform
import stat
from pathlib import Path

import pytest

from sandbox._ids import FIRST_BASE, MAX_BLOCKS, RANGE_SIZE, IdsExhaustedError, allocate, release
from sandbox._oci import ContainerSpec, IdRange, PodSandbox, runtime_config
from sandbox._relax import RELAXATIONS, added, check
from sandbox.runtimes import RuntimeUnavailableError, cgroup_mode, detect, require


def test_id_ranges_never_overlap_are_kept_and_reused_lowest_first() -> None:
    table: dict[str, int] = {}
    ranges = {}
    for pod in ("a", "b", "c"):
        table, ranges[pod] = allocate(table, pod)
    spans = sorted((r.base, r.base + r.size) for r in ranges.values())
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    assert min(r.base for r in ranges.values()) == FIRST_BASE
    assert all(r.size == RANGE_SIZE for r in ranges.values())
    assert allocate(table, "b")[1] == ranges["b"]  # a pod keeps its range
    table = release(table, "a")
    table, d = allocate(table, "d")
    assert d == ranges["a"]  # the lowest free block comes back first
    assert (MAX_BLOCKS - 1) * RANGE_SIZE + FIRST_BASE + RANGE_SIZE <= 2**32 - 1


def test_id_ranges_run_out_with_a_clear_error() -> None:
    full = {f"p{i}": i for i in range(MAX_BLOCKS)}
    with pytest.raises(IdsExhaustedError, match="no id range left for pod new"):
        allocate(full, "new")


def test_unknown_and_unused_acknowledgements_are_reported() -> None:
    problems = check({}, ["run-as-rot", "host-network"])
    text = [str(p) for p in problems]
    assert "unknown acknowledgement 'run-as-rot'" in text[0] and "run-as-root" in text[0]
    assert "nothing in the spec asks for it" in text[1]
    assert added(["host-path"], ["host-path", "privileged", "run-as-root"]) == [
        "privileged",
        "run-as-root",
    ]
    assert set(RELAXATIONS) == {
        "run-as-root",
        "add-capability",
        "host-path",
        "host-network",
        "privileged",
        "unconfined-seccomp",
        "writable-root",
        "no-user-namespace",
    }


def test_crun_in_hybrid_cgroups_is_reported_unavailable_with_the_reason(tmp_path: Path) -> None:
    for name in ("runc", "crun"):
        exe = tmp_path / name
        exe.write_text(f"#!/bin/sh\necho '{name} version 9.9'\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    found = detect(cgroups="hybrid", path=str(tmp_path))
    assert found["runc"].available and found["runc"].version == "runc version 9.9"
    assert not found["crun"].available and "hybrid" in (found["crun"].reason or "")
    assert not found["gvisor"].available and "runsc is not installed" in (
        found["gvisor"].reason or ""
    )
    with pytest.raises(RuntimeUnavailableError, match="runtime class gvisor is unavailable"):
        require("gvisor", found)
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime class 'kata'"):
        require("kata", found)
    assert detect(cgroups="unified", path=str(tmp_path))["crun"].available


def test_cgroup_mode_reads_the_hierarchy(tmp_path: Path) -> None:
    assert cgroup_mode(str(tmp_path)) == "legacy"
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert cgroup_mode(str(tmp_path)) == "hybrid"
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids")
    assert cgroup_mode(str(tmp_path)) == "unified"
    assert cgroup_mode() in {"legacy", "hybrid", "unified"}


def test_the_config_limits_resources_and_refuses_root_without_the_relaxation() -> None:
    pod = PodSandbox(IdRange(FIRST_BASE, RANGE_SIZE), "/run/netns/pod-web", "web")
    spec = ContainerSpec(rootfs="/r", args=["/bin/sh"], memory_bytes=64 << 20, cpu_millis=250)
    config = runtime_config(spec, pod, arch="x86_64")
    res = config["linux"]["resources"]
    assert res["memory"]["limit"] == 64 << 20 and res["cpu"] == {"quota": 25_000, "period": 100_000}
    assert res["pids"]["limit"] > 0
    assert {"type": "network", "path": "/run/netns/pod-web"} in config["linux"]["namespaces"]
    assert config["root"]["readonly"] is True and config["process"]["noNewPrivileges"] is True
    assert not any(m["type"] == "bind" for m in config["mounts"])
    with pytest.raises(ValueError, match="needs the run-as-root relaxation"):
        runtime_config(ContainerSpec(rootfs="/r", args=["/bin/sh"], uid=0), pod, arch="x86_64")
    with pytest.raises(ValueError, match="no seccomp architecture list for machine 'pdp11'"):
        runtime_config(spec, pod, arch="pdp11")
    assert runtime_config(spec, pod, arch=platform.machine())["linux"]["seccomp"]
