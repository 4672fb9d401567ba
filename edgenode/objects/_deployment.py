"""The PinnedDeployment kind: replicas pinned to explicitly named versions.

Each version has its own pod template and replica count
(`versions: {v1: {replicas: 8, template: ...}, v2: {replicas: 2, template: ...}}`). Nothing moves
between versions unless someone edits the counts.

Its pods (`edgenode._expand`) are named `<deployment>-<version>-<index>`, index 0 to replicas-1,
carry the labels `edgenode.io/deployment` and `edgenode.io/version` on top of the template's
own, and the annotation `edgenode.io/owner: pinneddeployment/<deployment>`. A template may not
set those two labels itself, and every pod name must be a DNS label (`_checks`).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from pydantic import AfterValidator, Field

from edgenode.objects._fields import API_VERSION, DnsLabel, StrictModel, sorted_by_key
from edgenode.objects._meta import Metadata, TemplateMetadata
from edgenode.objects._pod import PodSpec

DEPLOYMENT_LABEL: Final = "edgenode.io/deployment"
"""Label of each pod of a PinnedDeployment: the deployment's name."""
VERSION_LABEL: Final = "edgenode.io/version"
"""Label of each pod of a PinnedDeployment: the name of its version."""
OWNER_ANNOTATION: Final = "edgenode.io/owner"
"""Annotation of each pod of a PinnedDeployment: `pinneddeployment/<name>`."""
RESERVED_TEMPLATE_LABELS: Final = frozenset({DEPLOYMENT_LABEL, VERSION_LABEL})


def pod_name(deployment: str, version: str, index: int) -> str:
    """The name of replica `index` (0-based) of `version` of PinnedDeployment `deployment`."""
    return f"{deployment}-{version}-{index}"


def owner_ref(deployment: str) -> str:
    """The `edgenode.io/owner` annotation of the pods of PinnedDeployment `deployment`."""
    return f"pinneddeployment/{deployment}"


class PodTemplate(StrictModel):
    """The pods of one version: their labels and their spec."""

    noun: ClassVar[str] = "a pod template"

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata)
    spec: PodSpec


class Version(StrictModel):
    """One named version: how many replicas, and of what."""

    noun: ClassVar[str] = "a version"

    replicas: Annotated[int, Field(ge=0)]
    template: PodTemplate


Versions = Annotated[dict[DnsLabel, Version], Field(min_length=1), AfterValidator(sorted_by_key)]


class Rollout(StrictModel):
    """`spec.rollout`: a rollout under way, written by `edgenode rollout NAME --to VERSION`.

    Every replica moves to `to`, `step` at a time: first `step` more replicas of `to` start,
    then, once they run (and, with `waitReady`, are ready), as many replicas of the other
    versions stop. Each of those is an edit of the versions' `replicas`, in history. `start`
    holds the counts the rollout began from: `edgenode rollout abort` writes them back."""

    noun: ClassVar[str] = "a rollout"

    to: DnsLabel
    """The version every replica moves to (one of `versions`)."""
    step: Annotated[int, Field(ge=1, le=10_000)] = 1
    """How many replicas move at a time (1 to 10000)."""
    wait_ready: bool = Field(default=False, alias="waitReady")
    """True: each step waits until the new replicas are ready (their readiness checks pass),
    not only running."""
    paused: bool = False
    """True: no further step is taken until it is false again (`rollout resume`)."""
    start: Annotated[dict[DnsLabel, Annotated[int, Field(ge=0)]], AfterValidator(sorted_by_key)] = (
        Field(default_factory=dict)
    )
    """Each version's replicas when the rollout began."""


class PinnedDeploymentSpec(StrictModel):
    """`spec` of a PinnedDeployment: its versions, keyed by version name, and a rollout under
    way, if any."""

    noun: ClassVar[str] = "a PinnedDeployment spec"

    versions: Versions
    rollout: Rollout | None = None


class PinnedDeployment(StrictModel):
    """A PinnedDeployment: `{kind: PinnedDeployment, metadata, spec: {versions}}`."""

    noun: ClassVar[str] = "a PinnedDeployment"

    api_version: Literal["edgenode/v1"] = Field(
        default=API_VERSION, alias="apiVersion", exclude=True
    )
    kind: Literal["PinnedDeployment"] = "PinnedDeployment"
    metadata: Metadata
    spec: PinnedDeploymentSpec
