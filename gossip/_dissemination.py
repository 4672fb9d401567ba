"""Desired-state dissemination: push for latency, push-pull anti-entropy for completeness.

Theory of operation. `Dissemination` is a pure core (STYLE.md §1), the sibling of
`Membership`: it is fed a peer's bytes (`receive`), fresh local changes (`publish`) and timer
ticks (`handle_timer`), each with an explicit ``now``; the caller drains what to send
(`messages_to_send`), when to wake it (`get_timer`, absolute) and what happened
(`next_event`). Randomness is the injected ``rng``. Changes are opaque *envelopes*; a `Log`
(the seam to the node's change log) says what this node holds as a version vector
``{origin: highest seq}``, lists what a peer's vector lacks, and applies envelopes (checking
signatures, ownership, clocks: the store's job, not this module's).

- **Push.** `publish` sends fresh envelopes at once to ``fanout`` random peers. A node that
  applies something *new* from a push forwards those envelopes at once to ``fanout`` random
  peers other than the sender. Both keep them *hot*: every ``push_interval_s`` the hot
  envelopes (at most ``max_push_bytes`` per message) go to ``fanout`` random peers, each for
  ``retransmit_mult × ceil(log10(n + 1))`` rounds (n: peers + 1), then they cool down. At most
  ``max_hot_bytes`` are hot; the oldest cool first. Duplicates are not forwarded.
- **Anti-entropy.** Every ``sync_interval_s × U(0.5, 1.5)`` a node sends one random peer a
  DIGEST: a 16-byte hash of its version vector. Equal digests end the exchange, so idle
  traffic depends on the number of peers, not of objects or changes. On a different digest
  the receiver PULLs from the sender with its full vector and the REPLY flag; the sender
  answers with what that vector lacks and, if the vector is ahead of its own anywhere, pulls
  back the same way: one round trip repairs both sides.
- **Gaps.** A push that `Log.apply` reports as starting beyond our head for some origin (an
  earlier push was lost) starts an immediate pull from its sender; so does a refusal for an
  unknown key, with the NEED_KEYS flag.
- **Catch-up with flow control.** A PULL carries the puller's version vector and a credit
  of ``window`` chunks; the answer is at most ``window`` CHUNKs of at most
  ``max_chunk_bytes`` of envelopes each (one `Log.missing` call). The puller applies chunks
  in index order (buffering early ones) and, once all of a pull's chunks are applied and the
  answer was not complete, pulls again with its *new* vector. So at most ``window`` chunks
  per peer are in flight and only the delta is ever sent. One pull is outstanding per node
  at a time (two concurrent pulls would fetch the same delta twice); a pull unanswered for
  ``pull_timeout_s`` is abandoned and retried with a random peer, and so at once is one from
  a peer that leaves the live set. Each timeout in a row doubles the next pull's timeout (at
  most 8×; a finished pull resets it): a peer that is merely slow (its loop busy) answers the
  abandoned pull anyway, and every retry would fetch the same delta again. What still
  arrives for an abandoned pull is dropped and counted (`DisseminationStats.bytes_stale`).
- **Keys.** Every message that carries envelopes carries the key material (`Log.keys_for`)
  a receiver needs to verify them, but only the blobs not yet sent to that peer: the core
  remembers, per peer, which it sent. A receiver missing a key anyway (a lost message)
  refuses, and pulls with NEED_KEYS, which makes the sender forget what it sent it.

Nothing a peer sends raises: bad or oversized bytes become `MessageRejected`; every message
sent or accepted is at most ``max_frame_bytes``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

from gossip._dissemination_wire import (
    FIRST,
    NEED_KEYS,
    REPLY,
    Chunk,
    Digest,
    Message,
    NodeId,
    Pull,
    Push,
    Rejected,
    bytes_overhead,
    decode,
    encode,
    missing_count,
    valid_node_id,
    vector_digest,
    vector_is_ahead,
)

__all__ = [
    "ApplyResult",
    "ChangesApplied",
    "ChangesRefused",
    "Dissemination",
    "DisseminationConfig",
    "DisseminationError",
    "DisseminationEvent",
    "DisseminationStats",
    "GapDetected",
    "Log",
    "MessageRejected",
    "NodeId",
    "PeerBehind",
    "Refusal",
    "vector_digest",
]

HEADER_BYTES = 48
"""Room kept in every message for everything but its envelopes and keys (an upper bound)."""
MAX_PULL_BACKOFF = 8
"""A pull's timeout is at most this many times ``pull_timeout_s`` after timeouts in a row."""
MAX_KEY_MEMORY = 4096
"""Key blobs remembered as sent, per peer; beyond that the memory starts over."""


