"""A pod's link to its node, made with netlink (pyroute2): a veth, addresses and routes.

Theory of operation. The node side of the veth (`link_name`) stays in the node's network
namespace (the daemon's); its peer is made directly in the pod's namespace as ``eth0``. The
node side answers at fe80::1 and 169.254.1.1 (the same on every pod link) and routes the
pod's /128 and /32 to it; inside the pod, ``eth0`` has those two addresses and default routes
via the node side. Everything is done again idempotently by `attach` (after a reboot, or to
renumber a pod when its node's /64 moved: addresses the pod should no longer have go), and
`detach` deletes the veth, which takes its routes along.

Work in the pod's namespace is done by a short-lived thread that joins it
(`sandbox.netns.submit_in`): a netlink socket made there belongs to that namespace, and no
process is forked. Kernel settings are written to ``/proc/sys`` (per namespace, read by
whichever thread opens the file). Routes this module adds carry `ROUTE_PROTO`, so the node can
tell its own routes from everybody else's.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from edgenode.network._addressing import GATEWAY_V4, GATEWAY_V6, POD_IPV4, ipv4_offset
from gossip.netlink import IPRoute, NetlinkError
from sandbox import netns

log = structlog.get_logger("edgenode.network")

ROUTE_PROTO = 77
"""The routing protocol number on pod routes (``ip route`` shows ``proto 77``)."""
PEER_ROUTE_PROTO = 78
"""The routing protocol number on routes to other nodes' pod prefixes."""
IFA_F_NODAD = 0x02
POD_IF = "eth0"
T = TypeVar("T")


class PodLinkError(RuntimeError):
    """A pod's link could not be made; the message says what is left."""


class IPv4TakenError(PodLinkError):
    """The pod's IPv4 address is routed to another link (a pod of another node sharing this
    network namespace)."""


@dataclass(frozen=True, slots=True)
class PodLink:
    """What a pod's link should be: its node side's name and the pod's two addresses."""

    pod: str
    link: str
    ipv6: str
    ipv4: str


def _ignore(*codes: int) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except NetlinkError as exc:
            if exc.code not in codes:
                raise

    return guard()


def write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def enable_forwarding() -> None:
    """Make this namespace a router for its pods: IPv6 and IPv4 forwarding on. Interfaces that
    take router advertisements keep taking them (accept_ra 1 becomes 2, which a router needs)."""
    conf = "/proc/sys/net/ipv6/conf"
    if read_sysctl(f"{conf}/all/forwarding") != "1":
        for iface in sorted(os.listdir(conf)):
            if iface != "all" and read_sysctl(f"{conf}/{iface}/accept_ra") == "1":
                write_sysctl(f"{conf}/{iface}/accept_ra", "2")
        write_sysctl(f"{conf}/all/forwarding", "1")
    if read_sysctl("/proc/sys/net/ipv4/ip_forward") != "1":
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _in_pod(ns_path: str, fn: Callable[[], T]) -> T:
    return netns.submit_in(ns_path, fn).result(timeout=30)


def _pod_has_eth0(ns_path: str) -> bool:
    def look() -> bool:
        with IPRoute() as ipr:
            return _index(ipr, POD_IF) is not None

    return _in_pod(ns_path, look)


def attach(link: PodLink, ns_path: str) -> None:
    """Make (or repair) `link` between this namespace and the pod's at `ns_path`. A new link
    costs a veth and about fifteen netlink requests (10-15 ms)."""
    with IPRoute() as ipr:
        index = _index(ipr, link.link)
        fresh = index is None
        if index is not None and not _pod_has_eth0(ns_path):
            # A link left from an earlier namespace of the pod (one a process kept alive).
            with _ignore(errno.ENODEV):
                ipr.link("del", index=index)
            index, fresh = None, True
        if index is None:
            _in_pod(ns_path, _prepare_pod_namespace)
            try:
                ipr.link(
                    "add",
                    ifname=link.link,
                    kind="veth",
                    peer={"ifname": POD_IF, "net_ns_fd": ns_path},
                )
            except NetlinkError as exc:
                raise PodLinkError(
                    f"pod {link.pod}: veth {link.link} could not be made ({exc}); nothing was left"
                ) from None
            index = _index(ipr, link.link)
            if index is None:
                raise PodLinkError(f"pod {link.pod}: veth {link.link} vanished once made")
        _node_side(ipr, index, link, fresh=fresh)
    _in_pod(ns_path, lambda: _pod_side(link, fresh=fresh))


