"""Running a command in a running container: how to ask each runtime, as data.

Theory of operation. ``<runtime> exec ID ARGS`` starts a process in a running container with
the container's own settings (user, capabilities, seccomp filter, AppArmor profile, no new
privileges, cgroup): the runtime joins the namespaces of the container's first process and
applies the bundle's process settings. One runtime needs help with our pods: runc before 1.3
joins the user namespace first, then the others, and a pod's network namespace belongs to
the node's user namespace (the node makes it, `sandbox.netns`), not the container's, so once
in the container's user namespace runc may not join it ("failed to setns into net namespace:
operation not permitted"; runc fixed the order in 1.3). For such a runc the node runs the
exec already inside the pod's network namespace (``nsenter --net=PATH``), from a copy of the
container's runtime state that names no network namespace (`without_network`), so runc joins
every other namespace and applies every setting as usual, and the process inherits the pod's
network. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FIXED_RUNC = (1, 3)
"""The first runc release that joins an outside network namespace before the user one."""
_VERSION = re.compile(r"(\d+)\.(\d+)")


def joins_network_late(runtime_class: str, version: str | None) -> bool:
    """Whether `<runtime> exec` of this class and version (``runc version 1.1.5``) fails to
    join a pod's network namespace from inside the container's user namespace."""
    if runtime_class != "runc":
        return False
    found = _VERSION.search(version or "")
    return found is None or (int(found[1]), int(found[2])) < FIXED_RUNC


def without_network(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of runc's state of a container (its ``state.json``) naming no network
    namespace: runc's exec from it leaves the process in the caller's network namespace."""
    config = dict(state.get("config") or {})
    config["namespaces"] = [
        ns for ns in config.get("namespaces") or [] if ns.get("type") != "NEWNET"
    ]
    paths = {k: v for k, v in (state.get("namespace_paths") or {}).items() if k != "NEWNET"}
    return {**state, "config": config, "namespace_paths": paths}
