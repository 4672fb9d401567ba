"""A deterministic simulator of leaderless placement: every node with a view and a store of its own.

Theory of operation. A `PlacementSim` holds ``n`` simulated nodes. Each has what a daemon has
(`edgenode/placing.py`): a membership view (each other node's state and since when *this*
node has believed it), its own copy of the replicated pods' assignments, and a majority clock
(`MajorityClock`). Once per tick, a node whose inputs changed (its view, its store) or whose
last plan's ``next_wake`` has come runs a round exactly as `NodePlacement.run` does: its views
from `node_views` (this node always alive; a node its fresh membership has not reported is
dead since it started), `place(..., majority=..., majority_since=...)`, `my_actions` for its own
share, `assignment_ops` for the fields that change. Its writes land in its own store at once
and reach the others later. A node runs the pods its own store assigns to it; a node cut off
from the rest keeps running them; a crashed node runs nothing, writes nothing, relays nothing.

Time is virtual: ticks of `SimConfig.tick_s` seconds. Nothing reads a clock or does I/O; every
random choice comes from one ``Random(seed)`` drawn in a fixed order (nodes and batches are
always walked by name or creation), so a run is a function of its seed and the commands given.

The world is up/down per node (`crash`, `restart`) and connected components (`partition`,
`heal`). Membership is a model, not the protocol: whenever observer O stops reaching S (S
crashed, a partition), O suspects S after a delay drawn from `SimConfig.suspect_s` and holds it
dead after one drawn from `SimConfig.dead_s`, each pair on its own draw, so observers disagree
for a while; when O reaches S again it holds S alive after `SimConfig.alive_s`, cancelling
what was pending (a short cut is suspected, never declared dead). A restarted node keeps its
store (the store is on disk) and starts with an empty membership: every other node is dead to
it since its start until each is heard from.

The store model is per-field last-writer-wins by ``(time, origin)`` over ``assignment.node``,
``.at`` and ``.previous``, as the store's fold gives (a release deletes all three). A round's
writes are one batch; a batch reaches each up node connected to an up node holding it after
`SimConfig.propagate_ticks` ticks, drawn per batch and receiver from when it became
reachable; across a partition, or to a crashed node, it waits.

The cluster starts settled: every store holds the assignments of the plan of a view where all
nodes are alive, as once every node has written its share and they have spread.

Cost: every round is a real `place` over every pod, about 1–2 ms at 100 nodes and 1000 pods,
and while views change nearly every node runs one per tick, so a run costs about its nodes ×
the ticks in which anything happens (a 40/60 partition and its heal: some 1500 rounds).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgenode._placement import (
    Assignment,
    MoveCause,
    NodeState,
    NodeView,
    Plan,
    PodWants,
    WriteKind,
    my_actions,
    place,
    writes,
)
from edgenode._placement_inputs import (
    ASSIGNMENT,
    MajorityClock,
    assignment_of,
    assignment_ops,
    node_views,
    with_assignment,
)
from store._change import Op

MIB = 1 << 20
ZONES = ("a", "b", "c")
_FIELDS = ("node", "at", "previous")
Stamp = tuple[float, str]
Reg = tuple[Stamp, Any]
"""A field's writer stamp ``(time, origin)`` and value (None: deleted or never written)."""
Regs = tuple[Reg, Reg, Reg]
"""A pod's ``assignment.node``, ``.at`` and ``.previous``."""
_UNWRITTEN: Reg = ((-1.0, ""), None)
_NEVER: Regs = (_UNWRITTEN, _UNWRITTEN, _UNWRITTEN)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulated world's timings. Ranges are ``(low, high)``, drawn uniformly."""

    tick_s: float = 1.0
    """Seconds per tick (> 0): a node runs at most one placement round per tick, and a batch
    of writes takes at least one tick to reach another node."""
    propagate_ticks: tuple[int, int] = (1, 2)
    """Ticks (>= 1) until a batch of writes reaches a node connected to one holding it.
    Higher: duplicates and disagreements last longer."""
    suspect_s: tuple[float, float] = (1.0, 2.0)
    """Seconds until an observer that stopped reaching a node suspects it (< dead_s)."""
    dead_s: tuple[float, float] = (4.5, 6.5)
    """Seconds until an observer that stopped reaching a node holds it dead (the lab measured
    5.3 s for the first observer, 5.7 s for the last). Wider: observers disagree longer."""
    alive_s: tuple[float, float] = (1.0, 3.0)
    """Seconds until an observer that reaches a node again holds it alive."""
    majority: bool = True
    """`place`'s ``majority`` (the daemon's default ``--takeover majority``)."""

    def __post_init__(self) -> None:
        ranges = {"suspect_s": self.suspect_s, "dead_s": self.dead_s, "alive_s": self.alive_s}
        bad = [k for k, (low, high) in ranges.items() if not 0 <= low <= high]
        low, high = self.propagate_ticks
        if self.tick_s <= 0 or not 1 <= low <= high or bad or self.dead_s[0] < self.suspect_s[1]:
            raise ValueError(
                f"SimConfig: tick_s > 0, 1 <= propagate_ticks low <= high, each range "
                f"0 <= low <= high and dead_s after suspect_s wanted, got {self}"
            )


