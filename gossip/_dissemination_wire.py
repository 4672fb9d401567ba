"""The dissemination protocol's messages on the wire: CBOR, versioned, size-bounded, validated.

Theory of operation. A message is one CBOR array that starts ``[VERSION, kind, …]``:

- ``PUSH``   ``[1, 1, envelopes, keys]``: fresh changes, sent at once and while they are hot.
- ``DIGEST`` ``[1, 2, digest, origins]``: a 16-byte hash of the sender's version vector and how
  many origins it names; the receiver compares it with its own (anti-entropy).
- ``PULL``   ``[1, 3, pull_id, credit, flags, vector]``: "send me what this version vector
  lacks, in at most ``credit`` chunks"; ``vector`` is ``[[origin, seq], …]`` sorted by origin.
  ``flags``: `REPLY` (the receiver should pull from the sender too if the sender's vector is
  ahead anywhere), `NEED_KEYS` (send every key again: some were missing), `FIRST` (the start
  of a catch-up, not a continuation).
- ``CHUNK``  ``[1, 4, pull_id, index, total, complete, envelopes, keys]``: chunk ``index`` of
  ``total`` answering pull ``pull_id``; ``complete`` says the answer held everything missing.

Envelopes and keys are opaque byte strings (the log and the store check them). `decode`
never raises: a peer's bad bytes come back as a `Rejected` with the reason. It accepts only
the exact bytes `encode` makes for the decoded value (no trailing bytes, one encoding per
message), and nothing longer than the receiver's ``max_bytes``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from gossip._membership_wire import NodeId, valid_node_id

__all__ = [
    "DIGEST_BYTES",
    "FIRST",
    "MAX_PULL_ID",
    "MAX_SEQ",
    "NEED_KEYS",
    "REPLY",
    "VERSION",
    "Chunk",
    "Digest",
    "Kind",
    "Message",
    "NodeId",
    "Pull",
    "Push",
    "Rejected",
    "bytes_overhead",
    "decode",
    "encode",
    "missing_count",
    "valid_node_id",
    "vector_digest",
    "vector_is_ahead",
]

VERSION = 1
DIGEST_BYTES = 16
MAX_PULL_ID = 2**32 - 1
MAX_SEQ = 2**63 - 1
MAX_CREDIT = 64
MAX_ORIGIN_BYTES = 253
REPLY = 1
NEED_KEYS = 2
FIRST = 4
_ALL_FLAGS = REPLY | NEED_KEYS | FIRST


class Kind(enum.IntEnum):
    PUSH = 1
    DIGEST = 2
    PULL = 3
    CHUNK = 4


@dataclass(frozen=True, slots=True)
class Push:
    envelopes: tuple[bytes, ...]
    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Digest:
    digest: bytes
    origins: int


@dataclass(frozen=True, slots=True)
class Pull:
    pull_id: int
    credit: int
    flags: int
    vector: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Chunk:
    pull_id: int
    index: int
    total: int
    complete: bool
    envelopes: tuple[bytes, ...]
    keys: tuple[bytes, ...] = ()


Message = Push | Digest | Pull | Chunk


@dataclass(frozen=True, slots=True)
class Rejected:
    """A peer's bytes that are not a valid message; ``reason`` says why."""

    reason: str


def encode(message: Message) -> bytes:
    return cbor2.dumps(_to_wire(message))


def _to_wire(message: Message) -> list[Any]:
    match message:
        case Push(envelopes, keys):
            return [VERSION, int(Kind.PUSH), list(envelopes), list(keys)]
        case Digest(digest, origins):
            return [VERSION, int(Kind.DIGEST), digest, origins]
        case Pull(pull_id, credit, flags, vector):
            return [VERSION, int(Kind.PULL), pull_id, credit, flags, [list(p) for p in vector]]
        case Chunk(pull_id, index, total, complete, envelopes, keys):
            return [
                VERSION,
                int(Kind.CHUNK),
                pull_id,
                index,
                total,
                complete,
                list(envelopes),
                list(keys),
            ]
    raise TypeError(f"not a dissemination message: {message!r}")  # pragma: no cover


def bytes_overhead(length: int) -> int:
    """The CBOR head of a byte string (or an array) of ``length``: what one item adds."""
    if length < 24:
        return 1
    if length < 256:
        return 2
    if length < 65_536:
        return 3
    return 5 if length < 2**32 else 9