class DisseminationError(ValueError):
    """The caller's mistake (a bad config or node id); nothing was changed."""


@dataclass(frozen=True, slots=True)
class DisseminationConfig:
    """Tuning of dissemination. The defaults suit a LAN of up to about a thousand nodes."""

    fanout: int = 3
    """Peers (1..64) each fresh change is pushed to at once, and each hot round. Higher
    reaches everyone sooner and sends more duplicates."""
    push_interval_s: float = 0.2
    """Seconds between rounds re-pushing hot changes; 0.001..3600. Lower closes the tail of
    a push sooner, at more messages per second while anything is hot."""
    retransmit_mult: int = 1
    """Hot rounds per change: retransmit_mult × ceil(log10(n + 1)); 0..100. 0 pushes only
    once (anti-entropy closes the gaps); higher survives more loss before a sync is needed."""
    max_push_bytes: int = 64 * 1024
    """Cap in bytes on one push message (envelopes and keys); 1024..max_frame_bytes.
    Envelopes larger than this travel only by pull."""
    max_hot_bytes: int = 1 << 20
    """Cap in bytes on the envelopes kept hot; 0..2**30. When over, the oldest cool first."""
    sync_interval_s: float = 1.0
    """Mean seconds between anti-entropy digests (each jittered uniformly ×0.5..1.5);
    0.001..3600. Lower repairs losses and partitions sooner at a few dozen bytes per sync."""
    pull_timeout_s: float = 2.0
    """Seconds without an answer (or a next chunk) after which a pull is abandoned and
    retried with a random peer; 0.001..3600. Set it above a chunk's transfer time. Each
    timeout in a row doubles it for the next pull, up to MAX_PULL_BACKOFF times."""
    max_chunk_bytes: int = 256 * 1024
    """Cap in bytes on the envelopes of one catch-up chunk; 1024..max_frame_bytes / 2.
    Larger means fewer round trips and larger bursts."""
    window: int = 4
    """Chunks (1..64) a pull may have in flight: the puller's credit. Higher catches up
    faster over long round trips, at window × max_chunk_bytes of buffering."""
    max_frame_bytes: int = 1 << 20
    """Hard cap in bytes on every message sent or accepted (the transport's frame limit);
    4096..16 MiB."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            seconds = f.name.endswith("_s")
            allowed: tuple[type, ...] = (int, float) if seconds else (int,)
            if isinstance(value, bool) or not isinstance(value, allowed):
                want = "a number of seconds" if seconds else "an integer"
                raise DisseminationError(
                    f"DisseminationConfig.{f.name}: expected {want}, got {value!r}"
                )
        self._range("fanout", 1, 64)
        for name in ("push_interval_s", "sync_interval_s", "pull_timeout_s"):
            self._range(name, 1e-3, 3600.0)
        self._range("retransmit_mult", 0, 100)
        self._range("max_hot_bytes", 0, 1 << 30)
        self._range("window", 1, 64)
        self._range("max_frame_bytes", 4096, 16 << 20)
        self._range("max_push_bytes", 1024, self.max_frame_bytes)
        self._range("max_chunk_bytes", 1024, self.max_frame_bytes // 2)

    def _range(self, name: str, low: float, high: float) -> None:
        value = getattr(self, name)
        if not low <= value <= high or (isinstance(value, float) and not math.isfinite(value)):
            raise DisseminationError(
                f"DisseminationConfig.{name}: expected {low}..{high}, got {value!r}"
            )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Envelopes of one origin that the log refused, and why (nothing of them was stored)."""

    origin: str
    reason: str
    count: int = 1
    unknown_key: bool = False
    """The refusal was for a key this node does not hold (the peer should send its keys)."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `Log.apply` did with a batch of envelopes."""

    new: tuple[int, ...] = ()
    """Indices (into the batch) of the envelopes applied now."""
    origins: tuple[str, ...] = ()
    """Origins that got new changes, sorted."""
    duplicates: int = 0
    gaps: tuple[str, ...] = ()
    """Origins whose envelopes start beyond this node's head + 1: an earlier one is missing."""
    refused: tuple[Refusal, ...] = ()

    @property
    def applied(self) -> int:
        return len(self.new)


