"""Facts the mesh keeps about nodes, as plain values: how to reach a node and its pods (its
contact, in its membership metadata), how far behind another node's version vector is, and a
`Log` that counts what it applied (so a catch-up's cost can be set against what it brought)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from gossip._dissemination import ApplyResult, Log
from gossip._membership_wire import MAX_META_BYTES

CONTACT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach a node (a member's metadata): its addresses and its QUIC port; and where
    its pods are: its pods' /64 and its own link-local addresses, the next hops of the routes
    to that /64 (docs/network.md)."""

    addresses: tuple[str, ...]
    port: int
    pod_prefix: str | None = None
    link_local: tuple[str, ...] = ()

    def encode(self) -> bytes:
        body: list[Any] = [CONTACT_FORMAT, list(self.addresses), self.port]
        if self.pod_prefix is not None:
            net = ipaddress.IPv6Network(self.pod_prefix)
            body.append(net.network_address.packed[:8])
            body.append([ipaddress.IPv6Address(a).packed for a in self.link_local])
        return cbor2.dumps(body, canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> Contact | None:
        """The contact in a member's metadata, or None if it is not one (a peer's fault)."""
        try:
            fmt, addresses, port, *network = cbor2.loads(data)
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
        prefix, link_local = _network(network)
        if network and prefix is None:
            return None
        return cls(tuple(addresses[:8]), port, prefix, link_local)


def _network(network: list[Any]) -> tuple[str | None, tuple[str, ...]]:
    """The pods' /64 and the link-local next hops in a contact's tail; (None, ()) if they are
    missing or malformed."""
    if len(network) != 2:
        return None, ()
    prefix, hops = network
    if not isinstance(prefix, bytes) or len(prefix) != 8 or not isinstance(hops, list):
        return None, ()
    if not all(isinstance(h, bytes) and len(h) == 16 for h in hops):
        return None, ()
    addresses = [ipaddress.IPv6Address(h) for h in hops[:4]]
    if not all(a.is_link_local for a in addresses):
        return None, ()
    net = ipaddress.IPv6Network((prefix + bytes(8), 64))
    return str(net), tuple(str(a) for a in addresses)


def fitting_contact(
    addresses: Sequence[str],
    port: int,
    *,
    pod_prefix: str | None = None,
    link_local: Sequence[str] = (),
) -> Contact:
    """The contact with as many of `addresses` (in order) as fit a member's metadata, and
    the pods' /64 with up to four link-local next hops."""
    kept = list(addresses)
    hops = tuple(link_local[:4])
    while kept and len(Contact(tuple(kept), port, pod_prefix, hops).encode()) > MAX_META_BYTES:
        kept.pop()
    return Contact(tuple(kept), port, pod_prefix, hops)


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
