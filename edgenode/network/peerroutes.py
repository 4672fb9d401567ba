"""This node's own addresses, and its routes to other nodes' pods, with netlink (pyroute2).

Theory of operation. `local_addresses` and `link_locals` say what the node advertises in its
membership metadata: its unicast addresses (to be dialled) and the link-local addresses of its
LAN interfaces (the next hops other nodes route its pods' /64 via). Pod links (``edn…``) and
the pods' gateway addresses (fe80::1, 169.254.1.1) are never advertised.

`next_hop` finds where a peer's link-local address is: the neighbour table first (discovery
solicits ff02::1 on every LAN interface, so each peer is there, learned by neighbour discovery),
else the interface on which one of the peer's advertised addresses is on-link (a route without
a gateway). `sync` installs the routes `edgenode.network._routes` decides, each marked with
`PEER_ROUTE_PROTO`, and removes those of ours that are no longer wanted; nobody else's route
is touched.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from edgenode.network._addressing import GATEWAY_V4, GATEWAY_V6, LINK_PREFIX
from edgenode.network._routes import PeerNet, Route
from edgenode.network.podlinks import PEER_ROUTE_PROTO
from gossip.netlink import IPRoute, NetlinkError

log = structlog.get_logger("edgenode.network")

NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80
"""REACHABLE, STALE, DELAY, PROBE, PERMANENT (linux/neighbour.h)."""
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
MAX_LINK_LOCALS = 4


def _lan_links(ipr: Any) -> dict[int, str]:
    """Up, non-loopback interfaces that are not pod links: index -> name."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME") or ""
        flags = link["flags"]
        if flags & IFF_UP and not flags & IFF_LOOPBACK and not name.startswith(LINK_PREFIX):
            out[int(link["index"])] = name
    return out


def local_addresses() -> list[str]:
    """This node's unicast addresses worth advertising: global and unique-local IPv6 first,
    then IPv4; link-local ones are left out (they need the receiver's interface), and so are
    the pods' gateway addresses."""
    v6: list[str] = []
    v4: list[str] = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS")
            if not addr:
                continue
            if msg["family"] == socket.AF_INET6:
                if addr == "::1" or ipaddress.IPv6Address(addr).is_link_local:
                    continue
                v6.append(addr)
            elif msg["family"] == socket.AF_INET:
                ip = ipaddress.IPv4Address(addr)
                if not ip.is_loopback and not ip.is_link_local and addr != GATEWAY_V4:
                    v4.append(addr)
    return [*sorted(v6), *sorted(v4)]


def link_locals() -> list[str]:
    """The link-local addresses of this node's LAN interfaces (at most four)."""
    found: list[str] = []
    with IPRoute() as ipr:
        lan = _lan_links(ipr)
        for msg in ipr.get_addr(family=socket.AF_INET6):
            addr = msg.get_attr("IFA_ADDRESS")
            usable = msg["index"] in lan and addr and addr != GATEWAY_V6
            if usable and ipaddress.IPv6Address(addr).is_link_local:
                found.append(addr)
    return sorted(found)[:MAX_LINK_LOCALS]


def next_hop(ipr: Any, peer: PeerNet, lan: Mapping[int, str]) -> tuple[str, int] | None:
    """(link-local address, interface index) to reach `peer`'s pods by, or None."""
    wanted = {ipaddress.IPv6Address(a) for a in peer.link_local}
    for entry in ipr.get_neighbours(family=socket.AF_INET6):
        dst = entry.get_attr("NDA_DST")
        usable = entry["ifindex"] in lan and dst and entry["state"] & NUD_USABLE
        if usable and ipaddress.IPv6Address(dst) in wanted:
            return dst, int(entry["ifindex"])
    for address in peer.addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if ip.is_link_local or ip.is_loopback:
            continue
        try:
            [route] = ipr.route("get", dst=address)
        except (NetlinkError, ValueError):
            continue
        oif = route.get_attr("RTA_OIF")
        if oif in lan and route.get_attr("RTA_GATEWAY") is None:
            return peer.link_local[0], int(oif)
    return None


def installed(ipr: Any) -> dict[str, Route]:
    """Our routes to other nodes' /64s now in the kernel's main table."""
    out = {}
    for route in ipr.get_routes(family=socket.AF_INET6, table=254):
        dst, gateway = route.get_attr("RTA_DST"), route.get_attr("RTA_GATEWAY")
        if route["proto"] == PEER_ROUTE_PROTO and dst and gateway and route["dst_len"] == 64:
            prefix = f"{dst}/64"
            out[prefix] = Route(prefix, gateway, int(route.get_attr("RTA_OIF") or 0))
    return out


def resolve(peers: Mapping[str, PeerNet]) -> dict[str, Route]:
    """A route for each wanted prefix whose peer's next hop is found (prefix -> route)."""
    out = {}
    with IPRoute() as ipr:
        lan = _lan_links(ipr)
        for prefix, peer in sorted(peers.items()):
            hop = next_hop(ipr, peer, lan)
            if hop is None:
                log.info("peer_next_hop_unknown", peer=peer.node, prefix=prefix)
                continue
            out[prefix] = Route(prefix, hop[0], hop[1])
    return out


def current() -> dict[str, Route]:
    with IPRoute() as ipr:
        return installed(ipr)


def sync(put: Iterable[Route], remove: Iterable[str]) -> None:
    """Install (or replace) `put` and delete our routes to `remove`."""
    with IPRoute() as ipr:
        for route in put:
            ipr.route(
                "replace",
                dst=route.prefix,
                gateway=route.gateway,
                oif=route.ifindex,
                proto=PEER_ROUTE_PROTO,
            )
            log.info("peer_route_set", prefix=route.prefix, via=route.gateway, oif=route.ifindex)
        for prefix in remove:
            try:
                ipr.route("del", dst=prefix, proto=PEER_ROUTE_PROTO)
            except NetlinkError as exc:
                if exc.code not in (errno.ESRCH, errno.ENOENT):
                    raise
            log.info("peer_route_withdrawn", prefix=prefix)
