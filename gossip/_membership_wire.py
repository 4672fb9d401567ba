"""The membership protocol's messages on the wire: CBOR, versioned, size-bounded, validated.

Theory of operation. A message is one canonical CBOR array::

    [VERSION, kind, seq, target, updates]

- ``VERSION`` is `VERSION` (2); a message of another version is rejected whole. Version 2
  added member metadata (the optional fourth item of an alive update) and push-pull.
- ``kind`` is a `Kind`: ping, ack, ping-req, nack, join, sync, gossip, push-pull or
  reliable-ping (a ping sent over the reliable channel; added within version 2: a peer that
  predates it rejects that message alone, and its prober falls back to suspicion as before).
- ``seq`` is the sender's probe sequence number (0 when the kind has none), ``< 2**32``.
- ``target`` is the probed member's id for ping-req and reliable-ping (and the pinged id for
  ping), else null.
- ``updates`` is a list of membership updates ``[state, node, incarnation]``; a suspicion
  (and only it) adds its suspector, ``[2, node, incarnation, suspector]``, and an alive claim
  of a member with metadata adds it, ``[1, node, incarnation, meta]`` (1..`MAX_META_BYTES`
  bytes; empty metadata is left out, so each claim has one encoding). For every kind but sync
  and push-pull they are piggybacked gossip; for those they are the sender's whole member list
  (possibly over several messages).

`decode` never raises: bad bytes from a peer come back as a `Rejected` with the reason. It
accepts only the exact bytes `encode` would produce for the decoded value (canonical CBOR, no
trailing bytes), so there is one encoding per message. A CBOR array is its header followed by
its items, so a message is assembled from each update's encoding, computed once: `pack` and
`BroadcastQueue.fill` fill a message up to a byte budget exactly (the length is the sum of the
parts, checked against the bytes), never over it.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Any, NamedTuple, NewType

import cbor2

NodeId = NewType("NodeId", str)

VERSION = 2
MAX_NODE_ID_BYTES = 128
"""A node id is 1 to 128 bytes of UTF-8; longer ids are refused from peers and callers."""
MAX_META_BYTES = 256
"""A member's metadata is 0 to 256 opaque bytes."""
MAX_SEQ = 2**32 - 1
MAX_INCARNATION = 2**63 - 1
MAX_UPDATES = 65_535
MIN_UPDATE_BYTES = 5
"""The smallest encoded update, ``[state, "x", 0]``: no update fits in less room."""


class Kind(enum.IntEnum):
    PING = 1
    ACK = 2
    PING_REQ = 3
    NACK = 4
    JOIN = 5
    SYNC = 6
    GOSSIP = 7
    PUSH_PULL = 8
    """The sender's member list, like sync, asking for the receiver's in return."""
    RELIABLE_PING = 9
    """A ping sent over the reliable channel (a probe's fallback): the receiver acks it over
    the reliable channel too, with the same seq."""


class MemberState(enum.IntEnum):
    """What this node believes of a member. Values are the wire codes."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4


_KINDS = {int(k): k for k in Kind}
_STATES = {int(s): s for s in MemberState}
_SUSPECT = MemberState.SUSPECT
_ALIVE = MemberState.ALIVE


class Update(NamedTuple):
    """One membership claim: ``node`` is in ``state`` at ``incarnation``; ``by`` names the
    suspector of a suspicion, ``meta`` the metadata of an alive claim."""

    state: MemberState
    node: NodeId
    incarnation: int
    by: NodeId | None = None
    meta: bytes = b""

    def to_wire(self) -> list[Any]:
        if self.by is not None:
            return [int(self.state), self.node, self.incarnation, self.by]
        if self.meta:
            return [int(self.state), self.node, self.incarnation, self.meta]
        return [int(self.state), self.node, self.incarnation]


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    seq: int = 0
    target: NodeId | None = None
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A peer's bytes that are not a valid message; ``reason`` says why."""

    reason: str


def valid_node_id(value: object) -> bool:
    """1 to `MAX_NODE_ID_BYTES` bytes of UTF-8, printable."""
    if type(value) is str and value.isascii():
        return 0 < len(value) <= MAX_NODE_ID_BYTES and value.isprintable()
    if not isinstance(value, str) or not value.isprintable():
        return False
    try:
        return 0 < len(value.encode("utf-8")) <= MAX_NODE_ID_BYTES
    except UnicodeEncodeError:
        return False


