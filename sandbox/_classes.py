"""Runtime classes: how each OCI runtime is invoked, and what it changes in a bundle's config.

Theory of operation. A pod names its runtime class (``runc``, ``crun`` or ``gvisor``). The
shell asks `runtime_argv` for the runtime's global arguments and appends a subcommand
(``run --bundle B ID``, ``create``, ``start``, ``kill ID SIG``, ``delete --force ID``,
``state ID``, ``update ...``); it writes ``adapt_config(cls, runtime_config(...))`` as the
bundle's ``config.json``; it changes a running container's limits in place only when
`supports_live_update` says so, and otherwise restarts it. `NOT_HONOURED` lists, per class,
what of our secure defaults the class cannot give, for the node to report. Pure: no I/O.

runc and crun honour the whole config, unchanged.

gVisor (``runsc``, Debian 12's 0.0~20221219, ptrace platform) runs the default config with the
same guarantees where it matters: a non-root user inside, no capabilities, no-new-privileges,
a read-only root, a private size-limited /tmp, the seccomp filter (``--oci-seccomp``), the
pod's id range for every file it touches on the host, memory and CPU limits. Above that, the
guest's syscalls are served by gVisor's own kernel, not the host's. What it cannot honour:

- network: the guest gets a loopback interface only, never the pod's network namespace.
  runsc's netstack mode (``--network=sandbox``) refuses every namespace on Linux 6.x, whose
  non-root namespaces now show /proc/sys/net/core/rmem_default (gVisor issue 10704, fixed
  upstream in 2024); its host mode (``--network=host``) starts the sentry in the container's
  user namespace without making it uid 0 there, so it has no capability to set up its chroot
  ("error converting mounts"; upstream later sets its uid to 0). Host networking is refused
  (`adapt_config`).
- user namespace: the pod's id range governs file access (runsc's gofer runs as the pod's
  ids), while the sentry runs as the host's ``nobody`` (65534) in a user namespace of its own,
  the same for every gVisor pod; inside, /proc/self/uid_map shows gVisor's identity map.
- maskedPaths and readonlyPaths are ignored by runsc. gVisor's /proc and /sys are the
  sentry's own, with none of the masked host files (kcore, keys, timer_list ...; its
  /sys/firmware is empty), and the guest cannot write /proc/sys without capabilities.
- pids: the host's pids cgroup counts the sandbox's own threads (sentry, gofer and a ptrace
  stub per guest process: about 40 plus 8 per process here), so the limit is scaled (see
  `GVISOR_PIDS_BASE`) and bounds the guest's processes only roughly.
- memory: the limit also covers the sentry (about 14 MB at rest); a guest that exceeds it
  gets the whole sandbox killed (exit 137), not one of its processes.
- devices cgroup: runsc leaves it at ``a *:* rwm``; gVisor's /dev is synthetic, so no host
  device is reachable from the guest anyway.
- /dev/mqueue is not mounted.
- /proc/self/status has no NoNewPrivs line (prctl(PR_GET_NO_NEW_PRIVS) does return 1).
- live updates: there is no ``runsc update``; changed limits need a restart.
- cost: every guest syscall is a ptrace round trip: a trivial container takes ~0.18 s to run
  instead of ~0.06 s with runc, a fork+exec ~11 ms instead of ~0.3 ms.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

CLASS_NAMES: tuple[str, ...] = ("runc", "crun", "gvisor")

RUNSC_FLAGS: tuple[str, ...] = (
    # The ptrace platform: the one that works on a node without usable KVM, and this runsc's
    # default, spelled out because newer releases default to systrap and KVM hangs here.
    "--platform=ptrace",
    # Loopback only, in a fresh network namespace: neither netstack mode ("sandbox") nor the
    # pod's namespace through the host kernel ("host") starts with this runsc on this kernel
    # and our user namespace (see the module docstring). Never the node's own network.
    "--network=none",
    # Enforce the config's linux.seccomp inside the sandbox; without this flag runsc ignores
    # it, and the denied syscalls (mount, unshare, ptrace, keyctl ...) that gVisor implements
    # would succeed. Costs little: the filter runs in the sentry, not in the host kernel.
    "--oci-seccomp",
)
"""Global runsc flags, after ``--root``. Deliberately absent: ``--ignore-cgroups`` (runsc
writes the v1 controllers of hybrid cgroups fine, and the limits are protections),
``--debug``/``--debug-log`` (per-run log files; add them by hand to diagnose), ``--rootless``
(we are root), ``--host-uds``/``--host-fifo`` (default ``none``: no host sockets or FIFOs),
``--net-raw`` (default off: no raw sockets)."""

GVISOR_PIDS_BASE = 64
"""Host tasks a gVisor sandbox needs before its guest's processes (measured: 38 with one)."""
GVISOR_TASKS_PER_PROCESS = 10
"""Host tasks counted per guest process on ptrace (measured: 8 for a single-threaded one)."""

