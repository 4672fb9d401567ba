"""What placement reads, made from replicated documents and a membership view; what it
writes, as store operations.

Theory of operation. `edgenode._placement.place` takes plain values (`PodWants`, `NodeView`);
a running node holds documents (its store's Pods and Nodes) and a membership view (each
member's state and since when this node has believed it). This module turns the one into the
other, and a decision (`Write`) back into the operations of one change:

- `pod_wants(doc, spec)`: a stored Pod and its parsed spec → its wants: the declared cpu and
  memory of its containers (summed), `spec.nodeSelector`, `spec.node`, the node-loss rule in
  force (`edgenode.objects.node_loss_rule`: defaults included) and its current assignment.
- `node_views(nodes, members, me=..., since=...)`: every node the cluster knows (its Node
  objects, plus members not yet published) → views: labels from `metadata.labels`, capacity
  from `status.capacity`, cordon from `spec.unschedulable`, and the state this node's
  membership holds. This node is always alive. A node with a Node object that membership has
  not (yet) reported is counted as dead since `since` (when this node started): it is part of
  the cluster, so it counts against a majority, and its pods are lost from then, not from
  their assignment's time.
- `assignment_ops(write)`: the `set`/`del` operations of ``assignment.node``, ``.at`` and
  ``.previous`` (or of the whole ``assignment`` for a release).
- `MajorityClock`: when this node's view last came to hold a majority, `place`'s
  ``majority_since``, from one round's views to the next.

Pure: no I/O, no clocks; times are arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from edgenode._placement import (
    Assignment,
    NodeState,
    NodeView,
    PodWants,
    Write,
    holds_majority,
)
from edgenode.objects._deployment import DEPLOYMENT_LABEL, VERSION_LABEL
from edgenode.objects._errors import QuantityError
from edgenode.objects._nodeloss import node_loss_rule
from edgenode.objects._pod import PodSpec
from edgenode.objects._quantity import cpu_millis, memory_bytes
from store._change import Op

ASSIGNMENT = ("assignment",)
_STATES: frozenset[str] = frozenset({"alive", "suspect", "dead", "left"})


def assignment_of(doc: Mapping[str, Any]) -> Assignment | None:
    """A stored pod's assignment, or None (none, or one without a node)."""
    raw = doc.get("assignment")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("node"), str):
        return None
    at = raw.get("at")
    previous = raw.get("previous")
    return Assignment(
        raw["node"],
        float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
        previous if isinstance(previous, str) else None,
    )


def pod_wants(doc: Mapping[str, Any], spec: PodSpec) -> PodWants:
    """The wants of a stored Pod whose spec parses as `spec` (`edgenode.podspec.stored_pod`)."""
    cpu = memory = 0
    for container in spec.containers.values():
        if container.resources.cpu is not None:
            cpu += cpu_millis(container.resources.cpu)
        if container.resources.memory is not None:
            memory += memory_bytes(container.resources.memory)
    rule = node_loss_rule(spec)
    labels = (doc.get("metadata") or {}).get("labels") or {}
    owner = None
    if DEPLOYMENT_LABEL in labels and VERSION_LABEL in labels:
        owner = f"{labels[DEPLOYMENT_LABEL]}@{labels[VERSION_LABEL]}"
    return PodWants(
        name=doc["metadata"]["name"],
        cpu=cpu,
        memory=memory,
        selector=dict(spec.node_selector),
        pinned=spec.node,
        policy=rule.policy,
        lost_after=float(rule.lost_after_s or 0),
        on_return=rule.on_return or "keep-replacement",
        assignment=assignment_of(doc),
        owner=owner,
    )


def with_assignment(wants: PodWants, doc: Mapping[str, Any]) -> PodWants:
    """`wants` (kept from an earlier parse of the same spec) with the document's current
    assignment."""
    return replace(wants, assignment=assignment_of(doc))


def _capacity(status: Mapping[str, Any], key: str) -> int | None:
    value = ((status.get("capacity") or {}) if isinstance(status, Mapping) else {}).get(key)
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return _quantity(key, value)  # every round reads every node's: parsed once each
    return _quantity.__wrapped__(key, value)


@lru_cache(maxsize=1024)
def _quantity(key: str, value: Any) -> int | None:
    try:
        return cpu_millis(value) if key == "cpu" else memory_bytes(value)
    except QuantityError:
        return None  # a node's own report it cannot read: no declared limit


def node_views(
    nodes: Iterable[Mapping[str, Any]],
    members: Mapping[str, tuple[str, float]],
    *,
    me: str,
    since: float,
) -> list[NodeView]:
    """The membership view placement decides on (see the module docstring).

    `nodes`: the cluster's Node documents; `members`: each member's state (alive, suspect,
    dead, left; anything else counts as dead) and since when; `me`: this node; `since`: when
    this node started (the loss time of nodes it has not heard of)."""
    docs = {d["metadata"]["name"]: d for d in nodes}
    out: list[NodeView] = []
    for name in sorted(set(docs) | set(members) | {me}):
        doc = docs.get(name) or {}
        labels = (doc.get("metadata") or {}).get("labels") or {}
        status = doc.get("status") or {}
        unschedulable = bool((doc.get("spec") or {}).get("unschedulable", False))
        state: NodeState
        if name == me:
            state, entered = "alive", since
        elif name in members:
            raw, entered = members[name]
            state = raw if raw in _STATES else "dead"  # type: ignore[assignment]
        else:
            state, entered = "dead", since
        out.append(
            NodeView(
                name,
                state,
                entered,
                {str(k): str(v) for k, v in labels.items()},
                _capacity(status, "cpu"),
                _capacity(status, "memory"),
                not unschedulable,
            )
        )
    return out


def assignment_ops(write: Write, current: Assignment | None) -> list[Op]:
    """The operations of the change that carries out `write` (manager ``placement``) on a pod
    whose assignment is `current`: only the fields that change."""
    a = write.assignment
    if a is None:
        return [Op("del", ASSIGNMENT)] if current is not None else []
    ops = []
    if current is None or current.node != a.node:
        ops.append(Op("set", (*ASSIGNMENT, "node"), a.node))
    if current is None or current.at != a.at:
        ops.append(Op("set", (*ASSIGNMENT, "at"), a.at))
    if a.previous is not None and (current is None or current.previous != a.previous):
        ops.append(Op("set", (*ASSIGNMENT, "previous"), a.previous))
    elif a.previous is None and current is not None and current.previous is not None:
        ops.append(Op("del", (*ASSIGNMENT, "previous")))
    return ops


@dataclass(slots=True)
class MajorityClock:
    """When a node's view last came to hold a majority (`place`'s ``majority_since``).

    `since` starts as when the node started, and `held` as False: a node's first round that
    holds a majority starts the clock, so nodes it still holds dead then get their pods'
    `lostAfter` from that round (it cannot tell their death from its own late start)."""

    since: float
    held: bool = False

    def update(self, views: Iterable[NodeView], *, now: float) -> float:
        """The `majority_since` of a round at `now` over `views`."""
        held = holds_majority(views)
        if held and not self.held:
            self.since = now
        self.held = held
        return self.since
