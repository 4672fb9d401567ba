"""The Pod kind: containers that run together on one node, and the status a node reports.

Containers, ports, env, volumes and volume mounts are maps keyed by name, so every field has a
stable path (`spec.containers.web.ports.http.containerPort`) for ownership, diffs and merges.

Security settings default to the sandbox's locked-down defaults (a user namespace, a non-root
user, no capabilities, the seccomp filter, a read-only root filesystem, no host paths, the
pod's own network). Each setting that relaxes them must be acknowledged by name in the spec's
`acknowledge` list; `_security` says which settings relax what, and `_checks` enforces it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from edgenode.objects._fields import (
    API_VERSION,
    AbsolutePath,
    Capability,
    CpuQuantity,
    DnsLabel,
    EnvName,
    Expect,
    ImageRef,
    LabelKey,
    LabelValue,
    MemoryQuantity,
    OmitEmpty,
    RelaxationName,
    StrictModel,
    sorted_by_key,
    sorted_unique,
)
from edgenode.objects._meta import Metadata
from edgenode.objects._nodeloss import OnNodeLoss
from edgenode.objects._readiness import Readiness

RestartPolicy = Literal["always", "on-failure", "never"]
Protocol = Literal["tcp", "udp"]
PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
ContainerState = Literal["waiting", "running", "exited", "unknown"]
RuntimeClass = Literal["runc", "crun", "gvisor"]
Seccomp = Literal["default", "unconfined"]
NetworkMode = Literal["pod", "host-ports"]

PortNumber = Annotated[int, Field(ge=1, le=65535)]
MAX_ID = 2**32 - 2
"""The largest user or group id the kernel maps (2^32 - 1 means "no id")."""
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class Port(StrictModel):
    """A port a container listens on, named in `ports: {http: {containerPort: 8080}}`.

    `containerPort` is required with `network: pod` and not allowed with `network: host-ports`,
    where the node allocates the number and passes it in `PORT_<NAME>` (`_hostports`)."""

    noun: ClassVar[str] = "a port"

    container_port: PortNumber | None = Field(default=None, alias="containerPort")
    protocol: Protocol = "tcp"


class Resources(StrictModel):
    """CPU and memory for a container (or a node's capacity). Both are optional."""

    noun: ClassVar[str] = "resources"

    cpu: CpuQuantity | None = None
    memory: MemoryQuantity | None = None


class Capabilities(StrictModel):
    """Linux capabilities given to a container (`add`); none by default."""

    noun: ClassVar[str] = "capabilities"

    add: Annotated[list[Capability], AfterValidator(sorted_unique), OmitEmpty] = Field(
        default_factory=list
    )


class SecurityContext(StrictModel):
    """How a container's process runs. Every field but the ids defaults to the secure choice.

    `runAsUser`/`runAsGroup`: ids inside the pod's user namespace (0 to 65535 with one);
    without `runAsUser` the image's user runs if it is numeric and not root, else 1000; the
    group defaults to the user's id. `runAsRoot: true` (or `runAsUser: 0`) runs as root inside
    the user namespace (`run-as-root`); `runAsRoot: false` refuses uid 0 outright.
    """

    noun: ClassVar[str] = "a security context"

    run_as_user: Id | None = Field(default=None, alias="runAsUser")
    run_as_group: Id | None = Field(default=None, alias="runAsGroup")
    run_as_root: bool | None = Field(default=None, alias="runAsRoot")
    privileged: bool = False
    capabilities: Capabilities = Field(default_factory=Capabilities)
    seccomp: Seccomp = "default"
    read_only_root_filesystem: bool = Field(default=True, alias="readOnlyRootFilesystem")


class VolumeMount(StrictModel):
    """Where a container sees one of its pod's volumes: `volumeMounts: {data: {mountPath}}`."""

    noun: ClassVar[str] = "a volume mount"

    mount_path: AbsolutePath = Field(alias="mountPath")
    read_only: bool | None = Field(default=None, alias="readOnly")
    """None: as the volume says; true makes a writable volume read-only in this container."""


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
    security_context: SecurityContext = Field(
        default_factory=SecurityContext, alias="securityContext"
    )
    volume_mounts: Annotated[dict[DnsLabel, VolumeMount], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict, alias="volumeMounts"
    )
    """Keyed by the name of the pod's volume to mount."""
    readiness: Readiness | None = None
    """When it counts as ready (`_readiness`); None: once it runs."""


Containers = Annotated[
    dict[DnsLabel, Container], Field(min_length=1), AfterValidator(sorted_by_key)
]


class HostPath(StrictModel):
    """A path of the node, mounted into containers (`host-path`); read-only unless told."""

    noun: ClassVar[str] = "a host path"

    path: AbsolutePath
    read_only: bool = Field(default=True, alias="readOnly")


class Volume(StrictModel):
    """A volume of a pod, named in `volumes: {data: {hostPath: {path: /srv/data}}}`."""

    noun: ClassVar[str] = "a volume"

    host_path: HostPath = Field(alias="hostPath")


Volumes = Annotated[dict[DnsLabel, Volume], AfterValidator(sorted_by_key)]
Acknowledgements = Annotated[list[RelaxationName], AfterValidator(sorted_unique), OmitEmpty]
NodeSelector = Annotated[dict[LabelKey, LabelValue], AfterValidator(sorted_by_key)]


HookName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128),
    Expect("the name of an executable in the node's hooks directory, such as check-disk.sh"),
]