NOT_HONOURED: Mapping[str, tuple[str, ...]] = {
    "runc": (),
    "crun": (),
    "gvisor": (
        "network: loopback only, not the pod's network namespace (runsc --network=none)",
        "user namespace: the pod's ids apply to host files; the sentry runs as host nobody",
        "maskedPaths/readonlyPaths: ignored; gVisor's /proc and /sys are synthetic",
        "pids limit: counts the sandbox's own threads; scaled, so only roughly enforced",
        "memory limit: includes the sentry; exceeding it kills the whole sandbox",
        "devices cgroup: not written; gVisor's /dev is synthetic",
        "/dev/mqueue: not mounted",
        "live resource updates: unsupported; limits change by restart",
    ),
}
"""Per class, what of the secure defaults it cannot give (see the module docstring)."""


class UnsupportedConfigError(ValueError):
    """The runtime class cannot run this config as asked; nothing was started."""


def _check_class(runtime_class: str) -> None:
    if runtime_class not in CLASS_NAMES:
        raise ValueError(
            f"unknown runtime class {runtime_class!r}; known classes: {', '.join(CLASS_NAMES)}"
        )


def runtime_argv(runtime_class: str, binary: str, state_root: str | None) -> list[str]:
    """The runtime's executable and global arguments; a subcommand and its arguments follow.

    `state_root`: the runtime's state directory (``--root``); None keeps its default
    (/run/runc, /run/crun, /var/run/runsc).
    """
    _check_class(runtime_class)
    argv = [binary]
    if state_root is not None:
        argv += ["--root", state_root]
    if runtime_class == "gvisor":
        argv += RUNSC_FLAGS
    return argv


def adapt_config(runtime_class: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the OCI `config` that `runtime_class` runs as meant (`config` is untouched).

    Raises `UnsupportedConfigError` when the class cannot honour what the config asks for.
    """
    _check_class(runtime_class)
    adapted: dict[str, Any] = copy.deepcopy(dict(config))
    if runtime_class != "gvisor":
        return adapted
    linux = adapted.get("linux", {})
    if not any(ns.get("type") == "network" for ns in linux.get("namespaces", [])):
        # No network namespace is the host-network relaxation; with --network=none the pod
        # would silently get loopback only.
        raise UnsupportedConfigError(
            "runtime class gvisor cannot give the node's network (the host-network "
            "relaxation): runsc runs with --network=none; nothing was started. Use runtime "
            "class runc for this pod, or drop host-network"
        )
    pids = linux.get("resources", {}).get("pids")
    if pids and pids.get("limit", 0) > 0:
        # The host's pids cgroup holds the whole sandbox, whose own host tasks (sentry and
        # gofer threads, a ptrace stub per guest process) would otherwise use up the limit:
        # scaled, the guest can run about as many processes as it asked for, and the host
        # keeps a bound of the same order.
        pids["limit"] = GVISOR_PIDS_BASE + GVISOR_TASKS_PER_PROCESS * pids["limit"]
    # Kept as they are, though runsc does not need them all: linux.seccomp (enforced with
    # --oci-seccomp), the user namespace and its mappings (the gofer runs as the pod's ids),
    # maskedPaths/readonlyPaths and the devices rule (ignored, harmless), the mounts (gVisor
    # mounts its own proc, sysfs, tmpfs and devpts, and skips mqueue), the pod's network
    # namespace path (ignored with --network=none: the sandbox gets a fresh namespace).
    return adapted


def supports_live_update(runtime_class: str) -> bool:
    """Whether ``<runtime> update`` changes a running container's resources.

    runc and crun do; runsc 0.0~20221219 has no ``update`` subcommand.
    """
    _check_class(runtime_class)
    return runtime_class != "gvisor"
