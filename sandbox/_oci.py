"""OCI runtime configuration with secure defaults: the pure core of a pod's bundle.

Theory of operation. `runtime_config` turns what a container asks for (`ContainerSpec`) and
what its pod was given (`PodSandbox`: an id range, its network namespace) into the
``config.json`` an OCI runtime runs. Everything not asked for is denied:

- a user namespace mapping the pod's own id range: the container's ids 0..size-1 are host ids
  ``base..base+size-1``, which no other pod and no host user has; the process runs as a
  non-root user inside (``uid``/``gid`` 1000 unless the image or spec says otherwise);
- no capabilities at all, ``noNewPrivileges``;
- a seccomp filter that allows by default and makes the syscalls of `DENIED_SYSCALLS` fail with
  EPERM (mount, namespaces, keyrings, BPF, module loading, tracing, clock setting, reboot ...);
- a read-only root filesystem, a private writable tmpfs at /tmp, a private /dev;
- /proc and /sys mounted fresh (no host path is ever bind-mounted), with the paths of
  `MASKED_PATHS` hidden and those of `READONLY_PATHS` read-only;
- its own PID, IPC, UTS, mount, cgroup and network namespaces (the network namespace is the
  pod's, made beforehand so it outlives container restarts);
- memory, CPU and PID limits.

Each way to weaken this is a named *relaxation* (`sandbox._relax`); the runtime config applies
only relaxations that were checked and acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox._relax import RELAXATIONS

OCI_VERSION = "1.0.2"
DEFAULT_UID = 1000
DEFAULT_GID = 1000
DEFAULT_PIDS = 1024
CPU_PERIOD_US = 100_000
TMP_SIZE = "64m"

DENIED_SYSCALLS: tuple[str, ...] = (
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "ptrace",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "userfaultfd",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "syslog",
    "mount_setattr",
)
"""Syscalls the default seccomp filter refuses with EPERM (the issue's list, plus the new mount
API, kexec_file_load and a few more that only administrators use)."""

EPERM = 1
SECCOMP_ARCHES: Mapping[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "armv7l": ("SCMP_ARCH_ARM",),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


@dataclass(frozen=True, slots=True)
class IdRange:
    """Host ids ``base .. base+size-1``, seen inside the pod as ``0 .. size-1``."""

    base: int
    size: int

    def host_id(self, inner: int) -> int:
        if not 0 <= inner < self.size:
            raise ValueError(f"id {inner} is outside the pod's range of {self.size} ids")
        return self.base + inner


@dataclass(frozen=True, slots=True)
class PodSandbox:
    """What a pod's containers share: its id range and its network namespace."""

    ids: IdRange
    netns: str | None
    """Path of the pod's network namespace (e.g. /run/netns/pod-x); None: a fresh one."""
    hostname: str


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What one container asks for, in the units the runtime takes."""

    rootfs: str
    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = DEFAULT_UID
    gid: int = DEFAULT_GID
    memory_bytes: int | None = None
    cpu_millis: int | None = None
    pids: int = DEFAULT_PIDS
    relaxations: frozenset[str] = frozenset()
    """Checked and acknowledged relaxations (see `sandbox._relax`), by name."""
    capabilities: Sequence[str] = ()
    """Capabilities added by the ``add-capability`` relaxation, e.g. CAP_NET_BIND_SERVICE."""
    host_paths: Sequence[tuple[str, str, bool]] = ()
    """(host path, container path, read-only) of the ``host-path`` relaxation."""


def seccomp_profile(arch: str) -> dict[str, Any]:
    """Allow by default; `DENIED_SYSCALLS` fail with EPERM."""
    arches = SECCOMP_ARCHES.get(arch)
    if arches is None:
        raise ValueError(
            f"no seccomp architecture list for machine {arch!r}; known: "
            f"{', '.join(sorted(SECCOMP_ARCHES))}"
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(arches),
        "syscalls": [
            {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}
        ],
    }


def _mounts(spec: ContainerSpec, *, own_sysfs: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", f"size={TMP_SIZE}"],
        },
    ]
    if own_sysfs:
        mounts.append(
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            }
        )
    for host, inner, read_only in spec.host_paths:
        options = ["rbind", "nosuid", "nodev", "ro" if read_only else "rw"]
        mounts.append({"destination": inner, "type": "bind", "source": host, "options": options})
    return mounts


def runtime_config(
    spec: ContainerSpec, pod: PodSandbox, *, arch: str, own_sysfs: bool = True
) -> dict[str, Any]:
    """The OCI ``config.json`` of one container (see the module docstring).

    `own_sysfs`: mount a fresh read-only sysfs (possible when the container has its own network
    namespace, owned by its user namespace); otherwise /sys is left out entirely.
    """
    relax = spec.relaxations
    unknown = relax - RELAXATIONS.keys()
    if unknown:
        raise ValueError(f"unknown relaxations {sorted(unknown)}")
    if spec.capabilities and "add-capability" not in relax:
        raise ValueError("capabilities are added only with the add-capability relaxation")
    if spec.host_paths and "host-path" not in relax:
        raise ValueError("host paths are mounted only with the host-path relaxation")
    bad_caps = set(spec.capabilities) - ALL_CAPABILITIES
    if bad_caps:
        raise ValueError(f"unknown capabilities {sorted(bad_caps)}; names look like CAP_NET_RAW")
    root_user = "run-as-root" in relax
    uid, gid = (0, 0) if root_user else (spec.uid, spec.gid)
    if not root_user and (uid == 0 or gid == 0):
        raise ValueError("uid or gid 0 is root: it needs the run-as-root relaxation")
    caps = sorted(set(spec.capabilities)) if "add-capability" in relax else []
    if "privileged" in relax:
        caps = sorted(ALL_CAPABILITIES)
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "cgroup"},
    ]
    if "no-user-namespace" not in relax:
        namespaces.append({"type": "user"})
    if "host-network" not in relax:
        namespaces.append(
            {"type": "network", "path": pod.netns} if pod.netns else {"type": "network"}
        )
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": [] if "privileged" in relax else list(MASKED_PATHS),
        "readonlyPaths": [] if "privileged" in relax else list(READONLY_PATHS),
        "resources": _resources(spec),
    }
    if "no-user-namespace" not in relax:
        mapping = [{"containerID": 0, "hostID": pod.ids.base, "size": pod.ids.size}]
        linux["uidMappings"] = mapping
        linux["gidMappings"] = list(mapping)
    if "unconfined-seccomp" not in relax and "privileged" not in relax:
        linux["seccomp"] = seccomp_profile(arch)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp"}
    env.update(spec.env)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": []},
            "args": list(spec.args),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": spec.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                # A non-root process keeps capabilities across exec only as ambient ones,
                # which must also be inheritable.
                "inheritable": caps if not root_user else [],
                "ambient": caps if not root_user else [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
            "noNewPrivileges": "privileged" not in relax,
        },
        "root": {"path": spec.rootfs, "readonly": "writable-root" not in relax},
        "hostname": pod.hostname,
        "mounts": _mounts(spec, own_sysfs=own_sysfs and "host-network" not in relax),
        "linux": linux,
    }


def _resources(spec: ContainerSpec) -> dict[str, Any]:
    res: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}],
        "pids": {"limit": spec.pids},
    }
    if spec.memory_bytes is not None:
        res["memory"] = {"limit": spec.memory_bytes, "swap": spec.memory_bytes}
    if spec.cpu_millis is not None:
        res["cpu"] = {
            "quota": max(1000, spec.cpu_millis * CPU_PERIOD_US // 1000),
            "period": CPU_PERIOD_US,
        }
    return res


ALL_CAPABILITIES: frozenset[str] = frozenset(
    {
        "CAP_AUDIT_CONTROL",
        "CAP_AUDIT_READ",
        "CAP_AUDIT_WRITE",
        "CAP_BLOCK_SUSPEND",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_KILL",
        "CAP_LEASE",
        "CAP_LINUX_IMMUTABLE",
        "CAP_MAC_ADMIN",
        "CAP_MAC_OVERRIDE",
        "CAP_MKNOD",
        "CAP_NET_ADMIN",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_RAW",
        "CAP_PERFMON",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYSLOG",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_CHROOT",
        "CAP_SYS_MODULE",
        "CAP_SYS_NICE",
        "CAP_SYS_PACCT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_WAKE_ALARM",
    }
)
"""Every capability a relaxation may name (Linux 5.9+)."""
