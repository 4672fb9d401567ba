"""Membership and failure detection: SWIM with suspicion, incarnations and Lifeguard health.

Theory of operation. `Membership` is a pure core (STYLE.md §1): it is fed a peer's bytes
(`receive`) and timer ticks (`handle_timer`), each with an explicit ``now`` in seconds, and the
caller drains what to send as datagrams (`messages_to_send`) and over a reliable stream
(`reliable_messages_to_send`), when to wake it next (`get_timer`, absolute) and what happened
(`next_event`). Randomness is the injected ``rng``; no clock, no I/O. Its config is in
`gossip._membership_config`, its events and claim table in `gossip._membership_events`.

- **Probing.** Every protocol period (``probe_interval_s × (1 + lhm)``) this node pings one
  member, taken round-robin from a list of the alive and suspected members shuffled anew each
  round (SWIM §4.3; a new member goes in at a random place of the rest of the round). No ack
  within ``probe_timeout_s × (1 + lhm)``: it asks ``indirect_probes`` random alive members to
  ping the target for it (ping-req) and, with ``reliable_fallback``, pings the target itself
  over the reliable channel (reliable-ping, acked over that channel; memberlist's TCP ping).
  No ack by any path by the end of the period: the target is suspected, unless the reliable
  ping is still within its own period (a stream may take a few retransmission timeouts to
  get through): then the suspicion waits until the reliable ack comes (none) or that period
  ends, ``probe_timeout_s × (1 + lhm)`` after the probe's own.
- **Suspicion (Lifeguard).** A suspected member is declared dead when its suspicion times
  out: between ``suspicion_mult × max(1, log10(n)) × probe_interval_s`` and
  ``suspicion_max_timeout_mult`` times that, shorter the more other members confirm it
  (`gossip._membership_detection` has the formula). A member that hears it is suspected (or
  dead, or left) at an incarnation at least its own refutes: it raises its incarnation above
  it and gossips itself alive at once, in a gossip message to as many random members as a
  claim is retransmitted to (its suspectors' timeouts are running).
- **Local health (Lifeguard).** ``lhm`` in ``0..max_local_health`` measures how much to
  distrust our own view: +1 when we had to refute a suspicion of ourselves, +1 for each nack a
  failed probe's helpers did not send (or +1 for a failed probe that had no helpers), −1 for
  every probe that was acked. A probe answered only over the reliable channel counts as
  failed here (its datagram paths did), though its target is not suspected. A slow or
  overloaded node thus probes slower and waits longer before it suspects anyone.
- **Dissemination.** Every message piggybacks membership updates (one per member, the newest
  claim) that fit its byte budget, least-sent first, newest first among equals; each update is
  sent ``retransmit_mult × ceil(log10(n + 1))`` times. A message to a member we believe
  suspected or dead always carries that belief first, so it can refute at once. A joiner
  sends ``join`` to its seeds, which answer with their whole member list (``sync``).
  Queued updates sit in a `BroadcastQueue` bucketed by transmit count, each encoded once.
- **Push-pull and the dead.** Every ``push_pull_interval_s`` (scaled up with n) this node
  sends its whole member list (push-pull) to a random alive member and to a random dead one,
  which answer with theirs; for ``gossip_to_the_dead_s`` after a death it also sends one
  gossip message per period to a recently dead member. A member that was only cut off thus
  hears it was declared dead, refutes, and is taken back (`MemberJoined`, as after a
  restart): a healed partition merges by itself.
- **Metadata.** Each member carries opaque ``meta`` (≤ 256 bytes: the daemon's addresses and
  port) in its alive claims; `set_meta` bumps the incarnation so the change spreads, and
  others emit `MemberUpdated`.
- **Leaving.** `leave` gossips "left" at the current incarnation directly to a few members and
  stops probing; afterwards this node only acks pings. Others emit `MemberLeft` and never
  probe it or declare it dead.

The rules for a claim about another member are the table `TRANSITIONS`. Peer bytes that are
not a valid message become a `MessageRejected` event; nothing a peer sends raises.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from gossip._membership_config import (
    MIN_MESSAGE_BYTES,
    NACK_AFTER,
    MembershipConfig,
    MembershipError,
    check_meta,
)
from gossip._membership_detection import Probe, Relay, Suspicion
from gossip._membership_events import (
    TRANSITIONS,
    Member,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MembershipEvent,
    MemberSuspected,
    MemberUpdated,
    MessageRejected,
    Need,
)
from gossip._membership_gossip import Piggyback, claim_of
from gossip._membership_wire import (
    MAX_INCARNATION,
    MAX_SEQ,
    Kind,
    MemberState,
    Message,
    NodeId,
    Rejected,
    Update,
    decode,
    sync_messages,
    valid_node_id,
)

__all__ = [
    "MIN_MESSAGE_BYTES",
    "NACK_AFTER",
    "TRANSITIONS",
    "Member",
    "MemberAlive",
    "MemberDead",
    "MemberJoined",
    "MemberLeft",
    "MemberState",
    "MemberSuspected",
    "MemberUpdated",
    "Membership",
    "MembershipConfig",
    "MembershipError",
    "MembershipEvent",
    "MessageRejected",
    "Need",
    "NodeId",
]

_A, _S, _D, _L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
_LIVE = frozenset((_A, _S))


class Membership:
    """One node's view of the cluster's members; see the module's theory of operation."""

    def __init__(
        self, *, me: NodeId, config: MembershipConfig, rng: random.Random, meta: bytes = b""
    ) -> None:
        if not valid_node_id(me):
            raise MembershipError(f"me: expected 1..128 bytes of printable UTF-8, got {me!r}")
        check_meta(meta)
        self._me = me
        self._config = config
        self._rng = rng
        self._members: dict[NodeId, Member] = {me: Member(me, MemberState.ALIVE, 0, meta)}
        self._dead: dict[NodeId, float] = {}  # dead members -> when declared, oldest first
        self._next_push_pull_at: float | None = None
        self._events: deque[MembershipEvent] = deque()
        self._outbox: list[tuple[NodeId, Message]] = []
        self._reliable_outbox: list[tuple[NodeId, Message]] = []
        self._gossip = Piggyback()
        self._live = 1  # alive or suspected members, this one included
        self._seq = 0
        self._probe: Probe | None = None
        self._awaiting: dict[int, Probe] = {}  # past their period, fallback in flight; by its seq
        self._next_probe_at: float | None = None
        self._order: list[NodeId] = []
        self._order_index = 0
        self._relays: dict[int, Relay] = {}
        self._suspicions: dict[NodeId, Suspicion] = {}
        self._lhm = 0
        self._seeds: tuple[NodeId, ...] = ()
        self._left = False
        self._rejected = 0

    # -- commands ------------------------------------------------------------------------

    def join(self, seeds: Iterable[NodeId], *, now: float) -> None:
        """Start probing, and ask ``seeds`` for their member lists (none: a new cluster).

        While this node knows no other member it asks the seeds again every period.
        """
        if self._left:
            raise MembershipError("join after leave: make a new Membership to rejoin")
        wanted = tuple(dict.fromkeys(s for s in seeds if s != self._me))
        for seed in wanted:
            if not valid_node_id(seed):
                raise MembershipError(f"seeds: {seed!r} is not a valid node id; nothing sent")
        self._seeds = wanted
        self._enqueue(self._self_update())
        for seed in wanted:
            self._send(seed, Message(Kind.JOIN, updates=(self._self_update(),)))
        if self._next_probe_at is None:
            self._next_probe_at = now + self._interval()
            if self._config.push_pull_interval_s:  # staggered: nodes started together differ
                self._next_push_pull_at = now + self._rng.random() * self._push_pull_interval()

    def set_meta(self, meta: bytes, *, now: float) -> None:
        """Replace this node's metadata; a higher incarnation spreads it to every member."""
        check_meta(meta)
        if self._left:
            raise MembershipError("set_meta after leave: nothing was changed")
        me = self._members[self._me]
        if meta != me.meta:
            incarnation = min(me.incarnation + 1, MAX_INCARNATION)
            self._set(Member(self._me, MemberState.ALIVE, incarnation, meta))
            self._enqueue(self._self_update())

    def leave(self, *, now: float) -> None:
        """Gossip that this node leaves, and stop probing; it then only acks pings."""
        if self._left:
            return
        me = self._members[self._me]
        self._left = True
        self._set(Member(self._me, MemberState.LEFT, me.incarnation, me.meta))
        self._gossip.queue.clear()
        self._enqueue(Update(MemberState.LEFT, self._me, me.incarnation))
        self._gossip_now()
        self._probe = None
        self._next_probe_at = self._next_push_pull_at = None
        self._relays.clear()
        self._awaiting.clear()
        self._suspicions.clear()

    def receive(self, data: bytes, sender: NodeId, *, now: float) -> None:
        """Take one message from ``sender`` (as authenticated by the transport)."""
        result = decode(data, max_bytes=self._config.max_message_bytes, memo=self._gossip.memo)
        if isinstance(result, Rejected):
            self._reject(sender, result.reason)
            return
        if not valid_node_id(sender) or sender == self._me:
            self._reject(sender, "bad sender id")
            return
        if self._left:
            if result.kind is Kind.PING:
                self._send(sender, Message(Kind.ACK, result.seq, self._me))
            elif result.kind is Kind.RELIABLE_PING:
                self._send_reliable(sender, Message(Kind.ACK, result.seq, self._me))
            return
        members, me = self._members, self._me
        for update in result.updates:
            # Inline for stale news, most of any message (the same test opens `_apply`).
            current = members.get(update.node)
            if (
                current is not None
                and update.node != me
                and (
                    update.incarnation < current.incarnation
                    or (
                        update.incarnation == current.incarnation
                        and update.state is current.state
                        and update.state is not _S
                    )
                )
            ):
                continue
            self._apply(update, now)
        match result.kind:
            case Kind.PING:
                self._send(sender, Message(Kind.ACK, result.seq, self._me))
            case Kind.RELIABLE_PING:  # its ack goes back the same way, whichever way it came
                self._send_reliable(sender, Message(Kind.ACK, result.seq, self._me))
            case Kind.ACK:
                self._on_ack(result.seq)
            case Kind.NACK:
                probe = self._probe
                if probe and probe.seq == result.seq and probe.nacks < probe.expected_nacks:
                    probe.nacks += 1
            case Kind.PING_REQ:
                target = result.target
                if target is not None and target not in (self._me, sender):
                    seq = self._next_seq()
                    deadline = now + NACK_AFTER * self._config.probe_timeout_s
                    self._relays[seq] = Relay(sender, result.seq, deadline)
                    self._send(target, Message(Kind.PING, seq, target))
            case Kind.JOIN | Kind.PUSH_PULL:
                self._send(sender, Message(Kind.SYNC))
            case Kind.SYNC | Kind.GOSSIP:
                pass

    def handle_timer(self, *, now: float) -> None:
        """Act on every deadline that has passed; call it at `get_timer` (or any time)."""
        if self._left or self._next_probe_at is None:
            return
        for seq, relay in list(self._relays.items()):
            if now >= relay.deadline:
                del self._relays[seq]
                self._send(relay.requester, Message(Kind.NACK, relay.seq))
        for seq, waiting in list(self._awaiting.items()):
            if now >= waiting.reliable_until:
                del self._awaiting[seq]
                self._suspect_target(waiting.target, now)
        probe = self._probe
        if probe and not probe.acked and not probe.indirect_sent and now >= probe.indirect_at:
            self._ask_helpers(probe)
            if self._config.reliable_fallback:
                probe.reliable_seq = self._next_seq()
                probe.reliable_until = now + self._interval()
                ping = Message(Kind.RELIABLE_PING, probe.reliable_seq, probe.target)
                self._send_reliable(probe.target, ping)
        if now >= self._next_probe_at:
            self._finish_probe(now)
            self._start_probe(now)
        if self._next_push_pull_at is not None and now >= self._next_push_pull_at:
            self._push_pull(now)
        for node, suspicion in list(self._suspicions.items()):
            if now >= suspicion.at:
                member = self._members[node]
                self._apply(Update(MemberState.DEAD, node, member.incarnation), now)

    # -- queries -------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The absolute time of the next deadline, or None before `join` and after `leave`."""
        if self._left or self._next_probe_at is None:
            return None
        times = [self._next_probe_at]
        if self._next_push_pull_at is not None:
            times.append(self._next_push_pull_at)
        probe = self._probe
        if probe and not probe.acked and not probe.indirect_sent:
            times.append(probe.indirect_at)
        times.extend(r.deadline for r in self._relays.values())
        times.extend(p.reliable_until for p in self._awaiting.values())
        times.extend(s.at for s in self._suspicions.values())
        return min(times)

    def messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]:
        """Everything to send as datagrams (unreliably) since the last call, each at most
        ``max_message_bytes``."""
        out: list[tuple[NodeId, bytes]] = []
        outbox, self._outbox = self._outbox, []
        for to, message in outbox:
            if message.kind in (Kind.SYNC, Kind.PUSH_PULL):
                out.extend((to, data) for data in self._sync_messages(to, message.kind))
            else:
                out.append((to, self._with_gossip(to, message)))
        return out

    def reliable_messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]:
        """Everything to send over the reliable channel (a stream that retransmits what is
        lost) since the last call: fallback pings and their acks, each at most
        ``max_message_bytes``. The receiver passes them to `receive` like any message."""
        outbox, self._reliable_outbox = self._reliable_outbox, []
        return [(to, self._with_gossip(to, message)) for to, message in outbox]

    def next_event(self) -> MembershipEvent | None:
        return self._events.popleft() if self._events else None

    def members(self) -> Mapping[NodeId, Member]:
        """Every member this node has heard of, itself included, with state and incarnation."""
        return MappingProxyType(self._members)

    @property
    def me(self) -> NodeId:
        return self._me

    @property
    def incarnation(self) -> int:
        return self._members[self._me].incarnation

    @property
    def local_health(self) -> int:
        """Lifeguard's local health multiplier, 0..max_local_health (0 is healthy)."""
        return self._lhm

    @property
    def rejected_messages(self) -> int:
        """How many peer messages were rejected as invalid since this core was made."""
        return self._rejected

    # -- probing -------------------------------------------------------------------------

    def _interval(self) -> float:
        return self._config.probe_interval_s * (1 + self._lhm)

    def _start_probe(self, now: float) -> None:
        self._next_probe_at = now + self._interval()
        self._gossip_to_the_dead(now)
        target = self._next_target()
        if target is None:
            for seed in self._seeds:
                self._send(seed, Message(Kind.JOIN, updates=(self._self_update(),)))
            return
        seq = self._next_seq()
        timeout = self._config.probe_timeout_s * (1 + self._lhm)
        self._probe = Probe(target, seq, indirect_at=now + timeout)
        self._send(target, Message(Kind.PING, seq, target))

    def _gossip_to_the_dead(self, now: float) -> None:
        window = self._config.gossip_to_the_dead_s
        recent: list[NodeId] = []
        for node in reversed(self._dead):  # the most recent deaths first
            if now - self._dead[node] > window:
                break
            recent.append(node)
        if recent:
            self._send(self._rng.choice(recent), Message(Kind.GOSSIP))

    def _push_pull_interval(self) -> float:
        n = self._live
        scale = math.ceil(math.log2(n / 32)) + 1 if n > 32 else 1
        return self._config.push_pull_interval_s * scale

    def _push_pull(self, now: float) -> None:
        self._next_push_pull_at = now + self._push_pull_interval()
        alive = sorted(
            n for n, m in self._members.items() if m.state is MemberState.ALIVE and n != self._me
        )
        for candidates in (alive, sorted(self._dead)):
            if candidates:
                self._send(self._rng.choice(candidates), Message(Kind.PUSH_PULL))

    def _ask_helpers(self, probe: Probe) -> None:
        candidates = sorted(
            n
            for n, m in self._members.items()
            if m.state is MemberState.ALIVE and n not in (self._me, probe.target)
        )
        helpers = self._rng.sample(candidates, min(len(candidates), self._config.indirect_probes))
        probe.indirect_sent = True
        probe.expected_nacks = len(helpers)
        for helper in helpers:
            self._send(helper, Message(Kind.PING_REQ, probe.seq, probe.target))

    def _on_ack(self, seq: int) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq:
            if not probe.acked:
                probe.acked = True
                self._health(-1)
                self._stop_awaiting(probe.target)
            return
        if probe is not None and probe.reliable_seq == seq:  # never 0: seqs start at 1
            probe.reliable_acked = True
            self._stop_awaiting(probe.target)
            return
        if self._awaiting.pop(seq, None) is not None:  # a fallback's ack after its period
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, Message(Kind.ACK, relay.seq))

    def _finish_probe(self, now: float) -> None:
        probe, self._probe = self._probe, None
        if probe is None or probe.acked:
            return
        # Lifeguard's evidence is about the datagram paths: it counts even when the reliable
        # fallback got through (and spares the target a suspicion).
        if probe.expected_nacks:
            self._health(probe.expected_nacks - probe.nacks)
        else:
            self._health(+1)
        if probe.reliable_acked:
            return
        if probe.reliable_seq and now < probe.reliable_until:
            self._awaiting[probe.reliable_seq] = probe  # the stream may still get through
            return
        self._suspect_target(probe.target, now)

    def _suspect_target(self, node: NodeId, now: float) -> None:
        target = self._members.get(node)
        if target is not None and target.state in (MemberState.ALIVE, MemberState.SUSPECT):
            self._apply(Update(MemberState.SUSPECT, target.node, target.incarnation, self._me), now)

    def _stop_awaiting(self, target: NodeId) -> None:
        """``target`` answered a newer probe: an older one still waiting on it is moot."""
        for seq in [s for s, p in self._awaiting.items() if p.target == target]:
            del self._awaiting[seq]

    def _next_target(self) -> NodeId | None:
        for _ in range(2):
            while self._order_index < len(self._order):
                node = self._order[self._order_index]
                self._order_index += 1
                if self._probeable(node):
                    return node
            self._order = sorted(n for n in self._members if self._probeable(n))
            self._rng.shuffle(self._order)
            self._order_index = 0
        return None

    def _probeable(self, node: NodeId) -> bool:
        member = self._members.get(node)
        return (
            node != self._me
            and member is not None
            and member.state in (MemberState.ALIVE, MemberState.SUSPECT)
        )

    def _health(self, delta: int) -> None:
        self._lhm = max(0, min(self._config.max_local_health, self._lhm + delta))

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < MAX_SEQ else 1
        return self._seq

    # -- claims --------------------------------------------------------------------------

    def _apply(self, update: Update, now: float) -> None:
        node = update.node
        if node == self._me:
            self._about_me(update)
            return
        current = self._members.get(node)
        if current is not None:
            # Fast path for stale news (most gossip): every rule wants an incarnation at least
            # the held one, and a claim equal to what we hold changes nothing but a confirmation.
            if update.incarnation < current.incarnation or (
                update.incarnation == current.incarnation
                and update.state is current.state
                and update.state is not _S
            ):
                return
        elif update.state is not _A:
            return  # unknown members are learned only from alive claims
        held = current.state if current is not None else None
        if (
            current is not None
            and held is MemberState.SUSPECT
            and update.state is MemberState.SUSPECT
            and update.incarnation == current.incarnation
        ):
            self._confirm(update)
            return
        rule = TRANSITIONS.get((held, update.state))
        if rule is None:
            return
        need, event = rule
        if current is not None and not (
            need is Need.ANY
            or (need is Need.NEWER and update.incarnation > current.incarnation)
            or (need is Need.AT_LEAST and update.incarnation >= current.incarnation)
        ):
            return
        meta = update.meta if update.state is _A or current is None else current.meta
        self._set(Member(node, update.state, update.incarnation, meta))
        self._suspicions.pop(node, None)
        self._dead.pop(node, None)
        if update.state is _D:
            self._dead[node] = now
        if update.state is MemberState.ALIVE and held not in (_A, _S):
            # SWIM: a new member is probed within the current round, at a random place.
            self._order.insert(self._rng.randint(self._order_index, len(self._order)), node)
        if update.state is MemberState.SUSPECT:
            self._suspect(node, update.by or self._me, now)
        self._enqueue(update)
        incarnation = update.incarnation
        if event is MemberJoined:
            self._events.append(MemberJoined(node, incarnation))
        elif event is MemberSuspected:
            self._events.append(MemberSuspected(node, incarnation, update.by or self._me))
        elif event is MemberAlive:
            self._events.append(MemberAlive(node, incarnation))
        elif event is MemberDead:
            self._events.append(MemberDead(node, incarnation))
        elif event is MemberLeft:
            self._events.append(MemberLeft(node, incarnation))
        if current is not None and meta != current.meta:
            self._events.append(MemberUpdated(node, incarnation, meta))

    def _set(self, member: Member) -> None:
        old = self._members.get(member.node)
        if old is not None and old.state in _LIVE:
            self._live -= 1
        if member.state in _LIVE:
            self._live += 1
        self._members[member.node] = member

    def _suspect(self, node: NodeId, by: NodeId, now: float) -> None:
        self._suspicions[node] = Suspicion.start(self._config, n=self._live, by=by, now=now)

    def _confirm(self, update: Update) -> None:
        suspicion = self._suspicions.get(update.node)
        if suspicion is not None and update.by is not None and suspicion.confirm(update.by):
            self._enqueue(update)

    def _about_me(self, update: Update) -> None:
        if self._left:
            return
        me = self._members[self._me]
        mine = me.incarnation
        if update.state is MemberState.ALIVE:
            # An older life of ours went further, or spread other metadata: overtake it.
            if update.incarnation > mine or (update.incarnation == mine and update.meta != me.meta):
                self._refute(update.incarnation)
        elif update.incarnation >= mine:
            self._health(+1)
            self._refute(update.incarnation)
            # At once, not with the next probe: the suspectors' timeouts are running, and a
            # member back from a short outage may not be probed by them before they end.
            self._gossip_now()
        else:  # someone still holds a suspicion we already refuted: tell it again
            self._enqueue(self._self_update())

    def _refute(self, seen: int) -> None:
        incarnation = min(seen + 1, MAX_INCARNATION)
        self._set(Member(self._me, MemberState.ALIVE, incarnation, self._members[self._me].meta))
        self._enqueue(self._self_update())

    def _gossip_now(self) -> None:
        """Send the queued claims now, to as many random members as a claim is retransmitted."""
        others = sorted(n for n in self._members if self._probeable(n))
        for node in self._rng.sample(others, min(len(others), self._retransmit_limit())):
            self._send(node, Message(Kind.GOSSIP))

    def _self_update(self) -> Update:
        return self._record(self._members[self._me])

    def _record(self, member: Member) -> Update:
        return claim_of(member, self._suspicion_of(member), self._me)

    def _suspicion_of(self, member: Member) -> Suspicion | None:
        return self._suspicions.get(member.node) if member.state is _S else None

    def _reject(self, sender: NodeId, reason: str) -> None:
        self._rejected += 1
        self._events.append(MessageRejected(sender, reason))

    # -- dissemination -------------------------------------------------------------------

    def _send(self, to: NodeId, message: Message) -> None:
        self._outbox.append((to, message))

    def _send_reliable(self, to: NodeId, message: Message) -> None:
        self._reliable_outbox.append((to, message))

    def _enqueue(self, update: Update) -> None:
        self._gossip.put(update)

    def _encoded_record(self, member: Member) -> bytes:
        return self._gossip.record(member, self._suspicion_of(member), self._me)

    def _retransmit_limit(self) -> int:
        return self._config.retransmit_mult * math.ceil(math.log10(self._live + 1))

    def _with_gossip(self, to: NodeId, message: Message) -> bytes:
        dest = self._members.get(to)
        first: tuple[Update, ...] = ()
        if dest is not None and dest.state in (_S, _D) and to != self._me:
            first = (self._record(dest),)
        first += message.updates
        message = Message(message.kind, message.seq, message.target, first)
        skip = {u.node for u in first}
        return self._gossip.queue.fill(
            message, self._config.max_message_bytes, self._retransmit_limit(), skip
        )

    def _sync_messages(self, to: NodeId, kind: Kind) -> list[bytes]:
        mine = self._members.get(to)
        records = [self._encoded_record(mine)] if mine is not None else []
        records += [self._encoded_record(m) for n, m in self._members.items() if n != to]
        return sync_messages(kind, records, self._config.max_message_bytes)
