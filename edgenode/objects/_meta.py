"""Object metadata: the name, labels and annotations every object carries."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from edgenode.objects._fields import Annotations, DnsLabel, Labels, StrictModel


class Metadata(StrictModel):
    """`metadata` of an object: its name (unique per kind), labels and free-form annotations."""

    noun: ClassVar[str] = "object metadata"

    name: DnsLabel
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)


class TemplateMetadata(StrictModel):
    """`metadata` of a pod template: only labels; the pod's name is chosen when it is placed."""

    noun: ClassVar[str] = "template metadata"

    labels: Labels = Field(default_factory=dict)
