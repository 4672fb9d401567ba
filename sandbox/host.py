"""What this node's kernel and tools offer the sandbox, reported rather than assumed.

`features` checks each protection the sandbox relies on or adds where it can (user
namespaces, seccomp, AppArmor, cgroups, each runtime class) and returns, for each, whether it
is available and a sentence saying what was found or what is missing and how to get it. The
node publishes this in its status (``status.sandbox``) and ``describe node`` shows it, so a
missing protection, AppArmor on a kernel without it for instance, is visible, never silent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox._apparmor import PROFILE_NAME, profile
from sandbox._classes import NOT_HONOURED
from sandbox.images import find_init
from sandbox.runtimes import Runtime, cgroup_mode, detect

SECURITY_DIR = "/sys/kernel/security"


@dataclass(frozen=True, slots=True)
class Feature:
    available: bool
    detail: str


def apparmor(security_dir: str = SECURITY_DIR) -> Feature:
    if not os.path.isdir(os.path.join(security_dir, "apparmor")):
        return Feature(
            False,
            f"this kernel has no AppArmor ({security_dir}/apparmor does not exist): containers "
            "run without an AppArmor profile; user namespaces, seccomp, no capabilities and a "
            "read-only root still apply",
        )
    if shutil.which("apparmor_parser") is None:
        return Feature(
            False,
            "the kernel has AppArmor but apparmor_parser is missing, so the edgenode profile "
            "cannot be loaded: apt-get install apparmor",
        )
    return Feature(True, f"profile {PROFILE_NAME} applied to every container")


def load_apparmor_profile() -> None:
    """Load (or replace) the containers' profile into the kernel."""
    subprocess.run(
        ["apparmor_parser", "-r", "-W"],
        input=profile(),
        text=True,
        capture_output=True,
        check=True,
        timeout=60,
    )


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def user_namespaces() -> Feature:
    limit = _read("/proc/sys/user/max_user_namespaces")
    if limit is not None and limit.strip() == "0":
        return Feature(
            False, "user namespaces are disabled (user.max_user_namespaces = 0): set it above 0"
        )
    return Feature(True, f"up to {limit.strip() if limit else 'unknown'} user namespaces")


def seccomp() -> Feature:
    status = _read("/proc/self/status") or ""
    if "Seccomp:" not in status:
        return Feature(False, "this kernel has no seccomp (CONFIG_SECCOMP_FILTER is off)")
    return Feature(True, "syscall filter applied to every container")


def init() -> Feature:
    found = find_init()
    if found is None:
        return Feature(
            False,
            "no static init (tini-static): a container's command runs as pid 1, ignores "
            "SIGTERM unless it handles it, and every stop waits out the grace period; "
            "apt-get install tini",
        )
    return Feature(True, f"{found} runs as pid 1, forwards signals and reaps orphans")


def features(
    *, security_dir: str = SECURITY_DIR, runtimes: Mapping[str, Runtime] | None = None
) -> dict[str, Feature]:
    """Every protection and runtime class, by name (see the module docstring)."""
    found = {
        "apparmor": apparmor(security_dir),
        "seccomp": seccomp(),
        "user-namespaces": user_namespaces(),
        "cgroups": Feature(True, f"cgroups in {cgroup_mode()} mode"),
        "init": init(),
    }
    for cls, rt in (runtimes if runtimes is not None else detect()).items():
        detail = (rt.version or "") if rt.available else (rt.reason or "unavailable")
        if rt.available and NOT_HONOURED.get(cls):
            detail += "; cannot honour: " + "; ".join(NOT_HONOURED[cls])
        found[f"runtime-{cls}"] = Feature(rt.available, detail)
    return found
