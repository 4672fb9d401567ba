"""The membership protocol's messages on the wire: CBOR, versioned, size-bounded, validated.

Theory of operation. A message is one canonical CBOR array::

    [VERSION, kind, seq, target, updates]

- ``VERSION`` is `VERSION` (1); a message of another version is rejected whole.
- ``kind`` is a `Kind`: ping, ack, ping-req, nack, join, sync or gossip.
- ``seq`` is the sender's probe sequence number (0 when the kind has none), ``< 2**32``.
- ``target`` is the probed member's id for ping-req (and the pinged id for ping), else null.
- ``updates`` is a list of membership updates ``[state, node, incarnation]`` or, for a
  suspicion (and only then), ``[state, node, incarnation, suspector]``. For every kind but
  sync they are piggybacked gossip; for sync they are the sender's whole member list
  (possibly over several messages).

`decode` never raises: bad bytes from a peer come back as a `Rejected` with the reason. It
accepts only the exact bytes `encode` would produce for the decoded value (canonical CBOR, no
trailing bytes), so there is one encoding per message. `pack` fills a message with updates up
to a byte budget, exactly: the encoded length is computed, not estimated.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NewType

import cbor2

NodeId = NewType("NodeId", str)

VERSION = 1
MAX_NODE_ID_BYTES = 128
"""A node id is 1 to 128 bytes of UTF-8; longer ids are refused from peers and callers."""
MAX_SEQ = 2**32 - 1
MAX_INCARNATION = 2**63 - 1
MAX_UPDATES = 65_535


class Kind(enum.IntEnum):
    PING = 1
    ACK = 2
    PING_REQ = 3
    NACK = 4
    JOIN = 5
    SYNC = 6
    GOSSIP = 7


class MemberState(enum.IntEnum):
    """What this node believes of a member. Values are the wire codes."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4


@dataclass(frozen=True, slots=True)
class Update:
    """One membership claim: ``node`` is in ``state`` at ``incarnation`` (``by`` suspects it)."""

    state: MemberState
    node: NodeId
    incarnation: int
    by: NodeId | None = None

    def to_wire(self) -> list[Any]:
        if self.by is None:
            return [int(self.state), self.node, self.incarnation]
        return [int(self.state), self.node, self.incarnation, self.by]


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
    if not isinstance(value, str) or not value.isprintable():
        return False
    try:
        return 0 < len(value.encode("utf-8")) <= MAX_NODE_ID_BYTES
    except UnicodeEncodeError:
        return False


def encode(message: Message) -> bytes:
    return cbor2.dumps(_header(message, [u.to_wire() for u in message.updates]))


def _header(message: Message, updates: list[Any]) -> list[Any]:
    return [VERSION, int(message.kind), message.seq, message.target, updates]


def _array_header_bytes(count: int) -> int:
    return 1 if count < 24 else 2 if count < 256 else 3


def encoded_update_size(update: Update) -> int:
    return len(cbor2.dumps(update.to_wire()))


def pack(message: Message, candidates: Iterable[Update], budget: int) -> tuple[bytes, list[Update]]:
    """Encode ``message`` plus as many ``candidates`` (in order) as fit in ``budget`` bytes.

    Returns the bytes and the candidates included. A candidate that does not fit is skipped
    and later, smaller ones are still tried. The base message must fit on its own.
    """
    base = len(encode(message))  # its update list has len(message.updates) items
    count = len(message.updates)
    size = base
    chosen: list[Update] = []
    for update in candidates:
        if count >= MAX_UPDATES:
            break
        grow = _array_header_bytes(count + 1) - _array_header_bytes(count)
        extra = encoded_update_size(update) + grow
        if size + extra > budget:
            continue
        size += extra
        count += 1
        chosen.append(update)
    full = Message(message.kind, message.seq, message.target, (*message.updates, *chosen))
    data = encode(full)
    if len(data) != size:  # pragma: no cover - the arithmetic above is exact
        raise AssertionError(f"packed size {len(data)} != computed {size}")
    return data, chosen


def decode(data: bytes, *, max_bytes: int) -> Message | Rejected:
    """Parse and validate a peer's message; never raises."""
    if len(data) > max_bytes:
        return Rejected(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        raw = cbor2.loads(data)
        canonical = cbor2.dumps(raw)
    # cbor2 raises CBORDecodeError, but its tag decoders can raise ValueError, TypeError,
    # OverflowError and others on crafted input; any of them means "not a message".
    except Exception as exc:
        return Rejected(f"not CBOR: {type(exc).__name__}")
    if canonical != data:
        return Rejected("not canonical CBOR or trailing bytes")
    return _validate(raw)


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _validate(raw: object) -> Message | Rejected:
    if not isinstance(raw, list) or len(raw) != 5:
        return Rejected("not a 5-item array")
    version, kind, seq, target, updates = raw
    if version != VERSION or type(version) is not int:
        return Rejected(f"unsupported version {version!r}")
    if not _is_int(kind, min(Kind), max(Kind)):
        return Rejected(f"unknown kind {kind!r}")
    if not _is_int(seq, 0, MAX_SEQ):
        return Rejected("bad seq")
    if target is not None and not valid_node_id(target):
        return Rejected("bad target")
    if Kind(kind) in (Kind.PING_REQ,) and target is None:
        return Rejected("ping-req without a target")
    if not isinstance(updates, list):
        return Rejected("updates is not an array")
    parsed: list[Update] = []
    for item in updates:
        update = _validate_update(item)
        if update is None:
            return Rejected("bad update")
        parsed.append(update)
    return Message(Kind(kind), seq, target, tuple(parsed))


def _validate_update(item: object) -> Update | None:
    if not isinstance(item, list) or len(item) not in (3, 4):
        return None
    state, node, incarnation, *rest = item
    if not _is_int(state, min(MemberState), max(MemberState)):
        return None
    if not valid_node_id(node) or not _is_int(incarnation, 0, MAX_INCARNATION):
        return None
    if (MemberState(state) is MemberState.SUSPECT) != bool(rest):
        return None  # a suspicion names its suspector; nothing else does
    by: NodeId | None = None
    if rest:
        if MemberState(state) is not MemberState.SUSPECT or not valid_node_id(rest[0]):
            return None
        by = NodeId(rest[0])
    return Update(MemberState(state), NodeId(node), incarnation, by)
