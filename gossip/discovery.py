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

The decisions (which neighbours and seeds are due, whether a TXT record is ours) are plain
classes and functions with the time passed in, so tests step time by hand. Network trouble is
logged and retried at the next period; only the caller's own mistakes (a bad seed, a bad
config) raise `DiscoveryError`, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from pyroute2 import AsyncIPRoute
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = structlog.get_logger("gossip.discovery")

SERVICE_TYPE = "_edgenode._udp.local."
TXT_VERSION = "1"
DEFAULT_PORT = 7946
Source = Literal["mdns", "nd", "seed"]

_SEED_FORMS = "'host', 'host:port', '[ipv6]:port' or '[fe80::1%eth0]:port' (port 1..65535)"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")
_NODE_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Neighbour states worth dialling (linux/neighbour.h): REACHABLE, STALE, DELAY, PROBE.
_NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_IFA_F_TENTATIVE, _IFA_F_DADFAILED = 0x40, 0x08
_ECHO_REQUEST = 128
_ND_SETTLE_S = 0.5
"""Seconds between soliciting ff02::1 and reading the neighbour table (bounded by the interval)."""


class DiscoveryError(ValueError):
    """The caller's mistake (a bad seed or config); nothing was started or changed."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """A candidate peer: an address to dial and how it was found."""

    host: str
    """An IPv6 address (link-local ones as ``fe80::x%<interface>``) or an IPv4 address."""
    port: int
    source: Source
    node_id: str | None
    """The node's id when mDNS said it; None from neighbours and seeds (the dialler learns it)."""

    @property
    def endpoint(self) -> str:
        """``host:port``, with IPv6 hosts in brackets: what `parse_seed` reads back."""
        return format_endpoint(self.host, self.port)


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    mdns: bool = True
    """Register and browse `SERVICE_TYPE` on the chosen interfaces."""
    neighbor_discovery: bool = True
    """Solicit ff02::1 and sight the IPv6 neighbours of the chosen interfaces."""
    interfaces: tuple[str, ...] = ()
    """Interface names to use; () = every up interface but loopback (re-read as they change)."""
    nd_interval_s: float = 10.0
    """Seconds, 1..3600, between neighbour scans: shorter finds new neighbours sooner at the cost
    of one multicast echo (and the answers of every host on the link) per interface per scan."""
    nd_refresh_s: float = 300.0
    """Seconds, >= nd_interval_s: an unchanged neighbour is sighted again after this long."""
    seed_interval_s: float = 30.0
    """Seconds, 1..3600, between sightings of a seed not yet reported connected: how soon a WAN
    site is retried after an outage."""
    address_check_s: float = 10.0
    """Seconds, 1..3600, between re-reads of our interfaces and addresses for mDNS; a change is
    re-announced."""
    resolve_timeout_s: float = 3.0
    """Seconds, 0.1..60, to wait for a browsed mDNS service's SRV, TXT and address records."""
    default_port: int = DEFAULT_PORT
    """Port, 1..65535, given to neighbours and to seeds written without one."""

    def __post_init__(self) -> None:
        for name, low, high in (
            ("nd_interval_s", 1.0, 3600.0),
            ("seed_interval_s", 1.0, 3600.0),
            ("address_check_s", 1.0, 3600.0),
            ("resolve_timeout_s", 0.1, 60.0),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                _config_error(name, f"{low:g}..{high:g} seconds", value)
        if self.nd_refresh_s < self.nd_interval_s:
            _config_error(
                "nd_refresh_s", f">= nd_interval_s ({self.nd_interval_s:g})", self.nd_refresh_s
            )
        if not 1 <= self.default_port <= 65535:
            _config_error("default_port", "1..65535", self.default_port)


def _config_error(name: str, expected: str, actual: object) -> None:
    raise DiscoveryError(
        f"discovery config {name}: expected {expected}, got {actual!r}; nothing was started"
    )


# -- seeds ------------------------------------------------------------------------------------


def parse_seed(text: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` from a seed: "h:p", "[v6]:p", "[fe80::1%eth0]:p", "h" or a bare IPv6.

    Raises `DiscoveryError` naming the seed, what is wrong and the accepted forms.
    """

    def bad(problem: str) -> DiscoveryError:
        return DiscoveryError(
            f"seed {text!r}: {problem}; expected {_SEED_FORMS}; the seed was not added"
        )

    s = text.strip()
    port_text: str | None = None
    if not s:
        raise bad("empty")
    if s.startswith("["):
        close = s.find("]")
        if close < 0:
            raise bad("'[' without a closing ']'")
        host, rest = s[1:close], s[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise bad(f"expected ':port' after ']', got {rest!r}")
            port_text = rest[1:]
        if not _is_ipv6(host):
            raise bad(f"{host!r} in brackets is not an IPv6 address")
    elif s.count(":") >= 2:
        host = s  # a bare IPv6 address: no port can be told apart from it
        if not _is_ipv6(host):
            raise bad(f"{host!r} is not an IPv6 address (write '[ipv6]:port' to give a port)")
    else:
        host, _, port_text = s.partition(":") if ":" in s else (s, "", None)
        if not _is_ipv4(host) and not _HOSTNAME.match(host):
            raise bad(f"host {host!r} is neither an IPv4 address nor a DNS name")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad(f"port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class _Seed:
    text: str
    host: str
    port: int
    connected: bool = False
    due_at: float = 0.0
    resolved: set[tuple[str, int]] = field(default_factory=set)


class SeedBook:
    """Which seeds are due for another sighting: at start, then every interval until connected."""

    def __init__(self, seeds: Sequence[str], *, default_port: int, interval_s: float) -> None:
        self.interval_s = interval_s
        self._seeds: list[_Seed] = []
        for text in seeds:
            host, port = parse_seed(text, default_port)
            if not any((s.host, s.port) == (host, port) for s in self._seeds):
                self._seeds.append(_Seed(text, host, port))
        self.default_port = default_port

    def due(self, *, now: float) -> list[tuple[str, str, int]]:
        """``(seed text, host, port)`` of the unconnected seeds whose time has come; each is
        then not due again for `interval_s`."""
        out = []
        for seed in self._seeds:
            if not seed.connected and seed.due_at <= now:
                seed.due_at = now + self.interval_s
                out.append((seed.text, seed.host, seed.port))
        return out

    def next_due(self) -> float | None:
        """When the next unconnected seed is due (None: every seed is connected)."""
        times = [s.due_at for s in self._seeds if not s.connected]
        return min(times) if times else None

    def resolved(self, text: str, addresses: Iterable[tuple[str, int]]) -> None:
        """Remember the addresses a seed's name resolved to, so they can be reported back."""
        for seed in self._seeds:
            if seed.text == text:
                seed.resolved.update(addresses)

    def mark(self, endpoint: str, *, connected: bool, now: float) -> bool:
        """Mark the seed named by its text, its ``host:port`` or an address it resolved to.

        A seed marked disconnected is due at once. False if no seed matches (nothing changed).
        """
        found = False
        for seed in self._seeds:
            if self._matches(seed, endpoint):
                found = True
                if seed.connected and not connected:
                    seed.due_at = now
                seed.connected = connected
        return found

    def _matches(self, seed: _Seed, endpoint: str) -> bool:
        if endpoint.strip() == seed.text.strip():
            return True
        candidates = []
        with contextlib.suppress(DiscoveryError):
            candidates.append(parse_seed(endpoint, self.default_port))
        host, sep, port = endpoint.rpartition(":")  # "fe80::1%eth0:7946", as some callers write
        if sep and port.isdigit():
            candidates.append((host.strip("[]"), int(port)))
        targets = {(seed.host, seed.port), *seed.resolved}
        return any(c in targets for c in candidates)


# -- neighbours -------------------------------------------------------------------------------


class NeighbourBook:
    """Which neighbours of a scan to sight: new ones, ones back after missing from a scan, and
    unchanged ones last sighted `refresh_s` ago."""

    def __init__(self, *, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._sighted: dict[str, float] = {}

    def scan(self, present: Iterable[str], *, now: float) -> list[str]:
        """The hosts of this scan to sight now, in the order given (duplicates once)."""
        current: dict[str, float] = {}
        out = []
        for host in present:
            if host in current:
                continue
            last = self._sighted.get(host)
            if last is None or now - last >= self.refresh_s:
                out.append(host)
                last = now
            current[host] = last
        self._sighted = current  # a neighbour missing from this scan is new when it returns
        return out


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMPv6 echo request (the kernel fills the checksum of ICMPv6 sockets)."""
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + b"edgenode"


def neighbour_host(address: str, ifname: str) -> str:
    """How a neighbour is dialled: link-local addresses carry their interface."""
    return f"{address}%{ifname}" if ipaddress.IPv6Address(address).is_link_local else address


# -- mDNS records -----------------------------------------------------------------------------


def service_name(node_id: str) -> str:
    return f"{node_id}.{SERVICE_TYPE}"


def host_name(node_id: str) -> str:
    """Our mDNS host name: not the bare node id, which may be the machine's own host name."""
    label = f"{node_id}-edgenode"
    if len(label) > 63:
        label = f"{node_id[:54]}-{hashlib.sha256(node_id.encode()).hexdigest()[:8]}"
    return f"{label}.local."


def service_txt(*, cluster: str, node_id: str, port: int) -> dict[str, str]:
    return {"cluster": cluster, "node": node_id, "port": str(port), "v": TXT_VERSION}


@dataclass(frozen=True, slots=True)
class PeerTxt:
    cluster: str
    node_id: str
    port: int


def read_txt(properties: Mapping[bytes, bytes | None]) -> PeerTxt | str:
    """A browsed service's TXT record, or why it is unusable (a peer's fault: never raises)."""

    def text(key: bytes) -> str | None:
        value = properties.get(key)
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else None

    cluster, node, port = text(b"cluster"), text(b"node"), text(b"port")
    if not cluster:
        return "no cluster in TXT"
    if not node or not _NODE_ID.match(node):
        return f"TXT node {node!r} is not a node id"
    if not port or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"TXT port {port!r} is not in 1..65535"
    return PeerTxt(cluster, node, int(port))


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
        if not _NODE_ID.match(node_id):
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
            v4 = [a.address for a in addrs if _is_ipv4(a.address)]
            v6 = [a.address for a in addrs if _is_ipv6(a.address)]
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
        if _is_ipv4(host) or _is_ipv6(host):
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


def dialable(addresses: Iterable[str], interfaces: Mapping[int, str]) -> list[str]:
    """The addresses of a resolved service that can be dialled, link-local ones scoped by
    interface name (``fe80::1%3`` -> ``fe80::1%eth0``).

    A link-local address heard without its interface (over IPv4) is kept only if no scoped copy
    was heard and mDNS runs on a single interface, which is then its scope.
    """
    out: list[str] = []
    unscoped: list[str] = []
    for address in addresses:
        base, sep, scope = address.partition("%")
        if not _is_ipv6(base) or not ipaddress.IPv6Address(base).is_link_local:
            out.append(address)
        elif not sep:
            unscoped.append(base)
        else:
            name = interfaces.get(int(scope)) if scope.isdigit() else scope
            out.append(f"{base}%{name or scope}")
    for base in unscoped:
        if len(interfaces) == 1 and not any(a.startswith(f"{base}%") for a in out):
            out.append(f"{base}%{next(iter(interfaces.values()))}")
    return list(dict.fromkeys(out))


def _now() -> float:
    return time.monotonic()
