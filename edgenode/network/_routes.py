"""Routes to other nodes' pods, as a pure decision: which /64 goes to which peer, and what
changes in the kernel's table.

Theory of operation. Every node advertises its pods' /64 and its own link-local addresses in
its membership metadata. A node routes each live peer's /64 (``alive`` or ``suspect``: a
suspect may still be reachable, and withdrawing on suspicion would cut traffic each time a
probe is lost) via that peer's link-local address, on the interface where the shell finds it
(`edgenode.network.peerroutes`). A peer declared ``dead`` or ``left`` loses its route; one
that comes back alive gets it again. No encapsulation: a packet leaves with the pod's own
addresses, and the next hop forwards it to the pod's veth.

`wanted` picks the peers: a /64 outside the cluster's /48, or this node's own, is never routed
(a peer cannot draw this node's or the LAN's traffic to itself); when two live peers advertise
one /64 (a collision not yet settled), the holder by the Node claims (`_addressing.settle`)
gets it, else the lower name. `changes` compares what is wanted with what is installed; while
the daemon has just started (`settling`) it removes only the routes of peers known dead, so a
restart does not cut pods off before membership has heard from their peers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ROUTED = frozenset({"alive", "suspect"})
WITHDRAWN = frozenset({"dead", "left"})


@dataclass(frozen=True, slots=True)
class PeerNet:
    """What membership says of a peer: its state and contact's network facts."""

    node: str
    state: str
    pod_prefix: str | None
    link_local: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """A route to `prefix` via link-local `gateway` on interface `ifindex`."""

    prefix: str
    gateway: str
    ifindex: int


def wanted(
    peers: Iterable[PeerNet],
    *,
    cluster: ipaddress.IPv6Network,
    own_prefix: str,
    holders: Mapping[str, str],
) -> dict[str, PeerNet]:
    """Prefix -> the live peer whose pods it leads to."""
    candidates: dict[str, list[PeerNet]] = {}
    for peer in sorted(peers, key=lambda p: p.node):
        if peer.state not in ROUTED or not peer.link_local or peer.pod_prefix is None:
            continue
        try:
            net = ipaddress.IPv6Network(peer.pod_prefix)
        except ValueError:
            continue
        if net.prefixlen != 64 or not net.subnet_of(cluster) or peer.pod_prefix == own_prefix:
            continue
        candidates.setdefault(peer.pod_prefix, []).append(peer)
    return {
        prefix: next((p for p in ps if p.node == holders.get(prefix)), ps[0])
        for prefix, ps in candidates.items()
    }


def withdrawn(peers: Iterable[PeerNet]) -> set[str]:
    """The prefixes of peers declared dead or gone (and not also advertised by a live one)."""
    live = {p.pod_prefix for p in peers if p.state in ROUTED}
    return {
        p.pod_prefix
        for p in peers
        if p.state in WITHDRAWN and p.pod_prefix is not None and p.pod_prefix not in live
    }


def changes(
    desired: Mapping[str, Route],
    installed: Mapping[str, Route],
    *,
    dead: set[str],
    settling: bool,
) -> tuple[list[Route], list[str]]:
    """(routes to add or replace, prefixes whose route goes)."""
    put = [r for p, r in sorted(desired.items()) if installed.get(p) != r]
    remove = [p for p in sorted(installed) if p not in desired and (not settling or p in dead)]
    return put, remove
