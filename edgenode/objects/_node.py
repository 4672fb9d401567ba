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


class NodeStatus(StrictModel):
    """Status a node publishes about itself."""

    noun: ClassVar[str] = "a Node status"

    capacity: Resources = Field(default_factory=Resources)
    addresses: Annotated[dict[DnsLabel, str], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    phase: NodePhase
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