def _prepare_pod_namespace() -> None:
    # Addresses on the pod's link are usable at once: nothing else can claim them there.
    for key in ("default", "all"):
        write_sysctl(f"/proc/sys/net/ipv6/conf/{key}/accept_dad", "0")
        write_sysctl(f"/proc/sys/net/ipv6/conf/{key}/accept_ra", "0")


def _node_side(ipr: Any, index: int, link: PodLink, *, fresh: bool) -> None:
    write_sysctl(f"/proc/sys/net/ipv6/conf/{link.link}/accept_dad", "0")
    ipr.link("set", index=index, state="up")
    with _ignore(errno.EEXIST):
        ipr.addr("add", index=index, address=GATEWAY_V6, prefixlen=64, flags=IFA_F_NODAD)
    with _ignore(errno.EEXIST):
        ipr.addr("add", index=index, address=GATEWAY_V4, prefixlen=32)
    ipr.route("replace", dst=f"{link.ipv6}/128", oif=index, proto=ROUTE_PROTO)
    try:
        ipr.route("add", dst=f"{link.ipv4}/32", oif=index, proto=ROUTE_PROTO, scope=253)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
        held = _ipv4_route_oif(ipr, link.ipv4)
        if held != index:
            raise IPv4TakenError(
                f"pod {link.pod}: IPv4 {link.ipv4} is routed to another link (index {held})"
            ) from None
    if fresh:
        return
    # Routes of earlier addresses of this pod (its node's /64 moved) go.
    for route in ipr.get_routes(family=socket.AF_INET6, oif=index):
        dst = route.get_attr("RTA_DST")
        if route["proto"] == ROUTE_PROTO and dst and dst != link.ipv6:
            with _ignore(errno.ESRCH, errno.ENOENT):
                ipr.route("del", dst=f"{dst}/128", oif=index)


def _ipv4_route_oif(ipr: Any, address: str) -> int | None:
    for route in ipr.get_routes(family=socket.AF_INET, dst=address, table=254):
        if route.get_attr("RTA_DST") == address and route["dst_len"] == 32:
            oif = route.get_attr("RTA_OIF")
            return int(oif) if oif is not None else None
    return None


def _pod_side(link: PodLink, *, fresh: bool) -> None:
    with IPRoute() as ipr:
        index = _index(ipr, POD_IF)
        if index is None:
            raise PodLinkError(f"pod {link.pod}: its namespace has no {POD_IF}")
        with _ignore(errno.EEXIST):
            ipr.addr("add", index=index, address=link.ipv6, prefixlen=128, flags=IFA_F_NODAD)
        with _ignore(errno.EEXIST):
            ipr.addr("add", index=index, address=link.ipv4, prefixlen=32)
        for addr in () if fresh else ipr.get_addr(index=index):
            address = addr.get_attr("IFA_ADDRESS")
            if address in (link.ipv6, link.ipv4) or not address:
                continue
            if addr["family"] == socket.AF_INET or not ipaddress.IPv6Address(address).is_link_local:
                with _ignore(errno.EADDRNOTAVAIL):
                    ipr.addr("del", index=index, address=address, prefixlen=addr["prefixlen"])
        ipr.link("set", index=index, state="up")
        ipr.route("replace", dst=f"{GATEWAY_V4}/32", oif=index, scope=253)
        ipr.route("replace", dst="0.0.0.0/0", gateway=GATEWAY_V4, oif=index)
        ipr.route("replace", dst="::/0", gateway=GATEWAY_V6, oif=index)


def detach(link_name: str) -> None:
    """Delete the node side of a pod's veth (and so the pod's side and their routes)."""
    with IPRoute() as ipr:
        index = _index(ipr, link_name)
        if index is not None:
            with _ignore(errno.ENODEV):
                ipr.link("del", index=index)


def foreign_ipv4(own_links: set[str]) -> set[int]:
    """Offsets in `POD_IPV4` that routes of this namespace give to links not in `own_links`
    (pods of another node sharing this namespace)."""
    taken: set[int] = set()
    with IPRoute() as ipr:
        names = {int(link["index"]): link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if route["dst_len"] != 32 or not dst or ipaddress.IPv4Address(dst) not in POD_IPV4:
                continue
            if names.get(int(route.get_attr("RTA_OIF") or 0)) not in own_links:
                offset = ipv4_offset(dst)
                if offset is not None:
                    taken.add(offset)
    return taken