class Log(Protocol):
    """The seam between the core and a node's change log."""

    def version_vector(self) -> Mapping[str, int]:
        """{origin: highest seq held}; an origin's changes are held gaplessly from seq 1."""

    def missing(self, peer: Mapping[str, int], *, max_bytes: int) -> tuple[list[bytes], bool]:
        """Envelopes ``peer`` lacks, whole per-origin runs in seq order, about ``max_bytes``
        (at least one if any); the bool says nothing more is missing."""

    def apply(self, envelopes: Sequence[bytes], keys: Sequence[bytes]) -> ApplyResult:
        """Apply what fits; never raises for a peer's bad data (it is reported)."""

    def keys_for(self, envelopes: Sequence[bytes]) -> list[bytes]:
        """Opaque key material a receiver needs to verify ``envelopes``."""


@dataclass(frozen=True, slots=True)
class ChangesApplied:
    count: int
    origins: tuple[str, ...]
    sender: NodeId


@dataclass(frozen=True, slots=True)
class ChangesRefused:
    """The log refused ``count`` envelopes of ``origin`` from ``sender``; none was stored."""

    sender: NodeId
    origin: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class PeerBehind:
    """A peer started a catch-up: it lacks ``missing_count`` changes this node holds."""

    peer: NodeId
    missing_count: int


