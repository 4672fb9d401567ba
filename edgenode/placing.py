"""Placement on a running node: read the replicated pods and the membership view, decide with
the pure `edgenode._placement.place`, write this node's own decisions.

Theory of operation. Every node runs `NodePlacement.run` at the start of each reconcile
round (a store change, a membership change, the plan's own next wake, the periodic resync).
It reads every Pod and Node from the store, turns them into `PodWants` and `NodeView`s
(`edgenode._placement_inputs`) with the membership view the daemon snapshotted on its loop,
asks `place` for a plan and commits `my_actions(plan, me)`: the assignments of the pods this
node takes and the releases of those it gives up, each one change of manager ``placement``
signed by this node, all of one round in one store transaction. The other nodes write their
own shares; the local reconciler then runs what the store assigns here and stops what it no
longer does. The plan is kept (`last`) so `why` can say why a pod waits.

By default (`majority=True`) the pods of a lost node move only while this node's view holds a
majority of the cluster's nodes alive (`edgenode._placement.holds_majority`): a node cut off
from the mesh, or restarted without network, keeps running its own pods and takes no one
else's. When its view comes to hold a majority again (a partition heals), the nodes it still
holds dead get their pods' `lostAfter` from that moment before anything moves: it held them
dead while it could not tell their death from its own isolation, and membership needs a
moment to merge. A lone node (no mesh) sees only itself, and places every pod that fits it.

A pod whose stored spec does not parse is left out of placement (it keeps its assignment, if
any) and logged once per spec; `why` says it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from edgenode._placement import Plan, PodWants, Waiting, my_actions, place
from edgenode._placement_inputs import (
    MajorityClock,
    assignment_of,
    assignment_ops,
    node_views,
    pod_wants,
    with_assignment,
)
from edgenode.objects import ObjectError
from edgenode.podspec import stored_pod
from store import Store, StoreError

log = structlog.get_logger("edgenode.placement")

Members = Mapping[str, tuple[str, float]]
"""Each member's state (alive, suspect, dead, left) and since when (wall-clock seconds)."""


@dataclass
class Outcome:
    """What one round decided and wrote."""

    plan: Plan
    written: list[str] = field(default_factory=list)
    """The pods whose assignment this node changed, by name."""


class NodePlacement:
    """Placement as done by node `store.node_id` (see the module docstring). Not
    thread-safe: one round at a time (the daemon's reconcile loop)."""

    def __init__(self, store: Store, *, started_at: float, majority: bool = True) -> None:
        self.store = store
        self.me = store.node_id
        self.started_at = started_at
        self.majority = majority
        self.last: Plan | None = None
        self.unparsable: dict[str, str] = {}
        """Pods left out of placement, with the reason."""
        self._wants: dict[str, tuple[str, PodWants | None]] = {}
        self._majority = MajorityClock(started_at)

    @property
    def majority_since(self) -> float:
        """When this node's view last came to hold a majority (`place`'s `majority_since`)."""
        return self._majority.since

    def waiting(self, pod: str) -> Waiting | None:
        """Why pod `pod` waits for a node, as of the last round, or None."""
        if self.last is None:
            return None
        return next((w for w in self.last.waiting if w.pod == pod), None)

    def _pods(self) -> tuple[list[PodWants], dict[str, Any]]:
        wants: list[PodWants] = []
        docs: dict[str, Any] = {}
        for doc in self.store.list_objects("Pod"):
            name = doc["metadata"]["name"]
            docs[name] = doc
            key = json.dumps([doc.get("spec"), doc["metadata"].get("labels")], sort_keys=True)
            cached = self._wants.get(name)
            if cached is None or cached[0] != key:
                try:
                    parsed: PodWants | None = pod_wants(doc, stored_pod(doc).spec)
                    self.unparsable.pop(name, None)
                except (ObjectError, ValueError) as exc:
                    parsed = None
                    self.unparsable[name] = str(exc)
                    log.warning("pod_not_placeable", pod=name, error=str(exc))
                cached = self._wants[name] = (key, parsed)
            if cached[1] is not None:
                wants.append(with_assignment(cached[1], doc))
        for gone in self._wants.keys() - docs.keys():
            del self._wants[gone]
            self.unparsable.pop(gone, None)
        return wants, docs

    def run(self, members: Members, *, now: float) -> Outcome:
        """One round at wall-clock time `now`: decide, and write this node's share."""
        wants, docs = self._pods()
        views = node_views(
            self.store.list_objects("Node"), members, me=self.me, since=self.started_at
        )
        now = round(now, 3)
        since = self._majority.update(views, now=now)
        plan = place(wants, views, now=now, majority=self.majority, majority_since=since)
        self.last = plan
        outcome = Outcome(plan)
        mine = my_actions(plan, self.me)
        if not mine:
            return outcome
        todo = [(w, ops) for w in mine if (ops := assignment_ops(w, assignment_of(docs[w.pod])))]
        try:
            with self.store.batch():  # one transaction, one sync, for the whole round
                for w, ops in todo:
                    self.store.commit("Pod", w.pod, ops, manager="placement")
        except StoreError:
            # One refusal (an owner changed by hand, say) aborts the batch: write them one by
            # one, so the rest still lands and each refusal is logged.
            for w, ops in todo:
                try:
                    self.store.commit("Pod", w.pod, ops, manager="placement")
                except StoreError as exc:
                    log.warning("placement_refused", pod=w.pod, kind=w.kind, error=str(exc))
                    continue
                outcome.written.append(w.pod)
        else:
            outcome.written = [w.pod for w, _ in todo]
        for w, _ in todo:
            if w.pod in outcome.written:
                log.info("pod_" + w.kind, pod=w.pod, node=self.me, message=w.message)
        return outcome
