"""Discovery: how a node finds candidate peers with no configuration.

Theory of operation. A `Discovery` runs three independent finders on the daemon's event loop
and reports each candidate peer once, as a `Sighting` (an address to dial, a port, how it was
found, and the node id when the finder knows it). It never dials and never decides trust: the
transport authenticates whoever answers.

- **mDNS** (zeroconf). The node registers ``<node id>._edgenode._udp.local.`` with a TXT record
  ``cluster=<cluster id> node=<node id> port=<port> v=1`` and its addresses (IPv6 link-local
  and global, IPv4) on the chosen interfaces, and browses the same type. A resolved service of
  our cluster becomes one sighting per address (link-local ones carry ``%<interface>``); a
  service of another cluster, or our own, is ignored. Our addresses are re-read every
  `DiscoveryConfig.address_check_s`; a change is re-announced, and a peer re-announcing new
  addresses is sighted again at them.
- **IPv6 neighbour discovery** (pyroute2). Every `DiscoveryConfig.nd_interval_s` (and once at
  start) an ICMPv6 echo request goes to ff02::1 on each interface; every host on the link
  answers, and resolving our address makes it solicit us, which fills the kernel's neighbour
  table. The table's usable entries (reachable, stale, delay, probe) of those interfaces are
  then read; a neighbour is sighted when first seen, again when it comes back after missing
  from a scan, and again every `nd_refresh_s` (`NeighbourBook`).
- **Seeds.** Operator-given ``host:port`` strings for sites joined over a WAN. Each is sighted
  at start and every `seed_interval_s` until the caller reports it connected
  (`seed_connected`); `seed_disconnected` resumes that after an outage (`SeedBook`).

The decisions (which neighbours and seeds are due, whether a TXT record is ours) are the pure
core `gossip._discovery`, with the time passed in, so tests step time by hand; this module
re-exports its public names. Network trouble is logged and retried at the next period; only
the caller's own mistakes (a bad seed, a bad config) raise `DiscoveryError`, before anything
starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from gossip._discovery import (
    DEFAULT_PORT,
    NODE_ID,
    SERVICE_TYPE,
    TXT_VERSION,
    DiscoveryConfig,
    DiscoveryError,
    NeighbourBook,
    PeerTxt,
    SeedBook,
    Sighting,
    Source,
    dialable,
    echo_request,
    format_endpoint,
    host_name,
    is_ipv4,
    is_ipv6,
    neighbour_host,
    parse_seed,
    read_txt,
    service_name,
    service_txt,
)
from gossip.netlink import AsyncIPRoute

__all__ = [
    "DEFAULT_PORT",
    "SERVICE_TYPE",
    "TXT_VERSION",
    "Discovery",
    "DiscoveryConfig",
    "DiscoveryError",
    "NeighbourBook",
    "PeerTxt",
    "SeedBook",
    "Sighting",
    "Source",
    "dialable",
    "echo_request",
    "format_endpoint",
    "host_name",
    "neighbour_host",
    "parse_seed",
    "read_txt",
    "service_name",
    "service_txt",
]

log = structlog.get_logger("gossip.discovery")

# Neighbour states worth dialling (linux/neighbour.h): REACHABLE, STALE, DELAY, PROBE.
_NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_IFA_F_TENTATIVE, _IFA_F_DADFAILED = 0x40, 0x08
_ND_SETTLE_S = 0.5
"""Seconds between soliciting ff02::1 and reading the neighbour table (bounded by the interval)."""


# -- the shell --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Address:
    ifindex: int
    address: str


class Discovery:
    """Finds candidate peers by mDNS, IPv6 neighbours and seeds; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: str,
        node_id: str,
        port: int,
        config: DiscoveryConfig,
        seeds: Sequence[str],
        on_sighting: Callable[[Sighting], None],
    ) -> None:
        if not cluster:
            raise DiscoveryError(
                "discovery cluster: expected a cluster id, got ''; nothing was started"
            )
        if not NODE_ID.match(node_id):
            raise DiscoveryError(
                f"discovery node_id: expected a DNS label (letters, digits, '-', at most 63), "
                f"got {node_id!r}; nothing was started"
            )
        if not 1 <= port <= 65535:
            raise DiscoveryError(
                f"discovery port: expected 1..65535, got {port!r}; nothing was started"
            )
        self.cluster, self.node_id, self.port, self.config = cluster, node_id, port, config
        self.on_sighting = on_sighting
        self.seeds = SeedBook(
            seeds, default_port=config.default_port, interval_s=config.seed_interval_s
        )
        self.neighbours = NeighbourBook(refresh_s=config.nd_refresh_s)
        self._log = log.bind(node=node_id)
        self._tasks: set[asyncio.Task[None]] = set()
        self._seed_wake = asyncio.Event()
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._mdns_state: tuple[tuple[int, ...], tuple[str, ...]] | None = None
        self._mdns_ifaces: dict[int, str] = {}
        self._mdns_sighted: dict[str, set[tuple[str, int]]] = {}
        self._ignored: set[str] = set()
        self._missing_ifaces: set[str] = set()
        self._started = False

    # -- commands --

    async def start(self) -> None:
        """Register and browse mDNS, start neighbour scans and seed sightings. Never raises for
        network trouble: what fails is logged and retried."""
        if self._started:
            return
        self._started = True
        if self.config.mdns:
            self._spawn(self._mdns_loop(), "discovery-mdns")
        if self.config.neighbor_discovery:
            self._spawn(self._nd_loop(), "discovery-nd")
        if self.seeds.next_due() is not None:
            self._spawn(self._seed_loop(), "discovery-seeds")

    async def close(self) -> None:
        """Stop everything; our mDNS service is withdrawn with goodbye packets."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_mdns()

    def seed_connected(self, seed: str) -> None:
        """Stop sighting a seed (its text, ``host:port`` or a `Sighting.endpoint`)."""
        if not self.seeds.mark(seed, connected=True, now=_now()):
            self._log.debug("seed_unknown", seed=seed)

    def seed_disconnected(self, seed: str) -> None:
        """Sight a seed again at once and every `seed_interval_s` until connected."""
        if self.seeds.mark(seed, connected=False, now=_now()):
            self._seed_wake.set()
        else:
            self._log.debug("seed_unknown", seed=seed)

    # -- helpers --

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, s: Sighting) -> None:
        self._log.debug("peer_sighted", host=s.host, port=s.port, source=s.source, peer=s.node_id)
        try:
            self.on_sighting(s)
        except Exception:
            self._log.exception("on_sighting_failed", host=s.host, source=s.source)

    async def _local(self) -> tuple[dict[int, str], list[_Address]]:
        """The chosen up interfaces (index: name) and their usable addresses."""
        async with AsyncIPRoute() as ipr:
            links = [link async for link in await ipr.get_links()]
            addrs = [a async for a in await ipr.get_addr()]
        chosen: dict[int, str] = {}
        for link in links:
            name, flags = link.get("ifname"), link["flags"]
            if not flags & _IFF_UP or flags & _IFF_LOOPBACK:
                continue
            if self.config.interfaces and name not in self.config.interfaces:
                continue
            if name.startswith(self.config.skip_prefixes):
                continue
            chosen[link["index"]] = name
        for name in set(self.config.interfaces) - set(chosen.values()) - self._missing_ifaces:
            self._log.warning("interface_not_up", interface=name)
            self._missing_ifaces.add(name)
        self._missing_ifaces &= set(self.config.interfaces) - set(chosen.values())
        out = []
        for a in addrs:
            flags = a.get("flags") or a["flags"]
            if a["index"] in chosen and not flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
                out.append(_Address(a["index"], a.get("local") or a.get("address")))
        return chosen, out

    # -- mDNS --

    async def _mdns_loop(self) -> None:
        while True:
            await self._refresh_mdns()
            await asyncio.sleep(self.config.address_check_s)

    async def _refresh_mdns(self) -> None:
        try:
            chosen, addrs = await self._local()
            state = (tuple(sorted(chosen)), tuple(sorted(a.address for a in addrs)))
            if state == self._mdns_state:
                return
            v4 = [a.address for a in addrs if is_ipv4(a.address)]
            v6 = [a.address for a in addrs if is_ipv6(a.address)]
            v6_links = sorted({a.ifindex for a in addrs if a.address in v6})
            interfaces: list[str | int] = [*v4, *v6_links]
            self._mdns_ifaces = {i: chosen[i] for i in v6_links}
            if not interfaces:
                if self._mdns_state is None:
                    self._log.warning("mdns_no_interfaces", interfaces=self.config.interfaces)
                await self._close_mdns()
                self._mdns_state = state
                return
            info = AsyncServiceInfo(
                SERVICE_TYPE,
                service_name(self.node_id),
                port=self.port,
                properties=service_txt(cluster=self.cluster, node_id=self.node_id, port=self.port),
                server=host_name(self.node_id),
                parsed_addresses=[*v4, *v6],
            )
            if self._azc is None:
                self._azc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.All)
                self._browser = AsyncServiceBrowser(
                    self._azc.zeroconf, SERVICE_TYPE, handlers=[self._on_service]
                )
                await self._azc.async_register_service(info)
                self._log.info("mdns_registered", name=info.name, addresses=[*v4, *v6])
            else:
                if state[0] != (self._mdns_state or ((), ()))[0]:
                    await self._azc.async_update_interfaces(interfaces)
                await self._azc.async_update_service(info)
                self._log.info("mdns_reannounced", name=info.name, addresses=[*v4, *v6])
            self._mdns_state = state
        except Exception as exc:  # zeroconf and netlink raise many kinds; retry next period
            self._log.warning("mdns_failed", error=repr(exc))
            await self._close_mdns()

    async def _close_mdns(self) -> None:
        azc, browser, self._azc, self._browser = self._azc, self._browser, None, None
        self._mdns_state = None
        self._mdns_sighted.clear()  # peers are sighted afresh if mDNS comes back
        try:
            if browser is not None:
                await browser.async_cancel()
            if azc is not None:
                await azc.async_close()  # sends goodbyes for our service
        except Exception as exc:
            self._log.warning("mdns_close_failed", error=repr(exc))

    def _on_service(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if name.lower() == service_name(self.node_id).lower():
            return
        if state_change is ServiceStateChange.Removed:
            self._mdns_sighted.pop(name, None)  # sighted again when it comes back
            return
        self._spawn(self._resolve(zeroconf, name), "discovery-resolve")

    async def _resolve(self, zc: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            if not await info.async_request(zc, self.config.resolve_timeout_s * 1000):
                self._log.info("mdns_unresolved", name=name)
                return
        except Exception as exc:
            self._log.info("mdns_resolve_failed", name=name, error=repr(exc))
            return
        txt = read_txt(info.properties)
        if isinstance(txt, str):
            self._ignore(name, "bad_txt", reason=txt)
            return
        if txt.cluster != self.cluster:
            self._ignore(name, "other_cluster", cluster=txt.cluster)
            return
        if txt.node_id == self.node_id:
            return
        port = info.port or txt.port
        seen = self._mdns_sighted.setdefault(name, set())
        for host in dialable(info.parsed_scoped_addresses(), self._mdns_ifaces):
            if (host, port) not in seen:
                seen.add((host, port))
                self._emit(Sighting(host, port, "mdns", txt.node_id))

    def _ignore(self, name: str, why: str, **fields: object) -> None:
        if name not in self._ignored:
            self._ignored.add(name)
            self._log.info("mdns_service_ignored", name=name, why=why, **fields)

    # -- neighbour discovery --

    async def _nd_loop(self) -> None:
        while True:
            await self._nd_scan()
            await asyncio.sleep(max(0.0, self.config.nd_interval_s - _ND_SETTLE_S))

    async def _nd_scan(self) -> None:
        try:
            chosen, addrs = await self._local()
            for index, name in chosen.items():
                _solicit_all_nodes(index, name, self._log)
            await asyncio.sleep(_ND_SETTLE_S)
            own = {a.address for a in addrs}
            async with AsyncIPRoute() as ipr:
                entries = [n async for n in await ipr.get_neighbours(family=socket.AF_INET6)]
            present = []
            for entry in entries:
                dst, index = entry.get("dst"), entry["ifindex"]
                if index not in chosen or not dst or not entry["state"] & _NUD_USABLE:
                    continue
                ip = ipaddress.IPv6Address(dst)
                if ip.is_multicast or ip.is_unspecified or dst in own:
                    continue
                present.append(neighbour_host(dst, chosen[index]))
        except Exception as exc:  # netlink trouble: retry next period
            self._log.warning("nd_scan_failed", error=repr(exc))
            return
        for host in self.neighbours.scan(present, now=_now()):
            self._emit(Sighting(host, self.config.default_port, "nd", None))

    # -- seeds --

    async def _seed_loop(self) -> None:
        while True:
            for text, host, port in self.seeds.due(now=_now()):
                await self._sight_seed(text, host, port)
            next_due = self.seeds.next_due()
            self._seed_wake.clear()
            timeout = None if next_due is None else max(0.0, next_due - _now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seed_wake.wait(), timeout)

    async def _sight_seed(self, text: str, host: str, port: int) -> None:
        if is_ipv4(host) or is_ipv6(host):
            self._emit(Sighting(host, port, "seed", None))
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            self._log.info("seed_unresolved", seed=text, error=str(exc))
            return
        found = sorted({(str(info[4][0]), port) for info in infos})
        self.seeds.resolved(text, found)
        for address, p in found:
            self._emit(Sighting(address, p, "seed", None))


def _solicit_all_nodes(ifindex: int, ifname: str, logger: Any) -> None:
    """Send one ICMPv6 echo request to ff02::1 on an interface (a ping socket if the kernel
    allows us one, else a raw socket); failures are logged."""
    errors = []
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            with socket.socket(socket.AF_INET6, kind, socket.IPPROTO_ICMPV6) as sock:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
                sock.sendto(echo_request(ifindex, 1), ("ff02::1", 0, 0, ifindex))
                return
        except OSError as exc:  # e.g. no ping socket for our group, no CAP_NET_RAW, link down
            errors.append(f"{kind.name}: {exc}")
    logger.warning("nd_solicit_failed", interface=ifname, errors=errors)


def _now() -> float:
    return time.monotonic()
