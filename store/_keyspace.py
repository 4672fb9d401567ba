"""How the store lays out its LMDB keys (see `store.db` for the databases).

Keys sort the way the store reads them: an origin's changes by seq, an object's history in
fold order ``(hlc, origin, seq)``. Names and ids cannot contain NUL, which separates them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import cbor2

from store._change import ZERO_DIGEST, Change


def object_key(kind: str, name: str) -> bytes:
    return f"{kind}\0{name}".encode()


_SEQ = struct.Struct(">Q").pack
_HLC = struct.Struct(">QI").pack


def log_key(origin: str, seq: int) -> bytes:
    return b"%s\0%s" % (origin.encode(), _SEQ(seq))


def log_entries(run: Sequence[Change]) -> list[tuple[bytes, bytes]]:
    """One origin's changes as log records (key, envelope), in seq order if `run` is."""
    prefix = run[0].origin.encode() + b"\0"
    return [(prefix + _SEQ(c.seq), c.envelope) for c in run]


def history_key(prefix: bytes, c: Change) -> bytes:
    wall, counter, origin, seq = c.sort_key
    return b"%s%s%s\0%s" % (prefix, _HLC(wall, counter), origin.encode(), _SEQ(seq))


def decode_head(raw: bytes | None) -> tuple[int, bytes]:
    if raw is None:
        return 0, ZERO_DIGEST
    seq, digest = cbor2.loads(raw)
    return seq, digest
