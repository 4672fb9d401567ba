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
- `pod_spec_problems(spec)`: the cross-field problems of a pod spec that did not come through
  `parse_document` (unacknowledged relaxations, unknown volumes, ...).

Everything but `manifest` (which reads files) is pure: no I/O, no clocks.
"""

from edgenode.objects._checks import pod_spec_problems
from edgenode.objects._deployment import (
    PinnedDeployment,
    PinnedDeploymentSpec,
    PodTemplate,
    Version,
)
from edgenode.objects._errors import FieldProblem, ManifestError, ObjectError, QuantityError
from edgenode.objects._fields import API_VERSION
from edgenode.objects._kinds import KINDS, ObjectModel, to_document
from edgenode.objects._meta import Metadata, TemplateMetadata
from edgenode.objects._node import Node, NodePhase, NodeSpec, NodeStatus, SandboxFeature
from edgenode.objects._parse import Manifest, check_document, duplicate_problems, parse_document
from edgenode.objects._pod import (
    Capabilities,
    Container,
    ContainerState,
    ContainerStatus,
    HostPath,
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
    "KINDS",
    "POD_WIDE",
    "Capabilities",
    "Container",
    "ContainerState",
    "ContainerStatus",
    "FieldProblem",
    "HostPath",
    "Manifest",
    "ManifestError",
    "Metadata",
    "Node",
    "NodePhase",
    "NodeSpec",
    "NodeStatus",
    "ObjectError",
    "ObjectModel",
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
    "Resources",
    "RestartPolicy",
    "RuntimeClass",
    "SandboxFeature",
    "Seccomp",
    "SecurityContext",
    "TemplateMetadata",
    "Version",
    "Volume",
    "VolumeMount",
    "WorkflowStep",
    "check_document",
    "container_relaxations",
    "cpu_millis",
    "duplicate_problems",
    "load_manifests",
    "load_manifests_text",
    "memory_bytes",
    "object_relaxations",
    "parse_document",
    "pod_relaxations",
    "pod_spec_problems",
    "relaxations",
    "to_document",
]
