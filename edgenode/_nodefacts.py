"""Facts the mesh keeps about nodes, as plain values: how to reach a node (its contact, in its
membership metadata), how far behind another node's version vector is, and a `Log` that
counts what it applied (so a catch-up's cost can be set against what it brought)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cbor2

from gossip._dissemination import ApplyResult, Log
from gossip._membership_wire import MAX_META_BYTES

CONTACT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach a node: its addresses and its QUIC port (a member's metadata)."""

    addresses: tuple[str, ...]
    port: int

    def encode(self) -> bytes:
        return cbor2.dumps([CONTACT_FORMAT, list(self.addresses), self.port], canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> Contact | None:
        """The contact in a member's metadata, or None if it is not one (a peer's fault)."""
        try:
            fmt, addresses, port = cbor2.loads(data)
        except (ValueError, TypeError, cbor2.CBORDecodeError):
            return None
        if (
            fmt != CONTACT_FORMAT
            or not isinstance(port, int)
            or not 0 < port < 65536
            or not isinstance(addresses, list)
            or not all(isinstance(a, str) and len(a) <= 64 for a in addresses)
        ):
            return None
        return cls(tuple(addresses[:8]), port)


def fitting_contact(addresses: Sequence[str], port: int) -> Contact:
    """The contact with as many of `addresses` (in order) as fit a member's metadata."""
    kept = list(addresses)
    while kept and len(Contact(tuple(kept), port).encode()) > MAX_META_BYTES:
        kept.pop()
    return Contact(tuple(kept), port)


def behind(mine: Mapping[str, int], theirs: Mapping[str, int] | None) -> int | None:
    """How many changes `theirs` lacks that `mine` holds (None: their vector is unknown)."""
    if theirs is None:
        return None
    return sum(max(0, seq - theirs.get(origin, 0)) for origin, seq in mine.items())


class CountingLog:
    """A `Log` that counts what it applied (changes and their encoded bytes), so a catch-up's
    cost can be compared with the size of what it brought."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner
        self.applied = 0
        self.applied_bytes = 0

    def version_vector(self) -> Mapping[str, int]:
        return self.inner.version_vector()

    def missing(self, peer: Mapping[str, int], *, max_bytes: int) -> tuple[list[bytes], bool]:
        return self.inner.missing(peer, max_bytes=max_bytes)

    def keys_for(self, envelopes: Sequence[bytes]) -> list[bytes]:
        return self.inner.keys_for(envelopes)

    def apply(self, envelopes: Sequence[bytes], keys: Sequence[bytes]) -> ApplyResult:
        result = self.inner.apply(envelopes, keys)
        self.applied += len(result.new)
        self.applied_bytes += sum(len(envelopes[i]) for i in result.new)
        return result