def decode(data: bytes, *, max_bytes: int) -> Message | Rejected:
    """Parse and validate a peer's message; never raises."""
    if len(data) > max_bytes:
        return Rejected(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        raw = cbor2.loads(data)
        canonical = cbor2.dumps(raw)
    # cbor2's tag decoders can raise ValueError, TypeError, OverflowError and others on
    # crafted input; any of them means "not a message".
    except Exception as exc:
        return Rejected(f"not CBOR: {type(exc).__name__}")
    if canonical != data:
        return Rejected("not canonical CBOR or trailing bytes")
    return _validate(raw)


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _blobs(value: object) -> tuple[bytes, ...] | None:
    if not isinstance(value, list) or not all(type(v) is bytes and v for v in value):
        return None
    return tuple(value)


def _validate(raw: object) -> Message | Rejected:
    if not isinstance(raw, list) or len(raw) < 2:
        return Rejected("not an array of at least 2 items")
    version, kind, *rest = raw
    if type(version) is not int or version != VERSION:
        return Rejected(f"unsupported version {version!r}")
    if not _is_int(kind, min(Kind), max(Kind)):
        return Rejected(f"unknown kind {kind!r}")
    match Kind(kind):
        case Kind.PUSH:
            return _push(rest)
        case Kind.DIGEST:
            return _digest(rest)
        case Kind.PULL:
            return _pull(rest)
        case Kind.CHUNK:
            return _chunk(rest)
    return Rejected("unknown kind")  # pragma: no cover


def _push(rest: list[Any]) -> Message | Rejected:
    if len(rest) != 2:
        return Rejected("push: expected 4 items")
    envelopes, keys = _blobs(rest[0]), _blobs(rest[1])
    if envelopes is None or not envelopes:
        return Rejected("push: envelopes must be a non-empty array of byte strings")
    if keys is None:
        return Rejected("push: keys must be an array of byte strings")
    return Push(envelopes, keys)


def _digest(rest: list[Any]) -> Message | Rejected:
    if len(rest) != 2:
        return Rejected("digest: expected 4 items")
    digest, origins = rest
    if type(digest) is not bytes or len(digest) != DIGEST_BYTES:
        return Rejected(f"digest: expected {DIGEST_BYTES} bytes")
    if not _is_int(origins, 0, MAX_SEQ):
        return Rejected("digest: bad origin count")
    return Digest(digest, origins)


def _pull(rest: list[Any]) -> Message | Rejected:
    if len(rest) != 4:
        return Rejected("pull: expected 6 items")
    pull_id, credit, flags, vector = rest
    if not _is_int(pull_id, 0, MAX_PULL_ID):
        return Rejected("pull: bad pull id")
    if not _is_int(credit, 1, MAX_CREDIT):
        return Rejected(f"pull: credit expected 1..{MAX_CREDIT}")
    if not _is_int(flags, 0, _ALL_FLAGS):
        return Rejected("pull: unknown flags")
    if not isinstance(vector, list):
        return Rejected("pull: vector is not an array")
    pairs: list[tuple[str, int]] = []
    last = ""
    for item in vector:
        if not (isinstance(item, list) and len(item) == 2):
            return Rejected("pull: a vector entry is not [origin, seq]")
        origin, seq = item
        if not _valid_origin(origin) or not _is_int(seq, 1, MAX_SEQ):
            return Rejected("pull: bad vector entry")
        if pairs and origin <= last:
            return Rejected("pull: vector not sorted by origin or repeats one")
        last = origin
        pairs.append((origin, seq))
    return Pull(pull_id, credit, flags, tuple(pairs))


def _chunk(rest: list[Any]) -> Message | Rejected:
    if len(rest) != 6:
        return Rejected("chunk: expected 8 items")
    pull_id, index, total, complete, envelopes, keys = rest
    if not _is_int(pull_id, 0, MAX_PULL_ID):
        return Rejected("chunk: bad pull id")
    if not _is_int(total, 1, MAX_CREDIT) or not _is_int(index, 0, total - 1):
        return Rejected("chunk: bad index or total")
    if type(complete) is not bool:
        return Rejected("chunk: complete is not a boolean")
    blobs, key_blobs = _blobs(envelopes), _blobs(keys)
    if blobs is None or key_blobs is None:
        return Rejected("chunk: envelopes and keys must be arrays of byte strings")
    return Chunk(pull_id, index, total, complete, blobs, key_blobs)


def _valid_origin(value: object) -> bool:
    if not isinstance(value, str) or not value.isprintable():
        return False
    try:
        return 0 < len(value.encode("utf-8")) <= MAX_ORIGIN_BYTES
    except UnicodeEncodeError:
        return False


def vector_digest(vector: Mapping[str, int]) -> bytes:
    """16 bytes that differ, but for a hash collision, between different version vectors."""
    h = hashlib.blake2b(digest_size=16)
    for origin in sorted(vector):
        h.update(f"{origin}\0{vector[origin]}\n".encode())
    return h.digest()


def missing_count(mine: Mapping[str, int], theirs: Mapping[str, int]) -> int:
    """How many changes of ``mine`` a node holding ``theirs`` lacks."""
    return sum(max(0, seq - theirs.get(origin, 0)) for origin, seq in mine.items())


def vector_is_ahead(theirs: Mapping[str, int], mine: Mapping[str, int]) -> bool:
    """Whether ``theirs`` holds a change of some origin that ``mine`` lacks."""
    return any(seq > mine.get(origin, 0) for origin, seq in theirs.items())
