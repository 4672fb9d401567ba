"""What a node is asked to run: a pod's definition in the sandbox's own terms.

`PodDef` and `ContainerDef` are what the sandbox takes; the daemon builds them from a Pod
object (``edgenode.objects``). They hold only what changes how containers run, so comparing
two definitions (`sandbox._update`) says which containers must restart after an edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

RestartPolicy = Literal["always", "on-failure", "never"]
DEFAULT_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class ContainerDef:
    image: str
    """An image reference the node's image store resolves (``busybox``, ``busybox:1.36``)."""
    command: tuple[str, ...] | None = None
    """Replaces the image's entrypoint (None: the image's)."""
    args: tuple[str, ...] | None = None
    """Replaces the image's cmd (None: the image's, unless `command` is given)."""
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: tuple[int, int] | None = None
    """(uid, gid) inside the pod; None: the image's user if numeric and not root, else 1000."""
    memory_bytes: int | None = None
    cpu_millis: int | None = None
    pids: int | None = None
    relaxations: frozenset[str] = frozenset()
    """Acknowledged relaxations that apply to this container (see `sandbox._relax`)."""
    capabilities: tuple[str, ...] = ()
    host_paths: tuple[tuple[str, str, bool], ...] = ()
    """(host path, container path, read-only), with the ``host-path`` relaxation."""

    def same_except_resources(self, other: ContainerDef) -> bool:
        return (
            self.image,
            self.command,
            self.args,
            dict(self.env),
            self.working_dir,
            self.user,
            self.relaxations,
            self.capabilities,
            self.host_paths,
        ) == (
            other.image,
            other.command,
            other.args,
            dict(other.env),
            other.working_dir,
            other.user,
            other.relaxations,
            other.capabilities,
            other.host_paths,
        )


@dataclass(frozen=True, slots=True)
class PodDef:
    name: str
    """Unique on the node, a DNS label (it names the network namespace and runtime ids)."""
    containers: Mapping[str, ContainerDef]
    restart_policy: RestartPolicy = "always"
    grace_s: float = DEFAULT_GRACE_S
    """Seconds between SIGTERM and SIGKILL when a container stops."""
    runtime_class: str = "runc"
    relaxations: frozenset[str] = frozenset()
    """Pod-wide relaxations: ``host-network``, ``no-user-namespace``."""
    host_ports: tuple[str, ...] = ()
    """Names of the ports the node allocates numbers for (``network: host-ports``, with
    ``host-network``), sorted; every container gets ``PORT_<NAME>`` (`sandbox._ports`)."""
