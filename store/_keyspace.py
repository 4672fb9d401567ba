"""How the store lays out its LMDB keys (see `store.db` for the databases).

Keys sort the way the store reads them: an origin's changes by seq, an object's history in
fold order ``(hlc, origin, seq)``. Names and ids cannot contain NUL, which separates them.
"""

from __future__ import annotations

import cbor2

from store._change import ZERO_DIGEST, Change


def object_key(kind: str, name: str) -> bytes:
    return f"{kind}\0{name}".encode()


def log_key(origin: str, seq: int) -> bytes:
    return origin.encode() + b"\0" + seq.to_bytes(8, "big")


def history_key(prefix: bytes, c: Change) -> bytes:
    return (
        prefix
        + c.hlc.wall_ms.to_bytes(8, "big")
        + c.hlc.counter.to_bytes(4, "big")
        + c.origin.encode()
        + b"\0"
        + c.seq.to_bytes(8, "big")
    )


def decode_head(raw: bytes | None) -> tuple[int, bytes]:
    if raw is None:
        return 0, ZERO_DIGEST
    seq, digest = cbor2.loads(raw)
    return seq, digest