def encode(message: Message) -> bytes:
    return cbor2.dumps(_header(message, [u.to_wire() for u in message.updates]))


def encode_update(update: Update) -> bytes:
    """One update's canonical encoding: a message's update list is these bytes in a row."""
    return cbor2.dumps(update.to_wire())


def encoded_update_size(update: Update) -> int:
    return len(encode_update(update))


def _header(message: Message, updates: list[Any]) -> list[Any]:
    return [VERSION, int(message.kind), message.seq, message.target, updates]


def _prefix(message: Message) -> bytes:
    """The message's encoding up to its update list's header (what cbor2 writes for
    ``[VERSION, kind, seq, target]`` with a fifth item still to come)."""
    target = message.target
    if target is None:
        tail = b"\xf6"
    elif target.isascii() and len(target) < 24:
        tail = bytes((0x60 + len(target),)) + target.encode()
    else:
        tail = cbor2.dumps(target)
    return b"".join((b"\x85", bytes((VERSION, message.kind)), _uint(message.seq), tail))


def _uint(value: int) -> bytes:
    if value < 24:
        return bytes((value,))
    if value < 256:
        return bytes((0x18, value))
    if value < 65_536:
        return b"\x19" + value.to_bytes(2, "big")
    return cbor2.dumps(value)


def _array_header(count: int) -> bytes:
    if count < 24:
        return bytes((0x80 + count,))
    if count < 256:
        return bytes((0x98, count))
    return b"\x99" + count.to_bytes(2, "big")


def _array_header_bytes(count: int) -> int:
    return 1 if count < 24 else 2 if count < 256 else 3


class _Packer:
    """A message being filled: its fixed part plus updates, with its exact encoded length."""

    __slots__ = ("base", "budget", "count", "parts", "prefix", "size")

    def __init__(self, message: Message, budget: int) -> None:
        self.prefix = _prefix(message)
        self.base = [encode_update(u) for u in message.updates]
        self.count = len(self.base)
        self.parts: list[bytes] = []
        self.size = len(self.prefix) + _array_header_bytes(self.count) + sum(map(len, self.base))
        self.budget = budget

    def room_for(self, size: int) -> bool:
        """Whether an update of ``size`` encoded bytes still fits."""
        count = self.count
        grow = _array_header_bytes(count + 1) - _array_header_bytes(count)
        return count < MAX_UPDATES and self.size + size + grow <= self.budget

    def add(self, data: bytes) -> None:
        count = self.count
        self.size += len(data) + _array_header_bytes(count + 1) - _array_header_bytes(count)
        self.count += 1
        self.parts.append(data)

    def bytes(self) -> bytes:
        data = b"".join((self.prefix, _array_header(self.count), *self.base, *self.parts))
        if len(data) != self.size:  # pragma: no cover - the arithmetic above is exact
            raise AssertionError(f"packed size {len(data)} != computed {self.size}")
        return data


def pack(message: Message, candidates: Iterable[Update], budget: int) -> tuple[bytes, list[Update]]:
    """Encode ``message`` plus as many ``candidates`` (in order) as fit in ``budget`` bytes.

    Returns the bytes and the candidates included. A candidate that does not fit is skipped
    and later, smaller ones are still tried. The base message must fit on its own.
    """
    packer = _Packer(message, budget)
    chosen: list[Update] = []
    for update in candidates:
        if not packer.room_for(MIN_UPDATE_BYTES):
            break
        data = encode_update(update)
        if packer.room_for(len(data)):
            packer.add(data)
            chosen.append(update)
    return packer.bytes(), chosen


class _Queued:
    __slots__ = ("data", "key", "node", "size", "transmits", "update")

    def __init__(self, update: Update, data: bytes, order: int) -> None:
        self.update = update
        self.node = update.node
        self.data = data
        self.size = len(self.data)
        self.key = (order, self)  # a bucket's entry; orders are unique, so it sorts by age
        self.transmits = 0