@dataclass(frozen=True, slots=True)
class GapDetected:
    """A push from ``sender`` skipped changes of ``origins``; a pull was asked for."""

    sender: NodeId
    origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A peer sent bytes that are not a valid message; they were ignored."""

    sender: NodeId
    reason: str


DisseminationEvent = ChangesApplied | ChangesRefused | PeerBehind | GapDetected | MessageRejected


@dataclass(slots=True)
class DisseminationStats:
    """Counters since this core was made (payload bytes, as handed to the transport)."""

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    bytes_received_by_kind: dict[str, int] = field(default_factory=dict)
    envelopes_received: int = 0
    envelopes_applied: int = 0
    duplicates: int = 0
    pulls_started: int = 0
    pulls_timed_out: int = 0
    bytes_stale: int = 0
    """Bytes of chunks that arrived for a pull already abandoned or finished."""
    rejected: int = 0


@dataclass(slots=True)
class _Pull:
    peer: NodeId
    pull_id: int
    deadline: float
    asked_keys: bool
    need_keys: bool = False
    total: int | None = None
    next_index: int = 0
    early: dict[int, Chunk] = field(default_factory=dict)
    applied: int = 0
    complete: bool = False


class Dissemination:
    """One node's change spreading; see the module's theory of operation."""

    def __init__(
        self, *, me: NodeId, log: Log, config: DisseminationConfig, rng: random.Random
    ) -> None:
        if not valid_node_id(me):
            raise DisseminationError(f"me: expected 1..128 bytes of printable UTF-8, got {me!r}")
        self._me = me
        self._log = log
        self._config = config
        self._rng = rng
        self._peers: list[NodeId] = []
        self._peer_set: set[NodeId] = set()
        self._hot: dict[bytes, int] = {}
        self._hot_bytes = 0
        self._outbox: list[tuple[NodeId, bytes]] = []
        self._events: deque[DisseminationEvent] = deque()
        self._next_sync: float | None = None
        self._next_push: float | None = None
        self._pull: _Pull | None = None
        self._wanted: tuple[NodeId, int] | None = None
        self._pull_seq = 0
        self._timeouts_in_a_row = 0
        self._orphaned: int | None = None
        self._keys_sent: dict[NodeId, set[bytes]] = {}
        self._vectors: dict[NodeId, dict[str, int]] = {}
        self.stats = DisseminationStats()

    # -- commands ------------------------------------------------------------------------

    def set_peers(self, peers: Iterable[NodeId]) -> None:
        """The live members to gossip with (this node is left out if named)."""
        wanted = sorted({p for p in peers if p != self._me})
        for peer in wanted:
            if not valid_node_id(peer):
                raise DisseminationError(f"peers: {peer!r} is not a valid node id; nothing set")
        self._peers = wanted
        self._peer_set = set(wanted)
        for gone in [p for p in self._keys_sent if p not in self._peer_set]:
            del self._keys_sent[gone]
        for gone in [p for p in self._vectors if p not in self._peer_set]:
            del self._vectors[gone]
        if self._pull is not None and self._pull.peer not in self._peer_set:
            # It left the live set: waiting out the timeout would only delay the repair.
            need_keys = self._pull.need_keys or self._pull.asked_keys
            self._pull = None
            self._orphaned = FIRST | (NEED_KEYS if need_keys else 0)

    def publish(self, envelopes: Sequence[bytes], *, now: float) -> None:
        """Spread fresh local changes (already in the log): push them now, keep them hot."""
        fresh = [bytes(e) for e in envelopes if e]
        if not fresh:
            return
        self._push_now(fresh, exclude=None, now=now)

    def receive(self, data: bytes, sender: NodeId, *, now: float) -> None:
        """Take one message from ``sender`` (as authenticated by the transport)."""
        self.stats.messages_received += 1
        self.stats.bytes_received += len(data)
        result = decode(data, max_bytes=self._config.max_frame_bytes)
        if isinstance(result, Rejected):
            self._reject(sender, result.reason)
            return
        if not valid_node_id(sender) or sender == self._me:
            self._reject(sender, "bad sender id")
            return
        kind = type(result).__name__.lower()
        by_kind = self.stats.bytes_received_by_kind
        by_kind[kind] = by_kind.get(kind, 0) + len(data)
        match result:
            case Push():
                self._on_push(result, sender, now)
            case Digest():
                self._on_digest(result, sender, now)
            case Pull():
                self._on_pull(result, sender, now)
            case Chunk():
                if not self._on_chunk(result, sender, now):
                    self.stats.bytes_stale += len(data)

    def handle_timer(self, *, now: float) -> None:
        """Act on every deadline that has passed; call it at `get_timer` (or any time)."""
        cfg = self._config
        if self._next_sync is None:  # the first tick: spread the nodes' syncs over a period
            self._next_sync = now + self._rng.uniform(0.0, cfg.sync_interval_s)
        pull = self._pull
        if pull is not None and now >= pull.deadline:
            self._pull = None
            self.stats.pulls_timed_out += 1
            self._timeouts_in_a_row += 1
            others = [p for p in self._peers if p != pull.peer] or self._peers
            if others:
                flags = FIRST | (NEED_KEYS if pull.need_keys else 0)
                self._start_pull(self._rng.choice(others), flags, now)
        elif pull is None and self._orphaned is not None:
            flags, self._orphaned = self._orphaned, None
            if self._peers:
                self._start_pull(self._rng.choice(self._peers), flags, now)
        if self._next_push is not None and now >= self._next_push:
            self._hot_round(now)
        if now >= self._next_sync:
            self._next_sync = now + cfg.sync_interval_s * self._rng.uniform(0.5, 1.5)
            if self._peers:
                vector = self._log.version_vector()
                peer = self._rng.choice(self._peers)
                self._send(peer, Digest(vector_digest(vector), len(vector)))

    # -- queries -------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The absolute time of the next deadline (0.0 before the first `handle_timer`)."""
        if self._next_sync is None:
            return 0.0
        times = [self._next_sync]
        if self._next_push is not None:
            times.append(self._next_push)
        if self._pull is not None:
            times.append(self._pull.deadline)
        elif self._orphaned is not None:
            return 0.0
        return min(times)

    def messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]:
        """Everything to send since the last call, each at most ``max_frame_bytes``."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> DisseminationEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def me(self) -> NodeId:
        return self._me

    @property
    def peers(self) -> Sequence[NodeId]:
        return tuple(self._peers)

    @property
    def hot(self) -> Mapping[bytes, int]:
        """The hot envelopes and the rounds each has left."""
        return dict(self._hot)

    @property
    def peer_vectors(self) -> Mapping[NodeId, Mapping[str, int]]:
        """Each live peer's version vector as last learnt (from its pull, or an equal digest)."""
        return self._vectors

    @property
    def pulling(self) -> NodeId | None:
        """The peer this node is pulling from, if any."""
        return self._pull.peer if self._pull is not None else None

    # -- push ----------------------------------------------------------------------------

    def _rounds(self) -> int:
        return self._config.retransmit_mult * math.ceil(math.log10(len(self._peers) + 2))

    def _push_now(self, fresh: list[bytes], *, exclude: NodeId | None, now: float) -> None:
        candidates = [p for p in self._peers if p != exclude]
        targets = self._rng.sample(candidates, min(len(candidates), self._config.fanout))
        budget = (self._config.max_push_bytes - HEADER_BYTES) * 3 // 4
        if sum(len(e) + bytes_overhead(len(e)) for e in fresh) > budget:
            # A burst larger than one push travels by pull: a few peers hear that our vector
            # changed and each pulls what it lacks, once; pushing would copy it to everyone.
            self._announce(targets)
            return
        self._push_to(targets, fresh)
        rounds = self._rounds()
        if rounds <= 0:
            return
        budget = (self._config.max_push_bytes - HEADER_BYTES) * 3 // 4
        for envelope in fresh:
            if envelope not in self._hot and len(envelope) + 9 <= budget:
                self._hot[envelope] = rounds
                self._hot_bytes += len(envelope)
        while self._hot_bytes > self._config.max_hot_bytes and self._hot:
            oldest = next(iter(self._hot))
            del self._hot[oldest]
            self._hot_bytes -= len(oldest)
        if self._hot and self._next_push is None:
            self._next_push = now + self._config.push_interval_s

    def _hot_round(self, now: float) -> None:
        budget = (self._config.max_push_bytes - HEADER_BYTES) * 3 // 4
        batch: list[bytes] = []
        size = 0
        for envelope in self._hot:
            extra = len(envelope) + bytes_overhead(len(envelope))
            if size + extra <= budget:
                batch.append(envelope)
                size += extra
        targets = self._rng.sample(self._peers, min(len(self._peers), self._config.fanout))
        if targets:
            self._push_to(targets, batch)
        for envelope in batch:
            left = self._hot[envelope] - 1
            if left <= 0:
                del self._hot[envelope]
                self._hot_bytes -= len(envelope)
            else:
                self._hot[envelope] = left
        if not batch:  # nothing fits a push: let anti-entropy carry them
            self._hot.clear()
            self._hot_bytes = 0
        self._next_push = now + self._config.push_interval_s if self._hot else None

    def _announce(self, targets: Sequence[NodeId]) -> None:
        vector = self._log.version_vector()
        digest = Digest(vector_digest(vector), len(vector))
        for peer in targets:
            self._send(peer, digest)

    def _push_to(self, targets: Sequence[NodeId], envelopes: list[bytes]) -> None:
        room = self._config.max_push_bytes - HEADER_BYTES
        budget, key_budget = room * 3 // 4, room // 4
        groups: list[list[bytes]] = [[]]
        size = 0
        for envelope in envelopes:
            extra = len(envelope) + bytes_overhead(len(envelope))
            if extra > budget:
                continue  # too large to push: it travels by pull
            if size + extra > budget and groups[-1]:
                groups.append([])
                size = 0
            groups[-1].append(envelope)
            size += extra
        groups = [g for g in groups if g]
        if not groups or not targets:
            return
        all_keys = [self._log.keys_for(g) for g in groups]
        plain = [encode(Push(tuple(g))) for g in groups]
        for peer in targets:
            for i, group in enumerate(groups):
                keys = self._unsent_keys(peer, all_keys[i], key_budget)
                if keys:
                    self._send(peer, Push(tuple(group), tuple(keys)))
                else:
                    self._send_bytes(peer, plain[i])

    def _unsent_keys(self, peer: NodeId, keys: Sequence[bytes], budget: int) -> list[bytes]:
        sent = self._keys_sent.setdefault(peer, set())
        if len(sent) > MAX_KEY_MEMORY:
            sent.clear()
        out: list[bytes] = []
        size = 0
        for key in dict.fromkeys(keys):
            extra = len(key) + bytes_overhead(len(key))
            if key in sent or size + extra > budget:
                continue
            out.append(key)
            size += extra
            sent.add(key)
        return out

    def _on_push(self, push: Push, sender: NodeId, now: float) -> None:
        result = self._apply(push.envelopes, push.keys, sender)
        if result.new:
            fresh = [push.envelopes[i] for i in result.new]
            self._push_now(fresh, exclude=sender, now=now)
        unknown_key = any(r.unknown_key for r in result.refused)
        if result.gaps or unknown_key:
            if result.gaps:
                self._events.append(GapDetected(sender, result.gaps))
            self._want_pull(sender, FIRST | (NEED_KEYS if unknown_key else 0), now)

    # -- anti-entropy --------------------------------------------------------------------

    def _on_digest(self, digest: Digest, sender: NodeId, now: float) -> None:
        if self._pull is not None:
            return  # already repairing; the sender's next digests will find us again
        mine = self._log.version_vector()
        if vector_digest(mine) == digest.digest:
            self._vectors[sender] = dict(mine)
        else:
            self._start_pull(sender, REPLY | FIRST, now)

    def _want_pull(self, peer: NodeId, flags: int, now: float) -> None:
        if self._pull is None:
            self._start_pull(peer, flags, now)
        elif self._pull.peer == peer:
            self._pull.need_keys |= bool(flags & NEED_KEYS)
        else:
            self._wanted = (peer, flags)

    def _start_pull(self, peer: NodeId, flags: int, now: float) -> None:
        self._pull_seq = self._pull_seq + 1 if self._pull_seq < 2**32 - 1 else 1
        vector = tuple(sorted(self._log.version_vector().items()))
        deadline = now + self._pull_timeout()
        self._orphaned = None
        self._pull = _Pull(peer, self._pull_seq, deadline, asked_keys=bool(flags & NEED_KEYS))
        self.stats.pulls_started += 1
        self._send(peer, Pull(self._pull_seq, self._config.window, flags, vector))

    def _on_pull(self, pull: Pull, sender: NodeId, now: float) -> None:
        cfg = self._config
        theirs = dict(pull.vector)
        mine = self._log.version_vector()
        self._vectors[sender] = theirs
        if pull.flags & NEED_KEYS:
            self._keys_sent.pop(sender, None)
        envelopes, complete = self._log.missing(theirs, max_bytes=pull.credit * cfg.max_chunk_bytes)
        if pull.flags & FIRST and envelopes:
            self._events.append(PeerBehind(sender, missing_count(mine, theirs)))
        chunks = self._split(envelopes)
        if len(chunks) > pull.credit:
            chunks, complete = chunks[: pull.credit], False
        if not chunks:
            chunks = [[]]
        key_budget = cfg.max_frame_bytes // 2 - HEADER_BYTES
        for index, chunk in enumerate(chunks):
            keys: list[bytes] = []
            if chunk:
                keys = self._unsent_keys(sender, self._log.keys_for(chunk), key_budget)
            self._send(
                sender, Chunk(pull.pull_id, index, len(chunks), complete, tuple(chunk), tuple(keys))
            )
        if pull.flags & REPLY and vector_is_ahead(theirs, mine):
            self._want_pull(sender, FIRST, now)

    def _split(self, envelopes: list[bytes]) -> list[list[bytes]]:
        budget = self._config.max_chunk_bytes
        hard = self._config.max_frame_bytes // 2 - HEADER_BYTES
        chunks: list[list[bytes]] = []
        size = budget + 1
        for envelope in envelopes:
            extra = len(envelope) + bytes_overhead(len(envelope))
            if extra > hard:
                break  # cannot travel in a frame; the rest of its origin would be a gap
            if size + extra > budget:
                chunks.append([])
                size = 0
            chunks[-1].append(envelope)
            size += extra
        return chunks

    def _pull_timeout(self) -> float:
        backoff = min(1 << min(self._timeouts_in_a_row, 30), MAX_PULL_BACKOFF)
        return self._config.pull_timeout_s * backoff

    def _on_chunk(self, chunk: Chunk, sender: NodeId, now: float) -> bool:
        """Take one chunk of the current pull; False: it belongs to no pull (stale)."""
        pull = self._pull
        if pull is None or pull.peer != sender or pull.pull_id != chunk.pull_id:
            return False  # a stale answer (timed out, or a pull we already finished)
        if pull.total is None:
            pull.total = chunk.total
        elif pull.total != chunk.total or chunk.index < pull.next_index:
            return False
        pull.deadline = now + self._pull_timeout()
        pull.early[chunk.index] = chunk
        while pull.next_index in pull.early:
            current = pull.early.pop(pull.next_index)
            pull.next_index += 1
            pull.complete = current.complete
            if current.envelopes:
                result = self._apply(current.envelopes, current.keys, sender)
                pull.applied += result.applied
                pull.need_keys |= any(r.unknown_key for r in result.refused)
        if pull.next_index < pull.total:
            return True
        self._pull = None
        self._timeouts_in_a_row = 0
        if pull.complete and pull.applied:
            # What arrived by pull spreads the same way: tell a few others to pull from us.
            others = [p for p in self._peers if p != sender]
            self._announce(self._rng.sample(others, min(len(others), self._config.fanout)))
        keys_again = pull.need_keys and not pull.asked_keys  # asked once: do not loop
        if (not pull.complete and pull.applied) or keys_again:
            self._start_pull(sender, NEED_KEYS if keys_again else 0, now)
        elif self._wanted is not None:
            peer, flags = self._wanted
            self._wanted = None
            if peer in self._peer_set:
                self._start_pull(peer, flags, now)
        return True

    # -- helpers -------------------------------------------------------------------------

    def _apply(
        self, envelopes: Sequence[bytes], keys: Sequence[bytes], sender: NodeId
    ) -> ApplyResult:
        result = self._log.apply(envelopes, keys)
        stats = self.stats
        stats.envelopes_received += len(envelopes)
        stats.envelopes_applied += result.applied
        stats.duplicates += result.duplicates
        if result.new:
            self._events.append(ChangesApplied(result.applied, result.origins, sender))
        for refusal in result.refused:
            self._events.append(
                ChangesRefused(sender, refusal.origin, refusal.reason, refusal.count)
            )
        return result

    def _send(self, to: NodeId, message: Message) -> None:
        self._send_bytes(to, encode(message))

    def _send_bytes(self, to: NodeId, data: bytes) -> None:
        if len(data) > self._config.max_frame_bytes:  # pragma: no cover - budgets prevent it
            raise AssertionError(f"message of {len(data)} bytes exceeds max_frame_bytes")
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        self._outbox.append((to, data))

    def _reject(self, sender: NodeId, reason: str) -> None:
        self.stats.rejected += 1
        self._events.append(MessageRejected(sender, reason))
