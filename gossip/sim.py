"""A seeded in-process network that drives real protocol cores at 1000+ nodes (STYLE.md §4).

Theory of operation. A `Simulation` owns ``n`` nodes (``n0000``, ``n0001``, …). Each node is
a `SimNode` holding named *cores*: objects of the `Core` shape (STYLE.md §1: ``receive``,
``handle_timer``, ``get_timer``, ``messages_to_send``, ``next_event``). Today every node has
one, ``"membership"``, a real `Membership`; a dissemination core plugs in through
``extra_cores`` and gets its own channel (a message sent by core ``c`` goes to core ``c`` of
the receiver, as separate streams of one transport would).

Time is virtual: one heap of events ordered by (time, insertion number), each a message
delivery or a timer wakeup. Nothing reads a clock, opens a socket or starts a thread, so a run
is a pure function of its seed and the calls made on the simulation: the network's random
choices (loss, latency) come from one ``Random`` derived from the seed, each node's core gets
its own ``Random(f"{seed}:{node}:{life}")``, and ties are broken by insertion order.

After every input to a node (a message, a timer, a command) the node is *pumped*, as a shell
would: each core's ``messages_to_send`` (and reliable ones) are put on the wire, its
``next_event``s are recorded, and its timer is re-armed at ``get_timer()``. A timer is a
heap entry carrying a generation; re-arming bumps the generation, so stale entries are skipped
when popped (foca's trick).

The network decides each message's fate when it is sent: lost with the link's probability,
else delivered after a latency drawn uniformly from the link's range. A core may also send
over a *reliable* channel (a stream that retransmits, as QUIC's do): if it has a
``reliable_messages_to_send`` drain (optional; looked up with ``getattr``), those messages
are never lost to the link's loss; instead each loss, drawn geometrically with the link's
loss rate, adds one retransmission timeout (the link's ``rto_s``) to the latency. A link
that loses everything (loss 1) delivers nothing, reliably or not. Partitions and dead nodes
are checked again on delivery, so a message in flight when a partition starts, or when
either end is killed, is dropped too, on either channel. Nothing here is O(n²) per step;
`converged` keeps a running count of each viewer's alive and suspected members from its events
and walks the full member maps only once those counts already agree.

What crossed the network is counted in `Counters`, in total and per channel (core name),
reliable messages included; the reliable part is also counted on its own, per channel.
`traffic` gives one channel's messages and bytes per node per virtual second (all of them,
and the reliable part), over the whole run or since an earlier reading. ``meta`` gives each
node's membership metadata, as the daemon's contact info would be.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from gossip._membership import (
    Member,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    Membership,
    MembershipConfig,
    MemberState,
    MemberSuspected,
)
from gossip._membership_wire import NodeId

__all__ = [
    "MEMBERSHIP",
    "RTO_S",
    "Core",
    "CoreFactory",
    "Counters",
    "Link",
    "SimNode",
    "Simulation",
    "node_ids",
]

MEMBERSHIP = "membership"
"""The channel (core name) of the membership core on every node."""

E = TypeVar("E")

_Payload = bytes | int  # a delivery's bytes, or a timer's generation (0 for a join)
_DELIVER = 0
_TIMER = 1
_JOIN = 2


class Core(Protocol):
    """The shape of every protocol core the simulator can drive (STYLE.md §1). A core may
    also have ``reliable_messages_to_send(*, now) -> list[tuple[NodeId, bytes]]``: what to
    send over the reliable channel (see the module's theory of operation)."""

    def receive(self, data: bytes, sender: NodeId, *, now: float) -> None: ...
    def handle_timer(self, *, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]: ...
    def next_event(self) -> object | None: ...


CoreFactory = Callable[[NodeId, Membership, random.Random], Mapping[str, Core]]
"""Makes a node's extra cores (name → core), given its id, its membership core (so a
dissemination core can ask it who is alive) and a ``Random`` of their own."""


def node_ids(n: int) -> list[NodeId]:
    """``n0000``, ``n0001``, …: zero-padded to at least 4 digits so they sort by number."""
    width = max(4, len(str(n - 1)))
    return [NodeId(f"n{i:0{width}d}") for i in range(n)]


RTO_S = 0.2
"""The default retransmission timeout of the reliable channel, in seconds."""


@dataclass(frozen=True, slots=True)
class Link:
    """One direction-independent link's behaviour: loss probability 0..1, latency range in
    seconds, and the reliable channel's retransmission timeout in seconds (≥ 0): what each
    lost transmission of a reliable message adds to its latency."""

    loss: float
    latency: tuple[float, float]
    rto_s: float = RTO_S


@dataclass(slots=True)
class Counters:
    """What crossed the simulated network, in messages and bytes (payload only)."""

    sent: int = 0
    delivered: int = 0
    dropped_loss: int = 0
    dropped_partition: int = 0
    dropped_dead: int = 0
    bytes_sent: int = 0
    bytes_delivered: int = 0
    timers: int = 0
    events: int = 0
    retransmits: int = 0
    """Transmissions of reliable messages lost and repeated (each added one ``rto_s``)."""
    sent_by_channel: Counter[str] = field(default_factory=Counter)
    """Messages sent per channel (core name), reliable ones included."""
    bytes_by_channel: Counter[str] = field(default_factory=Counter)
    """Payload bytes sent per channel (core name), reliable ones included."""
    reliable_sent_by_channel: Counter[str] = field(default_factory=Counter)
    """Of ``sent_by_channel``, the messages sent over the reliable channel."""
    reliable_bytes_by_channel: Counter[str] = field(default_factory=Counter)
    """Of ``bytes_by_channel``, the bytes sent over the reliable channel."""

    @property
    def dropped(self) -> int:
        return self.dropped_loss + self.dropped_partition + self.dropped_dead


@dataclass(slots=True)
class SimNode:
    """One simulated node: its cores by name, and whether it is running."""

    id: NodeId
    cores: dict[str, Core]
    membership: Membership
    life: int = 0
    up: bool = True
    timer_gen: dict[str, int] = field(default_factory=dict)
    armed: dict[str, float | None] = field(default_factory=dict)
    # What this node's membership events say it holds of others (self excluded).
    seen: dict[NodeId, MemberState] = field(default_factory=dict)
    alive_count: int = 0
    suspect_count: int = 0


_EVENT_STATE: dict[type, MemberState] = {
    MemberJoined: MemberState.ALIVE,
    MemberAlive: MemberState.ALIVE,
    MemberSuspected: MemberState.SUSPECT,
    MemberDead: MemberState.DEAD,
    MemberLeft: MemberState.LEFT,
}


class Simulation:
    """``n`` nodes on a simulated network; see the module's theory of operation."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        config: MembershipConfig | None = None,
        latency_s: tuple[float, float] = (0.001, 0.005),
        loss: float = 0.0,
        rto_s: float = RTO_S,
        extra_cores: CoreFactory | None = None,
        record_events: bool = True,
        meta: Callable[[NodeId], bytes] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError(f"n: expected at least 1 node, got {n}")
        self.seed = seed
        self.config = config or MembershipConfig()
        self.now = 0.0
        self.counters = Counters()
        self.event_counts: Counter[str] = Counter()
        self.events: dict[NodeId, list[tuple[float, object]]] = {}
        """Each node's events in order, as (virtual time, event); empty if not recording."""
        self.record_events = record_events
        self._default = Link(_check_loss(loss), _check_latency(latency_s), _check_rto(rto_s))
        self._links: dict[frozenset[NodeId], Link] = {}
        self._group: dict[NodeId, int] | None = None
        self._net_rng = random.Random(f"{seed}:net")
        self._extra = extra_cores
        self._meta = meta
        self._heap: list[tuple[float, int, int, NodeId, NodeId, str, _Payload]] = []
        self._order = 0
        self._seeds: tuple[NodeId, ...] = ()
        self.nodes: dict[NodeId, SimNode] = {}
        for node in node_ids(n):
            self.nodes[node] = self._make_node(node, life=0)
            self.events[node] = []

    # -- commands ------------------------------------------------------------------------

    def join_all(self, via: Iterable[NodeId], *, over_s: float = 0.0) -> None:
        """Every node joins through the seeds ``via`` (a seed through the other seeds), the
        i-th of n at ``now + i × over_s / n`` (0: all at once)."""
        self._seeds = tuple(via)
        for seed in self._seeds:
            if seed not in self.nodes:
                raise ValueError(f"via: {seed!r} is not a node of this simulation")
        count = len(self.nodes)
        for i, node in enumerate(self.nodes):
            self._push(self.now + i * over_s / count, _JOIN, (node, node, MEMBERSHIP), 0)

    def run_until(self, t: float) -> None:
        """Process every event up to virtual time ``t``, then set the clock to ``t``."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            at, _, kind, dst, src, channel, payload = heapq.heappop(heap)
            self.now = at
            node = self.nodes[dst]
            if kind == _DELIVER:
                assert isinstance(payload, bytes)
                self._deliver(node, src, channel, payload)
            elif kind == _TIMER:
                if node.up and node.timer_gen.get(channel) == payload:
                    node.armed[channel] = None
                    self.counters.timers += 1
                    node.cores[channel].handle_timer(now=at)
                    self._pump(node)
            elif node.up:  # _JOIN
                node.membership.join(self._seeds_for(dst), now=at)
                self._pump(node)
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_until_true(self, done: Callable[[], bool], *, limit_s: float, step_s: float) -> bool:
        """Run in steps of ``step_s`` until ``done()`` (checked after each step) or ``limit_s``
        virtual seconds have passed; returns whether ``done()`` held."""
        end = self.now + limit_s
        while self.now < end:
            self.run_until(min(end, self.now + step_s))
            if done():
                return True
        return done()

    def partition(self, groups: list[set[NodeId]]) -> None:
        """Cut every link between different groups (nodes in no group form one more group)."""
        self._group = {}
        for i, group in enumerate(groups):
            for node in group:
                self._group[node] = i

    def heal(self) -> None:
        """Remove the partition (per-link settings stay)."""
        self._group = None

    def set_link(
        self,
        a: NodeId,
        b: NodeId,
        *,
        loss: float | None = None,
        latency: tuple[float, float] | None = None,
        rto_s: float | None = None,
    ) -> None:
        """Give the link a–b (both directions) its own loss, latency range and/or
        retransmission timeout."""
        old = self._links.get(frozenset((a, b)), self._default)
        self._links[frozenset((a, b))] = Link(
            old.loss if loss is None else _check_loss(loss),
            old.latency if latency is None else _check_latency(latency),
            old.rto_s if rto_s is None else _check_rto(rto_s),
        )

    def kill(self, node: NodeId) -> None:
        """Stop the node: nothing more is delivered to or from it and its timers stop."""
        sim_node = self.nodes[node]
        sim_node.up = False
        for channel in sim_node.cores:
            sim_node.timer_gen[channel] = sim_node.timer_gen.get(channel, 0) + 1

    def revive(self, node: NodeId, *, via: Iterable[NodeId] | None = None) -> None:
        """Restart the node as a process restart would: fresh cores (incarnation 0) with the
        same id, joining through ``via`` (default: the `join_all` seeds but itself) now.
        Also the way a node that was partitioned away rejoins (it is restarted)."""
        if self.nodes[node].up:
            self.kill(node)
        old = self.nodes[node]
        fresh = self._make_node(node, life=old.life + 1)
        self.nodes[node] = fresh
        seeds = tuple(via) if via is not None else self._seeds_for(node)
        fresh.membership.join(seeds, now=self.now)
        self._pump(fresh)

    # -- queries -------------------------------------------------------------------------

    def live(self) -> list[NodeId]:
        return [n for n, s in self.nodes.items() if s.up]

    def views(self) -> dict[NodeId, Mapping[NodeId, Member]]:
        """Each live node's member map (itself included)."""
        return {n: s.membership.members() for n, s in self.nodes.items() if s.up}

    def converged(self, expected_alive: set[NodeId]) -> bool:
        """Every live node sees exactly ``expected_alive`` as alive and every other member it
        knows of as dead or left (none suspected)."""
        want = len(expected_alive)
        live = [s for s in self.nodes.values() if s.up]
        # Cheap, from event-derived counts: O(n).
        for s in live:
            if s.suspect_count or s.alive_count + 1 != want or s.id not in expected_alive:
                return False
        # Exact, from the cores' own maps: O(n × members), only once the counts agree.
        for s in live:
            alive = 0
            for node, member in s.membership.members().items():
                if member.state is MemberState.ALIVE:
                    if node not in expected_alive:
                        return False
                    alive += 1
                elif member.state is MemberState.SUSPECT:
                    return False
            if alive != want:
                return False
        return True

    def sees(self, viewer: NodeId, node: NodeId) -> MemberState | None:
        member = self.nodes[viewer].membership.members().get(node)
        return member.state if member is not None else None

    def all_see(
        self, nodes: Iterable[NodeId], state: MemberState, *, among: Iterable[NodeId]
    ) -> bool:
        """Every viewer in ``among`` (live ones) holds each of ``nodes`` (but itself) in
        ``state``."""
        targets = list(nodes)
        for viewer in among:
            s = self.nodes[viewer]
            if not s.up:
                continue
            for node in targets:
                if node != viewer and s.seen.get(node) is not state:
                    return False
        return True

    def events_of(
        self,
        kind: type[E],
        *,
        about: Iterable[NodeId] | None = None,
        since: float | None = None,
    ) -> list[tuple[float, NodeId, E]]:
        """Every recorded event of ``kind`` as (time, viewer, event), in time order, optionally
        only those whose ``node`` is in ``about`` and only those at or after ``since``."""
        wanted = set(about) if about is not None else None
        out: list[tuple[float, NodeId, E]] = []
        for viewer, log in self.events.items():
            for at, event in log:
                if since is not None and at < since:
                    continue
                if isinstance(event, kind) and (
                    wanted is None or getattr(event, "node", None) in wanted
                ):
                    out.append((at, viewer, event))
        out.sort(key=lambda e: (e[0], e[1]))
        return out

    @property
    def rounds(self) -> float:
        """Virtual time in protocol periods (``probe_interval_s``, before local health)."""
        return self.now / self.config.probe_interval_s

    def summary(self) -> dict[str, float | int]:
        """The counters, virtual time and rounds as one flat dict (for reports and asserts)."""
        c = self.counters
        return {
            "seed": self.seed,
            "nodes": len(self.nodes),
            "virtual_s": self.now,
            "rounds": self.rounds,
            "sent": c.sent,
            "delivered": c.delivered,
            "dropped": c.dropped,
            "dropped_loss": c.dropped_loss,
            "dropped_partition": c.dropped_partition,
            "dropped_dead": c.dropped_dead,
            "bytes_sent": c.bytes_sent,
            "bytes_delivered": c.bytes_delivered,
            "timers": c.timers,
            "events": c.events,
            "retransmits": c.retransmits,
            **{f"sent:{ch}": count for ch, count in sorted(c.sent_by_channel.items())},
            **{f"bytes_sent:{ch}": count for ch, count in sorted(c.bytes_by_channel.items())},
            **{
                f"reliable_sent:{ch}": count
                for ch, count in sorted(c.reliable_sent_by_channel.items())
            },
            **{
                f"reliable_bytes_sent:{ch}": count
                for ch, count in sorted(c.reliable_bytes_by_channel.items())
            },
        }

    def traffic(
        self, channel: str = MEMBERSHIP, *, since: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """What ``channel`` sent, in total and per node per virtual second: ``sent``,
        ``bytes_sent``, ``msgs_per_node_s``, ``bytes_per_node_s`` (both channels), and of
        those the reliable part: ``reliable_sent``, ``reliable_bytes_sent``,
        ``reliable_bytes_per_node_s``. ``since`` is an earlier result, to measure only what
        came after it."""
        c = self.counters
        sent = float(c.sent_by_channel[channel])
        sent_bytes = float(c.bytes_by_channel[channel])
        reliable = float(c.reliable_sent_by_channel[channel])
        reliable_bytes = float(c.reliable_bytes_by_channel[channel])
        start = 0.0
        if since is not None:
            sent -= since["sent"]
            sent_bytes -= since["bytes_sent"]
            reliable -= since.get("reliable_sent", 0.0)
            reliable_bytes -= since.get("reliable_bytes_sent", 0.0)
            start = since["at"]
        per = len(self.nodes) * (self.now - start) or 1.0
        return {
            "at": self.now,
            "sent": sent,
            "bytes_sent": sent_bytes,
            "msgs_per_node_s": sent / per,
            "bytes_per_node_s": sent_bytes / per,
            "reliable_sent": reliable,
            "reliable_bytes_sent": reliable_bytes,
            "reliable_bytes_per_node_s": reliable_bytes / per,
        }

    # -- internals -----------------------------------------------------------------------

    def _make_node(self, node: NodeId, *, life: int) -> SimNode:
        rng = random.Random(f"{self.seed}:{node}:{life}")
        meta = self._meta(node) if self._meta is not None else b""
        membership = Membership(me=node, config=self.config, rng=rng, meta=meta)
        cores: dict[str, Core] = {MEMBERSHIP: membership}
        if self._extra is not None:
            extra = self._extra(node, membership, random.Random(f"{self.seed}:{node}:{life}:x"))
            for name, core in extra.items():
                if name in cores:
                    raise ValueError(f"extra_cores: core name {name!r} is already taken")
                cores[name] = core
        return SimNode(node, cores, membership, life=life)

    def _seeds_for(self, node: NodeId) -> tuple[NodeId, ...]:
        return tuple(s for s in self._seeds if s != node)

    def _push(
        self, at: float, kind: int, route: tuple[NodeId, NodeId, str], payload: _Payload
    ) -> None:
        """Schedule at ``at`` a ``kind`` entry for (destination, source, channel)."""
        self._order += 1
        dst, src, channel = route
        heapq.heappush(self._heap, (at, self._order, kind, dst, src, channel, payload))

    def _link(self, a: NodeId, b: NodeId) -> Link:
        if not self._links:
            return self._default
        return self._links.get(frozenset((a, b)), self._default)

    def _cut(self, a: NodeId, b: NodeId) -> bool:
        group = self._group
        return group is not None and group.get(a, -1) != group.get(b, -1)

    def _deliver(self, node: SimNode, src: NodeId, channel: str, data: bytes) -> None:
        c = self.counters
        if not node.up or not self.nodes[src].up:
            c.dropped_dead += 1
            return
        if self._cut(src, node.id):
            c.dropped_partition += 1
            return
        core = node.cores.get(channel)
        if core is None:  # the receiver runs no such core: the transport would refuse it
            c.dropped_dead += 1
            return
        c.delivered += 1
        c.bytes_delivered += len(data)
        core.receive(data, src, now=self.now)
        self._pump(node)

    def _pump(self, node: SimNode) -> None:
        """What a shell does after every input: send, record events, re-arm timers."""
        now = self.now
        c = self.counters
        for channel, core in node.cores.items():
            self._send(node.id, channel, core.messages_to_send(now=now), reliable=False)
            drain = getattr(core, "reliable_messages_to_send", None)
            if drain is not None:
                self._send(node.id, channel, drain(now=now), reliable=True)
            while (event := core.next_event()) is not None:
                c.events += 1
                self.event_counts[type(event).__name__] += 1
                if channel == MEMBERSHIP:
                    self._track(node, event)
                if self.record_events:
                    self.events[node.id].append((now, event))
            deadline = core.get_timer()
            if deadline != node.armed.get(channel):
                node.armed[channel] = deadline
                gen = node.timer_gen.get(channel, 0) + 1
                node.timer_gen[channel] = gen
                if deadline is not None:
                    self._push(max(deadline, now), _TIMER, (node.id, node.id, channel), gen)

    def _send(
        self, src: NodeId, channel: str, out: list[tuple[NodeId, bytes]], *, reliable: bool
    ) -> None:
        """Put ``out`` on the wire from ``src``'s core ``channel``, deciding each fate now."""
        if not out:
            return
        c = self.counters
        now = self.now
        rng = self._net_rng
        size = sum(len(data) for _, data in out)
        c.sent_by_channel[channel] += len(out)
        c.bytes_by_channel[channel] += size
        if reliable:
            c.reliable_sent_by_channel[channel] += len(out)
            c.reliable_bytes_by_channel[channel] += size
        for to, data in out:
            c.sent += 1
            c.bytes_sent += len(data)
            if to not in self.nodes:
                c.dropped_dead += 1
                continue
            link = self._link(src, to)
            delay = 0.0
            if reliable and link.loss < 1.0:
                while link.loss and rng.random() < link.loss:  # retransmitted until it gets there
                    c.retransmits += 1
                    delay += link.rto_s
            elif link.loss and rng.random() < link.loss:
                c.dropped_loss += 1
                continue
            if self._cut(src, to):  # checked again on delivery
                c.dropped_partition += 1
                continue
            low, high = link.latency
            at = now + delay + (low if high <= low else rng.uniform(low, high))
            self._push(at, _DELIVER, (to, src, channel), data)

    def _track(self, node: SimNode, event: object) -> None:
        state = _EVENT_STATE.get(type(event))
        if state is None:
            return
        about: NodeId = event.node  # type: ignore[attr-defined]
        before = node.seen.get(about)
        node.seen[about] = state
        if before is MemberState.ALIVE:
            node.alive_count -= 1
        elif before is MemberState.SUSPECT:
            node.suspect_count -= 1
        if state is MemberState.ALIVE:
            node.alive_count += 1
        elif state is MemberState.SUSPECT:
            node.suspect_count += 1


def _check_loss(loss: float) -> float:
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f"loss: expected a probability 0..1, got {loss!r}")
    return float(loss)


def _check_rto(rto_s: float) -> float:
    if not 0.0 <= rto_s < float("inf"):
        raise ValueError(
            f"rto_s: expected a retransmission timeout of 0 or more seconds, got {rto_s!r}"
        )
    return float(rto_s)


def _check_latency(latency: tuple[float, float]) -> tuple[float, float]:
    low, high = latency
    if not 0.0 <= low <= high:
        raise ValueError(
            f"latency: expected (low, high) seconds with 0 <= low <= high, got {latency!r}"
        )
    return (float(low), float(high))