class WorkflowStep(StrictModel):
    """A step of the pod's own, run at a named point of its lifecycle workflows."""

    noun: ClassVar[str] = "a workflow step"

    run: HookName
    """An executable of the node's hooks directory (<state>/hooks): a pod spec chooses among
    what the node's administrator installed; it cannot name any program of the node."""
    args: list[str] = Field(default_factory=list)
    before: str | None = None
    """Run before this step (e.g. containers.start), or ..."""
    after: str | None = None
    """... after it."""
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=30, alias="timeoutSeconds"
    )
    on_failure: Literal["fail", "continue"] = Field(default="fail", alias="onFailure")


class PodWorkflow(StrictModel):
    """Steps a pod inserts into its lifecycle workflows (pod.start, pod.update, ...)."""

    noun: ClassVar[str] = "a pod workflow"

    steps: Annotated[dict[DnsLabel, WorkflowStep], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )


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
    volumes: Volumes = Field(default_factory=dict)
    runtime_class: RuntimeClass = Field(default="runc", alias="runtimeClass")
    host_network: bool = Field(default=False, alias="hostNetwork")
    """True: the pod uses the node's network namespace (`host-network`)."""
    network: NetworkMode = "pod"
    """`host-ports`: the pod uses the node's network namespace (`host-network`) and the node
    allocates each of its ports a number of its own (`_hostports`)."""
    user_namespace: bool = Field(default=True, alias="userNamespace")
    """False: no user namespace, ids inside are the node's ids (`no-user-namespace`)."""
    acknowledge: Acknowledgements = Field(default_factory=list)
    """The relaxations of the sandbox this spec asks for, each by name (`run-as-root`)."""
    workflow: PodWorkflow | None = None
    """Its own steps in its lifecycle workflows (docs/workflows.md)."""
    on_node_loss: OnNodeLoss | None = Field(default=None, alias="onNodeLoss")
    """What happens when its node is lost (`_nodeloss`); None: the defaults (docs/objects.md)."""


class ContainerStatus(StrictModel):
    """What a node last saw of one container."""

    noun: ClassVar[str] = "a container status"

    state: ContainerState
    restarts: Annotated[int, Field(ge=0)] = 0
    exit_code: int | None = Field(default=None, alias="exitCode")
    ready: bool | None = None
    """It runs and its readiness check (if any) passes; None: not reported (a node that
    predates readiness)."""


class PodStatus(StrictModel):
    """Status of a pod, written only by the node that runs it."""

    noun: ClassVar[str] = "a pod status"

    phase: PodPhase
    node: DnsLabel | None = None
    addresses: Annotated[dict[DnsLabel, str], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    """The pod's own addresses: ``ipv6`` (in its node's /64, routed across the mesh) and
    ``ipv4`` (node-local, masqueraded for egress); none for host-network and gVisor pods."""
    containers: Annotated[dict[DnsLabel, ContainerStatus], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict
    )
    ready: bool | None = None
    """Every container is ready; None: not reported."""
    message: str | None = None
    """What keeps it from running or from being ready, one clause per container."""
    host_ports: Annotated[dict[DnsLabel, PortNumber], AfterValidator(sorted_by_key)] = Field(
        default_factory=dict, alias="hostPorts"
    )
    """The node's port allocated to each of its ports, by name (`network: host-ports`)."""


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