@dataclass(frozen=True, slots=True)
class Written:
    """One assignment change a node wrote, at its round's time."""

    at: float
    writer: str
    pod: str
    kind: WriteKind
    node: str | None
    """The assignment's node after the write (None: released)."""
    previous: str | None
    cause: MoveCause | None = None
    """A move's cause."""


@dataclass(slots=True)
class _Batch:
    """One round's writes, and how far they have spread."""

    stamp: Stamp
    ops: tuple[tuple[str, tuple[Op, ...]], ...]
    holders: set[str]
    due: dict[str, int] = field(default_factory=dict)
    """Receivers reachable from a holder, and the tick the batch reaches each."""
    epoch: int = -1
    """The world's epoch when the batch was last found blocked everywhere it is missing."""


@dataclass(slots=True)
class _Node:
    name: str
    regs: dict[str, Regs]
    wants: dict[str, PodWants]
    runs: set[str]
    members: dict[str, tuple[NodeState, float]]
    started_at: float = 0.0
    majority: MajorityClock = field(default_factory=lambda: MajorityClock(0.0, held=True))
    """Booted with the cluster: it has held a majority since 0."""
    up: bool = True
    dirty: bool = False
    views: list[NodeView] | None = None
    wake: float | None = None
    plan: Plan | None = None
    rounds: int = 0