class BroadcastQueue:
    """Updates waiting to be piggybacked, at most one per member: least-sent first, newest
    first among equals. Kept in buckets by transmit count, each sorted by age, with each
    update's encoding computed once, so filling a message costs what it takes, not the queue."""

    def __init__(self) -> None:
        self._items: dict[NodeId, _Queued] = {}
        self._buckets: dict[int, list[tuple[int, _Queued]]] = {}
        self._sizes: Counter[int] = Counter()  # encoded size -> how many queued
        self._order = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, update: Update, data: bytes | None = None) -> None:
        """Queue ``update`` (whose encoding is ``data``, if known) as the newest, replacing any
        queued one about the same member."""
        old = self._items.get(update.node)
        if old is not None:
            self._remove(old)
        self._order += 1
        item = _Queued(update, encode_update(update) if data is None else data, self._order)
        self._items[update.node] = item
        self._buckets.setdefault(0, []).append(item.key)  # the newest: sorts last
        self._sizes[item.size] += 1

    def clear(self) -> None:
        self._items.clear()
        self._buckets.clear()
        self._sizes.clear()

    def fill(self, message: Message, budget: int, limit: int, skip: Set[NodeId]) -> bytes:
        """Encode ``message`` plus the queued updates that fit in ``budget`` bytes (none about
        a member in ``skip``), in queue order; each one included counts a transmit and is
        dropped from the queue once sent ``limit`` times."""
        packer = _Packer(message, budget)
        smallest = min(self._sizes) if self._sizes else 0
        chosen: list[_Queued] = []
        size, count = packer.size, packer.count
        for transmits in sorted(self._buckets):
            for _, item in reversed(self._buckets[transmits]):
                # The array header grows by a byte at 24 and at 256 items.
                grow = 1 if count in (23, 255) else 0
                if count >= MAX_UPDATES or size + smallest + grow > budget:
                    break  # nothing left can fit
                if size + item.size + grow <= budget and item.node not in skip:
                    size += item.size + grow
                    count += 1
                    chosen.append(item)
            else:
                continue
            break
        packer.parts = [item.data for item in chosen]
        packer.size, packer.count = size, count
        for item in chosen:
            self._unbucket(item)
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[item.node]
                self._forget_size(item)
            else:
                insort(self._buckets.setdefault(item.transmits, []), item.key)
        return packer.bytes()

    def _remove(self, item: _Queued) -> None:
        self._unbucket(item)
        del self._items[item.node]
        self._forget_size(item)

    def _unbucket(self, item: _Queued) -> None:
        bucket = self._buckets[item.transmits]
        del bucket[bisect_left(bucket, item.key[:1])]  # (order,) sorts just before (order, x)
        if not bucket:
            del self._buckets[item.transmits]

    def _forget_size(self, item: _Queued) -> None:
        size = item.size
        self._sizes[size] -= 1
        if not self._sizes[size]:
            del self._sizes[size]


def sync_messages(kind: Kind, encoded: list[bytes], budget: int) -> list[bytes]:
    """Encoded records (a member list) in as few messages of ``kind`` as the budget allows,
    the first records first; the first message is ``kind``, any further ones sync."""
    out: list[bytes] = []
    while encoded:
        packer = _Packer(Message(kind if not out else Kind.SYNC), budget)
        size, count = packer.size, packer.count
        parts: list[bytes] = []
        rest: list[bytes] = []
        for data in encoded:
            grow = 1 if count in (23, 255) else 0  # the array header grows at 24 and 256
            if count < MAX_UPDATES and size + len(data) + grow <= budget:
                size += len(data) + grow
                count += 1
                parts.append(data)
            else:
                rest.append(data)
        if not parts:  # pragma: no cover - MIN_MESSAGE_BYTES leaves room for any record
            break
        packer.parts, packer.size, packer.count = parts, size, count
        out.append(packer.bytes())
        encoded = rest
    return out


