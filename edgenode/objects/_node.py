"""The Node kind: what each node publishes about itself, and the one thing users set on it.

Users may mark a node `unschedulable` (cordon it); labels live in `metadata.labels`. The
node writes its own `status`: capacity, addresses, phase, and what its sandbox has and lacks.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from edgenode.objects._fields import API_VERSION, DnsLabel, StrictModel, sorted_by_key
from edgenode.objects._meta import Metadata
from edgenode.objects._pod import Resources

NodePhase = Literal["Joining", "Ready", "NotReady", "Unknown"]


class NodeSpec(StrictModel):
    """`spec` of a Node."""

    noun: ClassVar[str] = "a Node spec"

    unschedulable: bool = False


class SandboxFeature(StrictModel):
    """One protection or runtime class of the node's sandbox, as the node found it."""

    noun: ClassVar[str] = "a sandbox feature"

    available: bool
    detail: str


class NodeNetwork(StrictModel):
    """The node's claim of a /64 of the cluster's /48 for its pods (docs/network.md)."""

    noun: ClassVar[str] = "a Node network"

    pod_prefix: str = Field(alias="podPrefix")
    counter: Annotated[int, Field(ge=0)] = 0
    """Which of the node's choices of /64 it is (0 first; higher after a collision)."""
    claimed_at: float = Field(alias="claimedAt")
    """When (Unix seconds) the node first claimed it: the earliest claim keeps a prefix."""


class NodeStatus(StrictModel):
    """Status a node publishes about itself."""

    noun: ClassVar[str] = "a Node status"

    capacity: Resources = Field(default_factory=Resources)
    addresses: Annotated[dict[DnsLabel, str], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    phase: NodePhase
    network: NodeNetwork | None = None
    sandbox: Annotated[dict[str, SandboxFeature], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    """What the node's sandbox has and lacks (AppArmor, seccomp, user namespaces, cgroups,
    each runtime class), each with a sentence: `describe node` shows it."""


class Node(StrictModel):
    """A Node: `{kind: Node, metadata, spec, status}`."""

    noun: ClassVar[str] = "a Node"

    api_version: Literal["edgenode/v1"] = Field(
        default=API_VERSION, alias="apiVersion", exclude=True
    )
    kind: Literal["Node"] = "Node"
    metadata: Metadata
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None