class PlacementSim:
    """``len(nodes)`` nodes placing ``pods`` (see the module docstring). Commands (`crash`,
    `restart`, `partition`, `heal`) act at `now`; `step` and `run_for` advance time."""

    def __init__(
        self,
        pods: Sequence[PodWants],
        nodes: Sequence[NodeView],
        *,
        seed: int,
        config: SimConfig | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.seed = seed
        self.rng = random.Random(seed)
        self.tick = 0
        self.names = tuple(sorted(n.name for n in nodes))
        self.capacity = {n.name: (n.cpu, n.memory) for n in nodes}
        self.trace: list[Written] = []
        """Every write of every node, in the order made."""
        self.duplicates: list[int] = [0]
        """Per tick (index), how many pods ran on two nodes or more at its end."""
        self._docs = [_node_doc(n) for n in nodes]
        self._base = {p.name: p for p in pods}
        self._wants: dict[tuple[str, Assignment | None], PodWants] = {}
        self._comp = dict.fromkeys(self.names, 0)
        self._epoch = 0
        self._gen: dict[tuple[str, str], int] = {}
        self._membership: dict[int, list[tuple[str, str, NodeState, int]]] = {}
        self._batches: list[_Batch] = []
        self._folds: dict[tuple[Regs, tuple[Op, ...], Stamp], tuple[Regs, Assignment | None]] = {}
        self._runs_changed = False
        self._last_duplicates = 0
        regs, wants = self._boot(pods, nodes)
        self.nodes = {
            name: _Node(
                name,
                dict(regs),
                dict(wants),
                {p for p, w in wants.items() if w.assignment and w.assignment.node == name},
                {o: ("alive", 0.0) for o in self.names if o != name},
            )
            for name in self.names
        }

    # -- the world -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return round(self.tick * self.config.tick_s, 3)

    def crash(self, *names: str) -> None:
        """Stop nodes `names`: they run, write and relay nothing until `restart`."""

        def stop() -> None:
            for name in names:
                self.nodes[name].up = False

        self._change_world(stop)

    def restart(self, *names: str) -> None:
        """Start nodes `names` again with their store as it was and an empty membership."""

        def start() -> None:
            for name in names:
                n = self.nodes[name]
                n.up, n.members, n.started_at = True, {}, self.now
                for other in self.names:  # what its last life had pending is forgotten
                    self._gen[name, other] = self._gen.get((name, other), 0) + 1
                n.majority, n.views, n.dirty, n.wake = MajorityClock(self.now), None, True, None

        self._change_world(start)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: each group reaches only itself; nodes of no group form one more."""
        sides = [set(g) for g in groups]

        def split() -> None:
            for name in self.names:
                self._comp[name] = next(
                    (i for i, side in enumerate(sides) if name in side), len(sides)
                )

        self._change_world(split)

    def heal(self) -> None:
        """Join every partition again."""
        self._change_world(lambda: self._comp.update(dict.fromkeys(self.names, 0)))

    def reachable(self, a: str, b: str) -> bool:
        """Whether `a` and `b` are both up and on the same side."""
        na, nb = self.nodes[a], self.nodes[b]
        return na.up and nb.up and self._comp[a] == self._comp[b]

    # -- time ------------------------------------------------------------------------------

    def step(self) -> None:
        """One tick: views change, batches arrive, nodes with something new run a round."""
        self.tick += 1
        for observer, subject, state, gen in self._membership.pop(self.tick, []):
            n = self.nodes[observer]
            if self._gen[observer, subject] == gen and n.up:
                n.members[subject] = (state, self.now)
                n.views, n.dirty = None, True
        self._propagate()
        for name in self.names:
            n = self.nodes[name]
            if n.up and (n.dirty or (n.wake is not None and self.now >= n.wake)):
                self._round(n)
        self.duplicates.append(self._count_duplicates())

    def run_for(self, seconds: float, each: Callable[[], None] | None = None) -> None:
        """Step for `seconds`, calling `each` after every tick."""
        for _ in range(round(seconds / self.config.tick_s)):
            self.step()
            if each is not None:
                each()

    def run_until(self, done: Callable[[], bool], *, limit_s: float) -> bool:
        """Step until `done()` holds (checked after every tick) or `limit_s` passed."""
        for _ in range(round(limit_s / self.config.tick_s)):
            if done():
                return True
            self.step()
        return done()

    # -- what a test reads -----------------------------------------------------------------

    def runners(self) -> dict[str, list[str]]:
        """Each pod (every one) and the up nodes running it, by name."""
        out: dict[str, list[str]] = {p: [] for p in sorted(self._base)}
        for name in self.names:
            n = self.nodes[name]
            if n.up:
                for p in n.runs:
                    out[p].append(name)
        return out

    def assignments(self, node: str) -> dict[str, Assignment | None]:
        """Node `node`'s store: each pod's assignment as it holds it."""
        return {p: w.assignment for p, w in sorted(self.nodes[node].wants.items())}

    def view(self, observer: str) -> dict[str, tuple[NodeState, float]]:
        """What `observer`'s membership holds of each other node it has heard of."""
        return dict(sorted(self.nodes[observer].members.items()))

    def settled(self) -> bool:
        """Views match the world (alive where reachable, dead elsewhere), the stores of each
        side agree, no node has a round to run and no plan waits for a ``lostAfter``."""
        ups = [self.nodes[n] for n in self.names if self.nodes[n].up]
        if any(n.dirty or n.wake is not None for n in ups):
            return False
        if any(b.due or b.epoch != self._epoch for b in self._batches):
            return False
        for n in ups:
            for other in self.names:
                if other != n.name:
                    want = "alive" if self.reachable(n.name, other) else "dead"
                    if n.members.get(other, ("dead", 0.0))[0] != want:
                        return False
        first: dict[int, dict[str, PodWants]] = {}
        return all(first.setdefault(self._comp[n.name], n.wants) == n.wants for n in ups)

    def loads(self, node: str) -> dict[str, tuple[int, int]]:
        """The declared cpu and memory assigned to each node, as node `node`'s store has it."""
        out: dict[str, tuple[int, int]] = {}
        for w in self.nodes[node].wants.values():
            if w.assignment is not None:
                cpu, memory = out.get(w.assignment.node, (0, 0))
                out[w.assignment.node] = (cpu + w.cpu, memory + w.memory)
        return out

    def plan(self, node: str) -> Plan | None:
        """What node `node` decided in its last round (why a pod waits), or None."""
        return self.nodes[node].plan

    def rounds(self) -> int:
        """Placement rounds run so far, by every node."""
        return sum(n.rounds for n in self.nodes.values())

    # -- inside ----------------------------------------------------------------------------

    def _boot(
        self, pods: Sequence[PodWants], nodes: Sequence[NodeView]
    ) -> tuple[dict[str, Regs], dict[str, PodWants]]:
        alive = {n.name: ("alive", 0.0) for n in nodes}
        everyone = node_views(self._docs, alive, me=self.names[0], since=0.0)
        plan = place(pods, everyone, now=0.0, majority=self.config.majority)
        boot = _Node(
            "", {}, {p.name: self._wants_of(p.name, p.assignment) for p in pods}, set(), {}
        )
        for w in writes(plan):
            self._apply(boot, w.pod, tuple(assignment_ops(w, None)), (0.0, w.writer))
        return boot.regs, boot.wants

    def _change_world(self, change: Callable[[], object]) -> None:
        before = {(o, s): self.reachable(o, s) for o in self.names for s in self.names if o != s}
        change()
        self._epoch += 1
        self._runs_changed = True
        for (o, s), was in before.items():
            now = self.reachable(o, s)
            if now != was:
                self._reach_changed(o, s, reachable=now)

    def _reach_changed(self, observer: str, subject: str, *, reachable: bool) -> None:
        gen = self._gen[observer, subject] = self._gen.get((observer, subject), 0) + 1
        held = self.nodes[observer].members.get(subject, ("dead", 0.0))[0]
        c = self.config
        if reachable:
            if held != "alive" or subject not in self.nodes[observer].members:
                self._schedule(observer, subject, "alive", c.alive_s, gen)
        elif held == "alive":
            self._schedule(observer, subject, "suspect", c.suspect_s, gen)
            self._schedule(observer, subject, "dead", c.dead_s, gen)
        elif held == "suspect":
            self._schedule(observer, subject, "dead", c.dead_s, gen)

    def _schedule(
        self, observer: str, subject: str, state: NodeState, after: tuple[float, float], gen: int
    ) -> None:
        tick = self.tick + max(1, round(self.rng.uniform(*after) / self.config.tick_s))
        self._membership.setdefault(tick, []).append((observer, subject, state, gen))

    def _propagate(self) -> None:
        low, high = self.config.propagate_ticks
        pending: list[_Batch] = []
        for b in self._batches:
            if not b.due and b.epoch == self._epoch:
                pending.append(b)  # blocked as it was: nothing to look at until the world moves
                continue
            sides = {self._comp[h] for h in b.holders if self.nodes[h].up}
            for name in self.names:
                if name in b.holders:
                    continue
                n = self.nodes[name]
                if not n.up or self._comp[name] not in sides:
                    b.due.pop(name, None)
                    continue
                if name not in b.due:  # reachable since the last tick (a round, a command)
                    b.due[name] = self.tick - 1 + self.rng.randint(low, high)
                if self.tick >= b.due[name]:
                    del b.due[name]
                    b.holders.add(name)
                    self._deliver(n, b)
            if not b.due:
                b.epoch = self._epoch
            if len(b.holders) < len(self.names):
                pending.append(b)
        self._batches = pending

    def _deliver(self, n: _Node, b: _Batch) -> None:
        changed = False
        for pod, ops in b.ops:
            changed |= self._apply(n, pod, ops, b.stamp)
        if changed:
            n.dirty = True

    def _apply(self, n: _Node, pod: str, ops: tuple[Op, ...], stamp: Stamp) -> bool:
        """Fold `ops` into node `n`'s copy of `pod`; whether its assignment changed."""
        before = n.regs.get(pod, _NEVER)
        key = (before, ops, stamp)
        folded = self._folds.get(key)  # most nodes fold a batch onto the same fields
        if folded is None:
            folded = self._folds[key] = _fold(before, ops, stamp)
        regs, after = folded
        n.regs[pod] = regs
        was = n.wants[pod].assignment
        if after == was:
            return False
        n.wants[pod] = self._wants_of(pod, after)
        if (was is not None and was.node == n.name) != (after is not None and after.node == n.name):
            n.runs ^= {pod}
            self._runs_changed = True
        return True

    def _wants_of(self, pod: str, a: Assignment | None) -> PodWants:
        key = (pod, a)
        wants = self._wants.get(key)
        if wants is None:
            doc = {"assignment": None if a is None else _doc_of(a)}
            wants = self._wants[key] = with_assignment(self._base[pod], doc)
        return wants

    def _round(self, n: _Node) -> None:
        """One placement round of node `n`, as `NodePlacement.run` does it."""
        n.dirty, n.rounds = False, n.rounds + 1
        now = self.now
        if n.views is None:
            n.views = node_views(self._docs, n.members, me=n.name, since=n.started_at)
        since = n.majority.update(n.views, now=now)
        plan = place(
            n.wants.values(), n.views, now=now, majority=self.config.majority, majority_since=since
        )
        n.plan, n.wake = plan, plan.next_wake
        batch: list[tuple[str, tuple[Op, ...]]] = []
        causes = {m.pod: m.cause for m in plan.move if m.target == n.name}
        for w in my_actions(plan, n.name):
            ops = tuple(assignment_ops(w, n.wants[w.pod].assignment))
            if ops:
                batch.append((w.pod, ops))
                a = w.assignment
                self.trace.append(
                    Written(
                        now,
                        n.name,
                        w.pod,
                        w.kind,
                        None if a is None else a.node,
                        None if a is None else a.previous,
                        causes.get(w.pod),
                    )
                )
        if batch:
            b = _Batch((now, n.name), tuple(batch), {n.name})
            self._deliver(n, b)
            self._batches.append(b)

    def _count_duplicates(self) -> int:
        if self._runs_changed:
            self._runs_changed = False
            self._last_duplicates = sum(1 for r in self.runners().values() if len(r) > 1)
        return self._last_duplicates


def _fold(regs: Regs, ops: tuple[Op, ...], stamp: Stamp) -> tuple[Regs, Assignment | None]:
    """The fields after `ops` stamped `stamp` (per field, the later stamp wins), and the
    assignment they read as."""
    out = list(regs)
    for op in ops:
        value = op.arg if op.op == "set" else None
        targets = range(3) if op.path == ASSIGNMENT else (_FIELDS.index(op.path[-1]),)
        for i in targets:
            if stamp > out[i][0]:
                out[i] = (stamp, value)
    values = {f: r[1] for f, r in zip(_FIELDS, out, strict=True) if r[1] is not None}
    return (out[0], out[1], out[2]), assignment_of({"assignment": values})


def _doc_of(a: Assignment) -> dict[str, Any]:
    doc: dict[str, Any] = {"node": a.node, "at": a.at}
    if a.previous is not None:
        doc["previous"] = a.previous
    return doc


def _node_doc(n: NodeView) -> dict[str, Any]:
    """A Node document as a node publishes it (labels, capacity, cordon)."""
    capacity: dict[str, str] = {}
    if n.cpu is not None:
        capacity["cpu"] = f"{n.cpu}m"
    if n.memory is not None:
        capacity["memory"] = str(n.memory)
    return {
        "metadata": {"name": n.name, "labels": dict(n.labels)},
        "spec": {"unschedulable": not n.schedulable},
        "status": {"capacity": capacity},
    }


def mixed_cluster(
    nodes: int = 100,
    pods: int = 1000,
    *,
    seed: int,
    lost_after: Sequence[float] = (5.0, 10.0),
) -> tuple[list[NodeView], list[PodWants]]:
    """Nodes of 4000 millicores and 8 GiB in three zones (``n000``, …), and pods of 100–300
    millicores and 64–512 MiB (about half the cluster's cpu; ``p0000``, …) with mixed
    node-loss rules: a fifth ``best-effort``, and two in five ``keep-original``; ``lostAfter``
    one of `lost_after` (seconds); one in four selecting a zone, one in fifty pinned."""
    rng = random.Random(seed)
    width = max(3, len(str(nodes - 1)))
    view = [
        NodeView(f"n{i:0{width}d}", labels={"zone": ZONES[i % 3]}, cpu=4000, memory=8192 * MIB)
        for i in range(nodes)
    ]
    out: list[PodWants] = []
    for i in range(pods):
        kind = rng.random()
        out.append(
            PodWants(
                f"p{i:04d}",
                cpu=rng.randrange(100, 301, 50),
                memory=rng.randrange(64, 513, 64) * MIB,
                selector={"zone": rng.choice(ZONES)} if kind < 0.25 else {},
                pinned=rng.choice(view).name if kind > 0.98 else None,
                policy="best-effort" if rng.random() < 0.2 else "reschedule",
                lost_after=rng.choice(lost_after),
                on_return="keep-original" if rng.random() < 0.4 else "keep-replacement",
            )
        )
    return view, out
