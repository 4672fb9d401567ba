"""The pure core of discovery: which seeds and neighbours are due, and what mDNS records say.

Theory of operation. Finding peers is three finders (mDNS, IPv6 neighbours, seeds) run by the
shell, `gossip.discovery`; every decision they need is here, with the time passed in, so tests
step time by hand and nothing here touches a socket, a clock or the network.

- `SeedBook` keeps the operator's seeds (parsed once by `parse_seed`, duplicates dropped): each
  is due at start and every `interval_s` until the caller marks it connected; one marked
  disconnected is due at once.
- `NeighbourBook` reads successive scans of the neighbour table: a host is sighted when first
  seen, again when it comes back after missing from a scan, and again every `refresh_s`.
- `service_name`, `host_name` and `service_txt` make our mDNS records; `read_txt` reads a
  peer's TXT record and `dialable` its addresses. A peer's bad record is a value saying why,
  never an exception; only the caller's own mistakes (a bad seed, a bad config) raise
  `DiscoveryError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

SERVICE_TYPE = "_edgenode._udp.local."
TXT_VERSION = "1"
DEFAULT_PORT = 7946
Source = Literal["mdns", "nd", "seed"]

_SEED_FORMS = "'host', 'host:port', '[ipv6]:port' or '[fe80::1%eth0]:port' (port 1..65535)"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")
NODE_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
"""A node id as mDNS carries it: a DNS label (letters, digits, '-', at most 63)."""
_ECHO_REQUEST = 128


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
    skip_prefixes: tuple[str, ...] = ()
    """Interfaces whose names start with one of these are never used (the node's pod links)."""
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
        if not is_ipv6(host):
            raise bad(f"{host!r} in brackets is not an IPv6 address")
    elif s.count(":") >= 2:
        host = s  # a bare IPv6 address: no port can be told apart from it
        if not is_ipv6(host):
            raise bad(f"{host!r} is not an IPv6 address (write '[ipv6]:port' to give a port)")
    else:
        host, _, port_text = s.partition(":") if ":" in s else (s, "", None)
        if not is_ipv4(host) and not _HOSTNAME.match(host):
            raise bad(f"host {host!r} is neither an IPv4 address nor a DNS name")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad(f"port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 address (without a ``%scope``)."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def is_ipv4(host: str) -> bool:
    """Whether `host` is an IPv4 address."""
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
    if not node or not NODE_ID.match(node):
        return f"TXT node {node!r} is not a node id"
    if not port or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"TXT port {port!r} is not in 1..65535"
    return PeerTxt(cluster, node, int(port))


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
        if not is_ipv6(base) or not ipaddress.IPv6Address(base).is_link_local:
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