def decode(
    data: bytes, *, max_bytes: int, memo: dict[str, tuple[Update, bytes]] | None = None
) -> Message | Rejected:
    """Parse and validate a peer's message; never raises.

    Canonical means the bytes are exactly what `encode` makes of the decoded message, which
    is checked by assembling that encoding from each update's. ``memo`` (the caller's, kept
    across calls) maps a node id to the last update decoded about it and its encoding: an
    identical claim is then taken from it without validating or encoding it again (each claim
    reaches a node many times). It changes no result, only the cost; it is cleared when it
    holds `MEMO_LIMIT` ids."""
    if len(data) > max_bytes:
        return Rejected(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        raw = cbor2.loads(data)
    # cbor2 raises CBORDecodeError, but its tag decoders can raise ValueError, TypeError,
    # OverflowError and others on crafted input; any of them means "not a message".
    except Exception as exc:
        return Rejected(f"not CBOR: {type(exc).__name__}")
    result = _validate(raw, {} if memo is None else memo)
    if isinstance(result, Rejected):
        return result
    message, encoded = result
    canonical = b"".join((_prefix(message), _array_header(len(encoded)), *encoded))
    if canonical != data:
        return Rejected("not canonical CBOR or trailing bytes")
    return message


MEMO_LIMIT = 65_536


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _validate(
    raw: object, memo: dict[str, tuple[Update, bytes]]
) -> tuple[Message, list[bytes]] | Rejected:
    if type(raw) is not list or len(raw) != 5:
        return Rejected("not a 5-item array")
    version, kind, seq, target, updates = raw
    if version != VERSION or type(version) is not int:
        return Rejected(f"unsupported version {version!r}")
    the_kind = _KINDS.get(kind) if type(kind) is int else None
    if the_kind is None:
        return Rejected(f"unknown kind {kind!r}")
    if not _is_int(seq, 0, MAX_SEQ):
        return Rejected("bad seq")
    if target is not None and not valid_node_id(target):
        return Rejected("bad target")
    if the_kind in (Kind.PING_REQ, Kind.RELIABLE_PING) and target is None:
        return Rejected(f"{the_kind.name.lower().replace('_', '-')} without a target")
    if type(updates) is not list:
        return Rejected("updates is not an array")
    parsed: list[Update] = []
    encoded: list[bytes] = []
    append, append_encoded = parsed.append, encoded.append
    if len(memo) > MEMO_LIMIT:
        memo.clear()
    for item in updates:
        # The common case inline: a plain claim identical to the last one about its node.
        if type(item) is list and len(item) == 3:
            code, node, incarnation = item
            if type(node) is str and type(code) is int and type(incarnation) is int:
                hit = memo.get(node)
                if hit is not None:
                    known = hit[0]
                    if (
                        known[0] == code
                        and known[2] == incarnation
                        and known[3] is None
                        and not known[4]
                    ):
                        append(known)
                        append_encoded(hit[1])
                        continue
        update = _validate_update(item)
        if update is None:
            return Rejected("bad update")
        data = encode_update(update)
        memo[update.node] = (update, data)
        append(update)
        append_encoded(data)
    return Message(the_kind, seq, target, tuple(parsed)), encoded


def _validate_update(item: object) -> Update | None:
    if type(item) is not list:
        return None
    size = len(item)
    if size == 3:
        code, node, incarnation = item
        extra: Any = None
    elif size == 4:
        code, node, incarnation, extra = item
    else:
        return None
    state = _STATES.get(code) if type(code) is int else None
    if (
        state is None
        or type(incarnation) is not int
        or not 0 <= incarnation <= MAX_INCARNATION
        or not (
            # the common case inline: a short printable ASCII id
            (
                type(node) is str
                and node.isascii()
                and 0 < len(node) <= MAX_NODE_ID_BYTES
                and node.isprintable()
            )
            or valid_node_id(node)
        )
    ):
        return None
    if size == 3:
        return (
            None
            if state is _SUSPECT
            else _new_update(Update, (state, node, incarnation, None, b""))
        )
    if state is _SUSPECT:  # a suspicion names its suspector
        return Update(state, node, incarnation, NodeId(extra)) if valid_node_id(extra) else None
    if state is _ALIVE and type(extra) is bytes and 0 < len(extra) <= MAX_META_BYTES:
        return Update(state, node, incarnation, None, extra)
    return None  # nothing else carries a fourth item


_new_update = tuple.__new__
"""Makes an `Update` from its five fields without the keyword handling of its constructor."""
