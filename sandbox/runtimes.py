"""Runtime classes: which OCI runtimes this node has, and why one it lacks cannot be used.

A pod names its runtime class (``runc``, the default; ``crun``; ``gvisor``, run by ``runsc``).
`detect` looks for each runtime's binary and for what it needs from the kernel, and returns a
`Runtime` per class: available, or not with the reason and what to do, which the node reports
in its status and `describe` shows. Nothing is silently replaced by another runtime.
`Runtime.argv` is how to invoke an available one (`sandbox._classes.runtime_argv`), and
`Runtime.not_honoured` what of the secure defaults its class cannot give.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox._classes import NOT_HONOURED, runtime_argv

CLASSES: Mapping[str, str] = {"runc": "runc", "crun": "crun", "gvisor": "runsc"}
"""Runtime class -> the binary that runs it."""
PACKAGES: Mapping[str, str] = {
    "runc": "apt-get install runc",
    "crun": "apt-get install crun",
    "gvisor": "apt-get install runsc",
}
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class Runtime:
    runtime_class: str
    binary: str | None
    version: str | None
    available: bool
    reason: str | None = None
    """Why it is not available, and what to do."""

    def argv(self, state_root: str | None = None) -> list[str]:
        """The executable and global arguments to invoke this runtime with (a subcommand
        follows); `RuntimeUnavailableError` if it is not available."""
        if not self.available or self.binary is None:
            raise RuntimeUnavailableError(
                f"runtime class {self.runtime_class} is unavailable: {self.reason}"
            )
        return runtime_argv(self.runtime_class, self.binary, state_root)

    @property
    def not_honoured(self) -> tuple[str, ...]:
        """What of the secure defaults this class cannot give, for the node's status."""
        return NOT_HONOURED.get(self.runtime_class, ())


class RuntimeUnavailableError(RuntimeError):
    pass


def cgroup_mode(root: str = CGROUP_ROOT) -> str:
    """``unified`` (cgroup v2 only), ``hybrid`` (v1 controllers plus a v2 tree) or ``legacy``."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "unified"
    if os.path.exists(os.path.join(root, "unified", "cgroup.controllers")):
        return "hybrid"
    return "legacy"


def _version(binary: str) -> str | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else None


def detect(*, cgroups: str | None = None, path: str | None = None) -> dict[str, Runtime]:
    """Every runtime class, available or not (with the reason)."""
    mode = cgroups or cgroup_mode()
    found: dict[str, Runtime] = {}
    for cls, name in CLASSES.items():
        binary = shutil.which(name, path=path)
        if binary is None:
            found[cls] = Runtime(
                cls, None, None, False, f"{name} is not installed: {PACKAGES[cls]}"
            )
            continue
        version = _version(binary)
        if cls == "crun" and mode == "hybrid":
            found[cls] = Runtime(
                cls,
                binary,
                version,
                False,
                "crun refuses cgroups in hybrid mode (v1 controllers with a v2 tree), which "
                "this node uses; boot with systemd.unified_cgroup_hierarchy=1 to use crun, or "
                "use the runc class",
            )
            continue
        found[cls] = Runtime(cls, binary, version, True)
    return found


def require(runtime_class: str, runtimes: Mapping[str, Runtime]) -> Runtime:
    """The runtime for `runtime_class`, or a clear `RuntimeUnavailableError`."""
    rt = runtimes.get(runtime_class)
    if rt is None:
        raise RuntimeUnavailableError(
            f"unknown runtime class {runtime_class!r}; known classes: {', '.join(CLASSES)}"
        )
    if not rt.available:
        raise RuntimeUnavailableError(f"runtime class {runtime_class} is unavailable: {rt.reason}")
    return rt
