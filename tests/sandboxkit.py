"""Helpers for sandbox tests: a busybox root filesystem with a syscall probe, and running a
generated bundle with real runc."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import require

from sandbox._oci import ContainerSpec, IdRange, PodSandbox, runtime_config
from sandbox.busybox import build_rootfs

PROBE_SOURCE = Path(__file__).resolve().parent / "probes" / "syscalls.c"


def require_runc() -> str:
    require(os.geteuid() == 0, "runs containers: needs root")
    runc = shutil.which("runc")
    require(runc is not None, "needs runc (apt-get install runc)")
    assert runc is not None
    return runc


def make_rootfs(dest: Path) -> Path:
    """A busybox root filesystem with /bin/probe (tests/probes/syscalls.c, built static)."""
    require(shutil.which("gcc") is not None, "builds the syscall probe: needs gcc")
    root = build_rootfs(dest)
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(root / "bin" / "probe"), str(PROBE_SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_bundle(config: dict[str, Any], work: Path, runtime: str = "runc") -> Ran:
    """Run `config` to completion with `runtime`; the container is deleted afterwards."""
    bundle = work / f"bundle-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"test-{bundle.name}"
    try:
        out = subprocess.run(
            [runtime, "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run(
            [runtime, "delete", "--force", cid], capture_output=True, check=False, timeout=30
        )
    return Ran(out.returncode, out.stdout, out.stderr)


def shell_config(rootfs: Path, script: str, ids: IdRange, **kw: Any) -> dict[str, Any]:
    spec = ContainerSpec(rootfs=str(rootfs), args=["/bin/sh", "-c", script], **kw)
    pod = PodSandbox(ids=ids, netns=None, hostname="pod")
    return runtime_config(spec, pod, arch=platform.machine())
