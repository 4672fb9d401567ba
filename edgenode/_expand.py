"""A PinnedDeployment's pods, and what to change to get from the pods there are to those wanted.

Theory of operation. `expand(deployment)` is a pure function of the deployment's document: for
each version `V` with `replicas: n` it gives the pods `<deployment>-V-0` to `<deployment>-V-<n-1>`.
A pod's name says only which replica of which version it is, never what it runs, so:

- editing a version's template changes the documents of that version's pods and no name: the
  pods are updated in place (`update`), none is created or deleted;
- raising a version's count from n to m adds `...-V-n` to `...-V-<m-1>`; lowering it removes
  the highest indexes; the other versions' pods are not touched;
- the same deployment always gives the same pods (maps in sorted order), whatever the order
  its keys were written in.

Each pod document is canonical (what `to_document` makes of the same Pod, so validating it
again gives it back): `kind: Pod`, `metadata: {name, labels, annotations}` and the template's
`spec` as is, `onNodeLoss` included. Its labels are the template's plus `edgenode.io/deployment:
<deployment>` and `edgenode.io/version: <V>` (a template may not set those two, `_checks`);
its annotation `edgenode.io/owner: pinneddeployment/<deployment>` says who made it.

Names are unique within one deployment (the index is what follows the last '-', and no
version name ends in '-'), and `_checks` refuses a deployment whose longest pod name
would not be a DNS label. Two deployments can still spell the same pod name
(`a` + `b-c` and `a-b` + `c`), so whoever writes pods must refuse one whose
`edgenode.io/owner` names another owner; `owned_pods` selects a deployment's own.

`diff_pods(current, desired)` is a plan, not an action (STYLE.md §2): pods to create, pods to
update in place and names to delete. It compares only what expansion writes (labels,
annotations, spec), so the store's `metadata.revision`, placement's `assignment` and a node's
`status` on the current pods never cause an update. Pure: no I/O, no clocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from edgenode.objects._deployment import (
    DEPLOYMENT_LABEL,
    OWNER_ANNOTATION,
    VERSION_LABEL,
    PinnedDeployment,
    owner_ref,
    pod_name,
)
from edgenode.objects._errors import ObjectError
from edgenode.objects._kinds import to_document
from edgenode.objects._parse import parse_document

PodDoc = dict[str, Any]
"""A pod's plain document, as the store keeps it."""

#: Fields of a stored document that are not the user's (the store's, placement's, a node's).
_NOT_WRITTEN = ("status", "assignment")


class ExpansionError(ObjectError, ValueError):
    """A document could not be expanded into pods; nothing was expanded or changed."""


class PodDiff(NamedTuple):
    """From the pods there are to the pods wanted: three buckets, each in replica order."""

    create: dict[str, PodDoc]
    """Pods wanted that do not exist, by name: their whole documents."""
    update: dict[str, PodDoc]
    """Pods that exist with other labels, annotations or spec, by name: the wanted documents."""
    delete: tuple[str, ...]
    """Names of pods that exist and are no longer wanted."""

    def is_empty(self) -> bool:
        """True when current and desired already agree."""
        return not (self.create or self.update or self.delete)


def _model(deployment: Mapping[str, Any] | PinnedDeployment) -> PinnedDeployment:
    if isinstance(deployment, PinnedDeployment):
        return deployment
    if deployment.get("kind") != "PinnedDeployment":
        raise ExpansionError(
            f"expected a PinnedDeployment document, got kind {deployment.get('kind')!r}; "
            "nothing was expanded"
        )
    metadata = deployment.get("metadata")
    meta = (
        {k: v for k, v in metadata.items() if k != "revision"}
        if isinstance(metadata, dict)
        else metadata
    )
    body = {k: v for k, v in deployment.items() if k not in _NOT_WRITTEN}
    model = parse_document({**body, "metadata": meta}, source="store").model
    assert isinstance(model, PinnedDeployment)
    return model


def _clone(value: Any) -> Any:
    """A copy of a plain document (maps, lists, scalars) that shares nothing mutable."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def expand(deployment: Mapping[str, Any] | PinnedDeployment) -> dict[str, PodDoc]:
    """Every pod of a PinnedDeployment (its document or model), by name, in replica order.

    A document may be a stored one (`metadata.revision`, `status` are ignored). Raises
    `ManifestError` if it is not a valid PinnedDeployment, `ExpansionError` if it is another
    kind; nothing is changed either way.
    """
    model = _model(deployment)
    name = model.metadata.name
    annotations = {OWNER_ANNOTATION: owner_ref(name)}
    pods: dict[str, PodDoc] = {}
    for vname, version in model.spec.versions.items():
        spec = to_document(version.template.spec)
        labels = {**version.template.metadata.labels, DEPLOYMENT_LABEL: name, VERSION_LABEL: vname}
        labels = dict(sorted(labels.items()))
        for index in range(version.replicas):
            pname = pod_name(name, vname, index)
            pods[pname] = {
                "kind": "Pod",
                "metadata": {
                    "name": pname,
                    "labels": dict(labels),
                    "annotations": dict(annotations),
                },
                "spec": _clone(spec),
            }
    return pods


def owned_pods(pods: Mapping[str, Mapping[str, Any]], deployment: str) -> dict[str, PodDoc]:
    """The pods of `pods` that PinnedDeployment `deployment` made (by `edgenode.io/owner`)."""
    owner = owner_ref(deployment)
    out: dict[str, PodDoc] = {}
    for name, doc in pods.items():
        metadata = doc.get("metadata")
        notes = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        if isinstance(notes, Mapping) and notes.get(OWNER_ANNOTATION) == owner:
            out[name] = dict(doc)
    return out


def _written(doc: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What expansion writes of a pod document: its labels, annotations and spec."""
    metadata = doc.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    return (meta.get("labels") or {}, meta.get("annotations") or {}, doc.get("spec"))


def replica_order(name: str) -> tuple[str, int, str]:
    """Sort key of pod names: by version, then by index as a number (`v1-2` before `v1-10`)."""
    head, dash, tail = name.rpartition("-")
    if dash and tail.isdigit():
        return (head, int(tail), "")
    return (name, -1, name)


def diff_pods(
    current: Mapping[str, Mapping[str, Any]], desired: Mapping[str, Mapping[str, Any]]
) -> PodDiff:
    """The pods to create, update in place and delete to turn `current` into `desired`.

    Both map pod names to documents (`desired` as `expand` gives it, `current` as stored, for
    one deployment: see `owned_pods`). Only labels, annotations and spec are compared.
    """
    create: dict[str, PodDoc] = {}
    update: dict[str, PodDoc] = {}
    for name in sorted(desired, key=replica_order):
        wanted = desired[name]
        if name not in current:
            create[name] = dict(wanted)
        elif _written(current[name]) != _written(wanted):
            update[name] = dict(wanted)
    delete = tuple(sorted((n for n in current if n not in desired), key=replica_order))
    return PodDiff(create=create, update=update, delete=delete)
