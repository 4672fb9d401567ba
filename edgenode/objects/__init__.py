"""edgenode's objects: the kinds (Pod, PinnedDeployment, Node), their schemas and manifests.

A manifest is YAML, one or many documents per file, each
`{apiVersion: edgenode/v1 (optional), kind, metadata: {name, labels, annotations}, spec}`.
Containers, ports, env and versions are maps keyed by name, so every field has a stable path.

- `load_manifests(path)` / `load_manifests_text(text, source=...)`: YAML to validated
  `Manifest`s, or a `ManifestError` listing every problem with file, document, line, field
  path, expected and actual value, and what to do.
- `parse_document(doc)`: the same for one already-decoded document.
- `Manifest.document()` / `to_document(model)`: the canonical plain dict the store saves.
- `cpu_millis`, `memory_bytes`: quantities as integers.
- `relaxations(spec)` / `object_relaxations(model)`: the relaxations of the sandbox a pod spec
  (or every pod spec of an object) asks for, each with the path of the setting that asks;
  `pod_relaxations` and `container_relaxations` split them by where they apply.
- `host_port_names(spec)`: the ports the node allocates for a `network: host-ports` pod.
- `pod_spec_problems(spec)`: the cross-field problems of a pod spec that did not come through
  `parse_document` (unacknowledged relaxations, unknown volumes, ...).
- `Readiness` (`spec.containers.C.readiness`): when a container counts as ready;
  `port_number(container, port)`: a check's port as a number.
- `node_loss_rule(spec)`: what happens to a pod when its node is lost (`spec.onNodeLoss` or
  the defaults), `lostAfter` in seconds; `duration_seconds("1h30m")`: a duration as seconds.
- `pod_name(deployment, version, index)`, `owner_ref(deployment)` and the labels
  `DEPLOYMENT_LABEL`, `VERSION_LABEL`, `OWNER_ANNOTATION`: how a PinnedDeployment's pods are
  named and marked (`edgenode._expand` builds them).

Everything but `manifest` (which reads files) is pure: no I/O, no clocks.
"""

from edgenode.objects._checks import pod_spec_problems
from edgenode.objects._deployment import (
    DEPLOYMENT_LABEL,
    OWNER_ANNOTATION,
    VERSION_LABEL,
    PinnedDeployment,
    PinnedDeploymentSpec,
    PodTemplate,
    Version,
    owner_ref,
    pod_name,
)
from edgenode.objects._duration import duration_seconds, format_duration
from edgenode.objects._errors import (
    DurationError,
    FieldProblem,
    ManifestError,
    ObjectError,
    QuantityError,
)
from edgenode.objects._fields import API_VERSION
from edgenode.objects._hostports import host_port_names
from edgenode.objects._kinds import KINDS, ObjectModel, to_document
from edgenode.objects._meta import Metadata, TemplateMetadata
from edgenode.objects._node import Node, NodePhase, NodeSpec, NodeStatus, SandboxFeature
from edgenode.objects._nodeloss import (
    DEFAULT_LOST_AFTER,
    DEFAULT_ON_RETURN,
    DEFAULT_POLICY,
    MAX_LOST_AFTER_S,
    NodeLossPolicy,
    NodeLossRule,
    OnNodeLoss,
    OnReturn,
    node_loss_rule,
)
from edgenode.objects._parse import Manifest, check_document, duplicate_problems, parse_document
from edgenode.objects._pod import (
    Capabilities,
    Container,
    ContainerState,
    ContainerStatus,
    HostPath,
    NetworkMode,
    Pod,
    PodPhase,
    PodSpec,
    PodStatus,
    PodWorkflow,
    Port,
    Protocol,
    Resources,
    RestartPolicy,
    RuntimeClass,
    Seccomp,
    SecurityContext,
    Volume,
    VolumeMount,
    WorkflowStep,
)
from edgenode.objects._quantity import cpu_millis, memory_bytes
from edgenode.objects._readiness import (
    ExecCheck,
    HttpCheck,
    Readiness,
    TcpCheck,
    port_number,
)
from edgenode.objects._security import (
    POD_WIDE,
    container_relaxations,
    object_relaxations,
    pod_relaxations,
    relaxations,
)
from edgenode.objects._yaml import load_manifests_text
from edgenode.objects.manifest import load_manifests

__all__ = [
    "API_VERSION",
    "DEFAULT_LOST_AFTER",
    "DEFAULT_ON_RETURN",
    "DEFAULT_POLICY",
    "DEPLOYMENT_LABEL",
    "KINDS",
    "MAX_LOST_AFTER_S",
    "OWNER_ANNOTATION",
    "POD_WIDE",
    "VERSION_LABEL",
    "Capabilities",
    "Container",
    "ContainerState",
    "ContainerStatus",
    "DurationError",
    "ExecCheck",
    "FieldProblem",
    "HostPath",
    "HttpCheck",
    "Manifest",
    "ManifestError",
    "Metadata",
    "NetworkMode",
    "Node",
    "NodeLossPolicy",
    "NodeLossRule",
    "NodePhase",
    "NodeSpec",
    "NodeStatus",
    "ObjectError",
    "ObjectModel",
    "OnNodeLoss",
    "OnReturn",
    "PinnedDeployment",
    "PinnedDeploymentSpec",
    "Pod",
    "PodPhase",
    "PodSpec",
    "PodStatus",
    "PodTemplate",
    "PodWorkflow",
    "Port",
    "Protocol",
    "QuantityError",
    "Readiness",
    "Resources",
    "RestartPolicy",
    "RuntimeClass",
    "SandboxFeature",
    "Seccomp",
    "SecurityContext",
    "TcpCheck",
    "TemplateMetadata",
    "Version",
    "Volume",
    "VolumeMount",
    "WorkflowStep",
    "check_document",
    "container_relaxations",
    "cpu_millis",
    "duplicate_problems",
    "duration_seconds",
    "format_duration",
    "host_port_names",
    "load_manifests",
    "load_manifests_text",
    "memory_bytes",
    "node_loss_rule",
    "object_relaxations",
    "owner_ref",
    "parse_document",
    "pod_name",
    "pod_relaxations",
    "pod_spec_problems",
    "port_number",
    "relaxations",
    "to_document",
]
