"""The Pod kind: containers that run together on one node, and the status a node reports.

Containers, ports and env are maps keyed by name, so every field has a stable path
(`spec.containers.web.ports.http.containerPort`) for ownership, diffs and merges.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from edgenode.objects._fields import (
    API_VERSION,
    AbsolutePath,
    CpuQuantity,
    DnsLabel,
    EnvName,
    Expect,
    ImageRef,
    LabelKey,
    LabelValue,
    MemoryQuantity,
    StrictModel,
    sorted_by_key,
)
from edgenode.objects._meta import Metadata

RestartPolicy = Literal["always", "on-failure", "never"]
Protocol = Literal["tcp", "udp"]
PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
ContainerState = Literal["waiting", "running", "exited", "unknown"]

PortNumber = Annotated[int, Field(ge=1, le=65535)]


class Port(StrictModel):
    """A port a container listens on, named in `ports: {http: {containerPort: 8080}}`."""

    noun: ClassVar[str] = "a port"

    container_port: PortNumber = Field(alias="containerPort")
    protocol: Protocol = "tcp"


class Resources(StrictModel):
    """CPU and memory for a container (or a node's capacity). Both are optional."""

    noun: ClassVar[str] = "resources"

    cpu: CpuQuantity | None = None
    memory: MemoryQuantity | None = None


class Container(StrictModel):
    """One container of a pod."""

    noun: ClassVar[str] = "a container"

    image: ImageRef
    command: (
        Annotated[
            list[str],
            Field(min_length=1),
            Expect("a non-empty list of strings (leave command out to use the image's own)"),
        ]
        | None
    ) = None
    args: list[str] | None = None
    env: Annotated[dict[EnvName, str], AfterValidator(sorted_by_key)] = Field(default_factory=dict)
    working_dir: AbsolutePath | None = Field(default=None, alias="workingDir")
    ports: Annotated[dict[DnsLabel, Port], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    resources: Resources = Field(default_factory=Resources)


Containers = Annotated[
    dict[DnsLabel, Container], Field(min_length=1), AfterValidator(sorted_by_key)
]
NodeSelector = Annotated[dict[LabelKey, LabelValue], AfterValidator(sorted_by_key)]


class PodSpec(StrictModel):
    """What a pod runs, and where and how it may run."""

    noun: ClassVar[str] = "a pod spec"

    containers: Containers
    restart_policy: RestartPolicy = Field(default="always", alias="restartPolicy")
    node_selector: NodeSelector = Field(default_factory=dict, alias="nodeSelector")
    node: DnsLabel | None = None
    termination_grace_period_seconds: Annotated[int, Field(ge=0)] = Field(
        default=10, alias="terminationGracePeriodSeconds"
    )


class ContainerStatus(StrictModel):
    """What a node last saw of one container."""

    noun: ClassVar[str] = "a container status"

    state: ContainerState
    restarts: Annotated[int, Field(ge=0)] = 0
    exit_code: int | None = Field(default=None, alias="exitCode")


class PodStatus(StrictModel):
    """Status of a pod, written only by the node that runs it."""

    noun: ClassVar[str] = "a pod status"

    phase: PodPhase
    node: DnsLabel | None = None
    containers: Annotated[dict[DnsLabel, ContainerStatus], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    message: str | None = None


class Pod(StrictModel):
    """A pod: `{kind: Pod, metadata, spec}`, plus `status` once a node reports on it."""

    noun: ClassVar[str] = "a Pod"

    api_version: Literal["edgenode/v1"] = Field(
        default=API_VERSION, alias="apiVersion", exclude=True
    )
    kind: Literal["Pod"] = "Pod"
    metadata: Metadata
    spec: PodSpec
    status: PodStatus | None = None
