"""The registry of kinds, and the canonical document of an object.

`to_document` is what the versioned store saves: a plain, JSON-able dict with defaults filled
in, `None`s and empty maps left out, YAML field names (`restartPolicy`, `containerPort`), and
maps keyed by name in sorted order. The same object always gives the same dict, and validating
that dict again gives an equal object.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from edgenode.objects._deployment import PinnedDeployment
from edgenode.objects._node import Node
from edgenode.objects._pod import Pod

ObjectModel = Pod | PinnedDeployment | Node

KINDS: dict[str, type[BaseModel]] = {
    "Pod": Pod,
    "PinnedDeployment": PinnedDeployment,
    "Node": Node,
}

#: Kinds whose status only a node writes; a manifest that carries one is refused.
NODE_WRITTEN_STATUS: frozenset[str] = frozenset({"Pod", "PinnedDeployment"})


def _prune(value: Any) -> Any:
    """Drop `None` values and empty maps, recursively (a pruned-empty map is dropped too)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            pruned = _prune(item)
            if pruned is None or (isinstance(pruned, dict) and not pruned):
                continue
            out[key] = pruned
        return out
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


def to_document(model: BaseModel) -> dict[str, Any]:
    """The canonical plain dict of an object: `{"kind", "metadata", "spec"[, "status"]}`."""
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    document = _prune(dumped)
    assert isinstance(document, dict)
    return document
