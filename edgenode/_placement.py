"""Leaderless placement: which node runs each pod, decided by every node alike, as data.

Theory of operation. Every node holds the same replicated pods (each with its wants and its
current assignment) and its own membership view (each node's state, since when, labels and
capacity). `place(pods, nodes, now=...)` is a pure function of those: no I/O, no clock, no
randomness, and no dependence on input order, so two nodes whose views agree compute the same
`Plan`, item for item. The plan is named buckets (STYLE.md §2); nothing is written here.
`my_actions(plan, me)` picks the writes node ``me`` owns: the node that takes a pod writes its
assignment (assign, move), the node that gives a pod up writes the release (unassign, settle),
so when views agree no two nodes write the same field for the same decision.

The assignment (`Assignment`) is three fields owned by the ``placement`` manager: ``node``,
``at`` (when it was made, the plan's ``now``) and ``previous``: the node the pod ran on before
a node-loss move (its *original*); None otherwise. A chain of losses keeps the first original.

Each pod, in name order, lands in one case (checked in this order):

1. unassigned: it needs a node (``assign``, or ``waiting`` with reason ``no-fit``).
2. its node is in the view but no longer matches its pin (``spec.node``) or selector: it needs
   another node (``move``, cause ``mismatch``), or is released (``unassign``, then ``waiting``).
3. it has an original node that is alive again: with ``keep-original`` and a matching original
   it goes back if it fits there (``move``, cause ``original-returned``; tried in name order
   until no more fits, so one freeing room makes room in the same plan); otherwise, while its
   current node is alive or suspect, the original is forgotten (``settle``: ``previous`` is
   cleared; the returned node already sees the pod is not its own and stops its copy).
4. its node is dead or left (lost since then, or since the assignment if that is later), or
   gone from the view (lost since the assignment was made):
   ``best-effort`` waits for it (``waiting``, reason ``best-effort``); ``reschedule`` waits
   ``lostAfter`` from the loss (``waiting``, reason ``lost-node``, `Plan.next_wake`), then needs
   another node (``move``, cause ``node-lost``, or ``waiting`` with reason ``no-fit``). With
   ``majority=True`` it moves only while the view holds a majority of its nodes alive
   (`holds_majority`); else it waits (reason ``no-majority``): the minority side of a
   partition, or a node restarted with no network, keeps its own pods and takes no others.
5. otherwise (alive, or suspect: suspect is not dead) it stays (``keep``).

Resource fit: each node's load starts as the declared cpu and memory of every pod assigned to
it; pods that leave are subtracted first; then returning pods, then pods needing a node (both
in name order) are added as they are placed. A pod is placed only on an alive node that
matches its pin and selector, is not cordoned (`NodeView.schedulable`) and has room; a node
without a declared capacity has no limit.
Kept pods are never evicted, even when a node's capacity shrank below its load.

Choice: each pod prefers nodes by a score of the pair (pod name, node name): the clockwise
distance on a 64-bit hash ring from the pod's point to the nearest of the node's points
(`pair_score`, ties by node name; the ring is `edgenode._placement_ring`). Like rendezvous
hashing, a node missing from one view changes only the choices of pods that preferred it, so
views that differ slightly still mostly agree; unlike a full rendezvous scan (O(nodes) per
pod) a ring walk is O(log nodes).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal, TypeVar

from edgenode._placement_ring import RING, UNLIMITED, Ring, node_points, pod_point

NodeState = Literal["alive", "suspect", "dead", "left"]
NodeLossPolicy = Literal["reschedule", "best-effort"]
OnReturn = Literal["keep-replacement", "keep-original"]
MoveCause = Literal["node-lost", "mismatch", "original-returned"]
WaitReason = Literal["no-fit", "lost-node", "best-effort", "no-majority"]
WriteKind = Literal["assign", "move", "unassign", "settle"]

LOST_AFTER_S = 30.0
"""Default `PodWants.lost_after` (the object schema's own default, ``lostAfter: 30s``): seconds
(>= 0) a ``reschedule`` pod waits after its node is lost before it moves. Lower moves sooner
after a real loss, and moves more pods on a false one."""

_LOST: frozenset[str] = frozenset({"dead", "left"})
_HOLDS: frozenset[str] = frozenset({"alive", "suspect"})


class PlacementError(ValueError):
    """The caller's inputs are inconsistent (a duplicate name, a negative size); nothing was
    decided."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a pod is assigned (the fields the ``placement`` manager owns)."""

    node: str
    at: float
    """When the assignment was made (seconds, the same clock as ``now``)."""
    previous: str | None = None
    """The node the pod ran on before a node-loss move (its original), or None."""


@dataclass(frozen=True, slots=True)
class PodWants:
    """What placement needs of a pod."""

    name: str
    cpu: int = 0
    """Declared cpu of all its containers, millicores (>= 0)."""
    memory: int = 0
    """Declared memory of all its containers, bytes (>= 0)."""
    selector: Mapping[str, str] = field(default_factory=dict)
    """``spec.nodeSelector``: labels a node must carry, all of them."""
    pinned: str | None = None
    """``spec.node``: the only node it may run on, or None."""
    policy: NodeLossPolicy = "reschedule"
    lost_after: float = LOST_AFTER_S
    """Seconds (>= 0) after its node is lost before a ``reschedule`` pod moves."""
    on_return: OnReturn = "keep-replacement"
    assignment: Assignment | None = None
    owner: str | None = None
    """The deployment and version it belongs to (``web@v2``), if any: for display and
    grouping; decisions do not depend on it."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as this node's membership view has it."""

    name: str
    state: NodeState = "alive"
    since: float = 0.0
    """When it entered `state` (seconds, the same clock as ``now``)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu: int | None = None
    """Capacity in millicores (>= 0); None: not declared, no limit."""
    memory: int | None = None
    """Capacity in bytes (>= 0); None: not declared, no limit."""
    schedulable: bool = True
    """False: cordoned (``spec.unschedulable``): it keeps the pods it has and takes no other."""


@dataclass(frozen=True, slots=True)
class Assign:
    pod: str
    node: str
    message: str


@dataclass(frozen=True, slots=True)
class Move:
    pod: str
    source: str
    target: str
    cause: MoveCause
    previous: str | None
    """What the new assignment records as the original (None: none)."""
    message: str


@dataclass(frozen=True, slots=True)
class Unassign:
    pod: str
    node: str
    """The node it is released from (the one that writes the release)."""
    message: str


@dataclass(frozen=True, slots=True)
class Settle:
    pod: str
    node: str
    """Where it stays (the one that writes the change)."""
    dropped: str
    """The original node it no longer goes back to."""
    at: float
    """The assignment's time, unchanged."""
    message: str


@dataclass(frozen=True, slots=True)
class Waiting:
    pod: str
    reason: WaitReason
    node: str | None
    """Its assignment after this plan (a lost node), or None."""
    until: float | None
    """When the decision changes by itself (a ``lost-node`` wait ends), or None."""
    message: str
    nodes: Mapping[str, str] = field(default_factory=dict)
    """``no-fit``: each node of the view, in name order, and why it does not take the pod."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Decisions in named buckets, each sorted by pod name. A pod is in exactly one bucket,
    except that a pod in `unassign` is also in `waiting` (it waits for a node afterwards)."""

    now: float
    keep: tuple[str, ...] = ()
    assign: tuple[Assign, ...] = ()
    move: tuple[Move, ...] = ()
    unassign: tuple[Unassign, ...] = ()
    settle: tuple[Settle, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    next_wake: float | None = None
    """The earliest time this plan changes without a new input (a ``lostAfter`` ending)."""

    def decisions(self) -> dict[str, str]:
        """Each pod by its bucket (``unassign`` rather than ``waiting``), in name order."""
        out = {w.pod: "waiting" for w in self.waiting}
        out |= {n: "keep" for n in self.keep}
        out |= {a.pod: "assign" for a in self.assign}
        out |= {m.pod: "move" for m in self.move}
        out |= {u.pod: "unassign" for u in self.unassign}
        out |= {s.pod: "settle" for s in self.settle}
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class Write:
    """One assignment change: `writer` sets the pod's assignment to `assignment` (None:
    deletes it), as manager ``placement``."""

    pod: str
    writer: str
    kind: WriteKind
    assignment: Assignment | None
    message: str


def writes(plan: Plan) -> list[Write]:
    """Every assignment change of `plan`, each with the node that owns it, by pod name."""
    out = [
        Write(a.pod, a.node, "assign", Assignment(a.node, plan.now), a.message) for a in plan.assign
    ]
    out += [
        Write(m.pod, m.target, "move", Assignment(m.target, plan.now, m.previous), m.message)
        for m in plan.move
    ]
    out += [Write(u.pod, u.node, "unassign", None, u.message) for u in plan.unassign]
    out += [
        Write(s.pod, s.node, "settle", Assignment(s.node, s.at), s.message) for s in plan.settle
    ]
    return sorted(out, key=lambda w: w.pod)


def my_actions(plan: Plan, me: str) -> list[Write]:
    """The changes node `me` writes: assignments of pods it takes, releases of pods it gives
    up, and forgetting the original of pods it keeps. A dead node's share waits for its return."""
    return [w for w in writes(plan) if w.writer == me]


def apply(pods: Iterable[PodWants], plan: Plan) -> list[PodWants]:
    """`pods` with every write of `plan` done (as once every node has written its share)."""
    changed = {w.pod: w.assignment for w in writes(plan)}
    return [replace(p, assignment=changed[p.name]) if p.name in changed else p for p in pods]


def pair_score(pod: str, node: str) -> int:
    """How much `pod` prefers `node`: lower is preferred (ties by node name). The clockwise
    ring distance from the pod's point to the nearest of the node's points."""
    start = pod_point(pod)
    return min((p - start) % RING for p in node_points(node))


def place(
    pods: Iterable[PodWants],
    nodes: Iterable[NodeView],
    *,
    now: float,
    majority: bool = False,
    majority_since: float = 0.0,
) -> Plan:
    """The placement decisions for `pods` given the membership view `nodes`, at `now`.

    `majority`: pods leave a lost node only while the view holds a majority of its nodes
    alive (`holds_majority`); otherwise they wait, reason ``no-majority``. Off, any view
    replaces the pods of the nodes it has lost, however few nodes it sees. `majority_since`:
    when the view last came to hold a majority; a loss counts from then at the earliest (a
    node back from a partition held the others dead while it could not tell their death from
    its own isolation: those it still holds dead get their `lostAfter` to show up again).

    Raises `PlacementError` (and decides nothing) on duplicate names or negative sizes."""
    by_pod = _by_name(pods, "pod")
    view = _by_name(nodes, "node")
    for p in by_pod.values():
        if p.cpu < 0 or p.memory < 0 or p.lost_after < 0:
            raise PlacementError(
                f"pod {p.name}: cpu, memory and lost_after must be >= 0, got cpu={p.cpu}, "
                f"memory={p.memory}, lost_after={p.lost_after}; nothing was decided"
            )
    takeover = not majority or holds_majority(view.values())
    lost_from = majority_since if majority else 0.0
    placer = _Placer(view, now, takeover=takeover, lost_from=lost_from)
    return placer.run([by_pod[n] for n in sorted(by_pod)])


def holds_majority(nodes: Iterable[NodeView]) -> bool:
    """Whether a view holds a majority of its nodes alive.

    Counted over the nodes that have not left (a node that left on purpose does not count).
    Exactly half is a majority when the alive half holds the first of those nodes by name, so
    of two sides of an even split exactly one may replace the other's pods (a two-node
    cluster where the second node is lost, say). An empty view holds none."""
    counted = sorted((n.name, n.state) for n in nodes if n.state != "left")
    alive = sum(1 for _, state in counted if state == "alive")
    if 2 * alive != len(counted):
        return 2 * alive > len(counted)
    return alive > 0 and counted[0][1] == "alive"


class _Placer:
    """One `place` call: the loads, the rings and the buckets as they fill."""

    def __init__(
        self, view: dict[str, NodeView], now: float, *, takeover: bool, lost_from: float
    ) -> None:
        self.view = view
        self.names = tuple(sorted(view))
        self.now = now
        self.takeover = takeover
        self.lost_from = lost_from
        self.load: dict[str, list[int]] = {n: [0, 0] for n in view}
        self.rings: dict[tuple[tuple[str, str], ...], Ring] = {}
        self.keep: list[str] = []
        self.assign: list[Assign] = []
        self.move: list[Move] = []
        self.unassign: list[Unassign] = []
        self.settle: list[Settle] = []
        self.waiting: list[Waiting] = []

    @cached_property
    def counted(self) -> tuple[int, int]:
        """The view's alive nodes and the nodes a majority counts (once, for every message)."""
        alive = sum(1 for n in self.view.values() if n.state == "alive")
        return alive, sum(1 for n in self.view.values() if n.state != "left")

    def run(self, pods: list[PodWants]) -> Plan:
        for p in pods:  # `_add` inlined: this loop is a good part of a steady round
            load = self.load.get(p.assignment.node) if p.assignment is not None else None
            if load is not None:
                load[0] += p.cpu
                load[1] += p.memory
        needs: list[tuple[PodWants, str]] = []  # (pod, why it needs a node)
        returns: list[PodWants] = []
        view, keep = self.view, self.keep
        for p in pods:
            # Most pods of a steady cluster, decided inline: on an alive or suspect node of the
            # view, no original, no pin or selector to check (as `_classify` would: case 5).
            a = p.assignment
            if a is not None and a.previous is None and p.pinned is None and not p.selector:
                node = view.get(a.node)
                if node is not None and node.state in _HOLDS:
                    keep.append(p.name)
                    continue
            self._classify(p, needs, returns, consider_return=True)
        while returns:  # name order; again while a pod going back freed room one before needs
            full = [p for p in returns if not self._goes_back(p)]
            if len(full) == len(returns):
                break
            returns = full
        for p in returns:  # its original is full: it stays, as if the original had not returned
            self._classify(p, needs, [], consider_return=False)
        for p, why in sorted(needs, key=lambda n: n[0].name):
            self._find_node(p, why)
        wakes = [w.until for w in self.waiting if w.until is not None]
        return Plan(
            now=self.now,
            keep=tuple(sorted(self.keep)),
            assign=tuple(sorted(self.assign, key=lambda d: d.pod)),
            move=tuple(sorted(self.move, key=lambda d: d.pod)),
            unassign=tuple(sorted(self.unassign, key=lambda d: d.pod)),
            settle=tuple(sorted(self.settle, key=lambda d: d.pod)),
            waiting=tuple(sorted(self.waiting, key=lambda d: d.pod)),
            next_wake=min(wakes, default=None),
        )

    def _goes_back(self, p: PodWants) -> bool:
        """Moves a returning pod back to its original node if it fits there."""
        a = p.assignment
        assert a is not None and a.previous is not None
        original = self.view[a.previous]
        if not self._fits(p, original):
            return False
        self._add(a.node, p, -1)
        self._add(original.name, p, 1)
        message = f"back to its original node {original.name}, alive again (keep-original)"
        self.move.append(Move(p.name, a.node, original.name, "original-returned", None, message))
        return True

    def _classify(
        self,
        p: PodWants,
        needs: list[tuple[PodWants, str]],
        returns: list[PodWants],
        *,
        consider_return: bool,
    ) -> None:
        a = p.assignment
        if a is None:
            needs.append((p, "new"))
            return
        node = self.view.get(a.node)
        if node is not None and _mismatch(p, node) is not None:
            self._add(a.node, p, -1)
            needs.append((p, "mismatch"))
            return
        if consider_return and a.previous is not None and a.previous != a.node:
            original = self.view.get(a.previous)
            if original is not None and original.state == "alive":
                if (
                    p.on_return == "keep-original"
                    and original.schedulable
                    and _mismatch(p, original) is None
                ):
                    returns.append(p)
                    return
                if node is not None and node.state in _HOLDS:
                    self.settle.append(
                        Settle(
                            p.name,
                            a.node,
                            a.previous,
                            a.at,
                            f"stays on {a.node}; its original node {a.previous} is alive again "
                            f"and stops its copy ({p.on_return})",
                        )
                    )
                    return
        if node is None or node.state in _LOST:
            # Lost since the later of its node's loss and the assignment: a pod assigned to a
            # node this view holds dead was assigned by a view that saw the node alive then
            # (a node back from the dead moving its pods home), so it gets its lostAfter too.
            since = max(a.at if node is None else max(node.since, a.at), self.lost_from)
            if node is None:
                lost = f"not in the membership view since it was assigned at {a.at:g}"
            else:
                lost = f"{node.state} since {node.since:g}"
            if p.policy == "best-effort":
                message = f"best-effort: waits for its node {a.node} ({lost})"
                self.waiting.append(Waiting(p.name, "best-effort", a.node, None, message))
                return
            deadline = since + p.lost_after
            if self.now < deadline:
                message = f"its node {a.node} is {lost}; moves at {deadline:g} (lostAfter)"
                self.waiting.append(Waiting(p.name, "lost-node", a.node, deadline, message))
                return
            if not self.takeover:
                alive, counted = self.counted
                message = (
                    f"its node {a.node} is {lost}, but this view has only {alive} of "
                    f"{counted} nodes alive, no majority: the pods of lost nodes move only "
                    "where a majority is alive (the other side of a partition may still run "
                    "this one)"
                )
                self.waiting.append(Waiting(p.name, "no-majority", a.node, None, message))
                return
            self._add(a.node, p, -1)
            needs.append((p, "node-lost"))
            return
        self.keep.append(p.name)

    def _find_node(self, p: PodWants, why: str) -> None:
        a = p.assignment
        chosen = self._choose(p)
        if chosen is not None:
            self._add(chosen, p, 1)
            if a is None:
                self.assign.append(Assign(p.name, chosen, f"placed on {chosen}"))
                return
            cause: MoveCause = "node-lost" if why == "node-lost" else "mismatch"
            previous = (a.previous or a.node) if cause == "node-lost" else None
            back = self.view.get(previous) if previous is not None else None
            if previous == chosen or (
                back is not None
                and back.state == "alive"
                and (
                    p.on_return == "keep-replacement"
                    or not back.schedulable
                    or _mismatch(p, back) is not None
                )
            ):
                previous = None  # home again, or back alive and not to be gone back to
            text = (
                f"its node {a.node} is lost"
                if cause == "node-lost"
                else (f"its node {a.node} no longer matches its pin or selector")
            )
            self.move.append(
                Move(p.name, a.node, chosen, cause, previous, f"{text}; moved to {chosen}")
            )
            return
        reasons = {n: self._why_not(p, self.view[n]) for n in sorted(self.view)}
        if not reasons:
            summary = "the membership view holds no node"
        else:
            summary = f"none of {len(reasons)} nodes fits"
        if p.pinned is not None and p.pinned not in self.view:
            summary = f"pinned to {p.pinned}, which is not in the membership view"
        if a is None:
            self.waiting.append(Waiting(p.name, "no-fit", None, None, summary, reasons))
            return
        if why == "mismatch":
            text = f"{a.node} no longer matches its pin or selector and {summary}"
            self.unassign.append(Unassign(p.name, a.node, f"released from {text}"))
            self.waiting.append(Waiting(p.name, "no-fit", None, None, text, reasons))
            return
        self._add(a.node, p, 1)  # stays assigned to its lost node until a node fits
        text = f"its node {a.node} is lost and {summary}"
        self.waiting.append(Waiting(p.name, "no-fit", a.node, None, text, reasons))

    def _choose(self, p: PodWants) -> str | None:
        if p.pinned is not None:
            node = self.view.get(p.pinned)
            ok = node is not None and _takes_pods(node) and _mismatch(p, node) is None
            return p.pinned if ok and node is not None and self._fits(p, node) else None
        key = tuple(sorted(p.selector.items()))
        ring = self.rings.get(key)
        if ring is None:
            members = frozenset(
                n.name for n in self.view.values() if _takes_pods(n) and _mismatch(p, n) is None
            )
            ring = self.rings[key] = Ring(members, self.names)
        if not ring.size or p.cpu > ring.cpu_bound or p.memory > ring.memory_bound:
            return None
        seen: set[str] = set()
        i = bisect_left(ring.points, pod_point(p.name))
        total = len(ring.points)
        best_cpu = best_memory = 0
        for step in range(total):
            name = ring.owners[(i + step) % total]
            if name in seen:
                continue
            node = self.view[name]
            if self._fits(p, node):
                return name
            seen.add(name)
            cpu, memory = self._free(node)
            best_cpu, best_memory = max(best_cpu, cpu), max(best_memory, memory)
            if len(seen) == ring.size:
                break
        ring.cpu_bound, ring.memory_bound = best_cpu, best_memory  # loads only grow from here
        return None

    def _add(self, node: str, p: PodWants, sign: int) -> None:
        load = self.load.get(node)
        if load is not None:
            load[0] += sign * p.cpu
            load[1] += sign * p.memory

    def _free(self, node: NodeView) -> tuple[int, int]:
        load = self.load[node.name]
        cpu = UNLIMITED if node.cpu is None else node.cpu - load[0]
        memory = UNLIMITED if node.memory is None else node.memory - load[1]
        return cpu, memory

    def _fits(self, p: PodWants, node: NodeView) -> bool:
        cpu, memory = self._free(node)
        return p.cpu <= cpu and p.memory <= memory

    def _why_not(self, p: PodWants, node: NodeView) -> str:
        if node.state != "alive":
            return f"{node.state} since {node.since:g} (only alive nodes take pods)"
        if not node.schedulable:
            return "cordoned (spec.unschedulable): it keeps its pods and takes no other"
        mismatch = _mismatch(p, node)
        if mismatch is not None:
            return mismatch
        cpu, memory = self._free(node)
        if p.cpu > cpu:
            return f"cpu {p.cpu}m wanted, {max(cpu, 0)}m free of {node.cpu}m"
        if p.memory > memory:
            return f"memory {p.memory} B wanted, {max(memory, 0)} B free of {node.memory} B"
        return "fits"  # not reached: `_choose` takes a node that fits


_T = TypeVar("_T", PodWants, NodeView)


def _takes_pods(node: NodeView) -> bool:
    return node.state == "alive" and node.schedulable


def _mismatch(p: PodWants, node: NodeView) -> str | None:
    """Why `node` does not match the pod's pin or selector, or None."""
    if p.pinned is not None and p.pinned != node.name:
        return f"the pod is pinned to {p.pinned}"
    labels = node.labels
    if all(labels.get(key) == want for key, want in p.selector.items()):
        return None  # the common case, without sorting: the order only names the first miss
    for key, want in sorted(p.selector.items()):
        have = labels.get(key)
        if have != want:
            held = "no such label" if have is None else f"{key}={have}"
            return f"label {key}={want} wanted, node has {held}"
    return None


def _by_name(items: Iterable[_T], what: str) -> dict[str, _T]:
    out: dict[str, _T] = {}
    for item in items:
        if item.name in out:
            raise PlacementError(f"{what} {item.name} is given twice; nothing was decided")
        out[item.name] = item
    return out
