"""Helpers for sandbox tests: a busybox root filesystem with a syscall probe, and running a
generated bundle with a real runtime (runc by default, or runsc)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import require

from sandbox._image import ImageConfig, ImageNotFoundError, ResolvedImage
from sandbox._oci import ContainerSpec, IdRange, PodSandbox, runtime_config
from sandbox.busybox import build_rootfs
from sandbox.runtimes import CGROUP_ROOT

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


def run_bundle(config: dict[str, Any], work: Path, runtime: str | Sequence[str] = "runc") -> Ran:
    """Run `config` to completion with `runtime`, a binary's name or the argv that invokes it
    (`sandbox._classes.runtime_argv`); the container is deleted afterwards."""
    argv = [runtime] if isinstance(runtime, str) else list(runtime)
    bundle = work / f"bundle-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"test-{bundle.name}"
    try:
        out = subprocess.run(
            [*argv, "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run(
            [*argv, "delete", "--force", cid], capture_output=True, check=False, timeout=30
        )
        _remove_leftover_cgroups(cid)
    return Ran(out.returncode, out.stdout, out.stderr)


def _remove_leftover_cgroups(cid: str) -> None:
    """A runtime that failed half-way (runsc does) can leave its empty cgroups behind."""
    for controller in Path(CGROUP_ROOT).iterdir() if Path(CGROUP_ROOT).is_dir() else ():
        leftover = controller / cid
        if leftover.is_dir():
            try:
                leftover.rmdir()
            except OSError as e:  # still in use, or not empty: leave it, and say so
                print(f"left cgroup {leftover} in place: {e}")


def shell_config(rootfs: Path, script: str, ids: IdRange, **kw: Any) -> dict[str, Any]:
    spec = ContainerSpec(rootfs=str(rootfs), args=["/bin/sh", "-c", script], **kw)
    pod = PodSandbox(ids=ids, netns=None, hostname="pod")
    return runtime_config(spec, pod, arch=platform.machine())


class LocalImages:
    """An image resolver over root filesystems built here, for tests of the pod runner alone
    (the image store has its own tests)."""

    def __init__(self, rootfs: dict[str, Path]) -> None:
        self.rootfs = rootfs

    def resolve(self, reference: str) -> ResolvedImage:
        name = reference.split(":", 1)[0]
        if name not in self.rootfs:
            raise ImageNotFoundError(f"no image {reference}")
        digest = "sha256:" + hashlib.sha256(str(self.rootfs[name]).encode()).hexdigest()
        return ResolvedImage(
            reference, digest, str(self.rootfs[name]), ImageConfig(cmd=("/bin/sh",))
        )
