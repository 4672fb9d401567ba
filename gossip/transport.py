"""The QUIC transport between nodes: mutually authenticated, framed, bounded, one connection a peer.

Theory of operation. Every node listens on one UDP port (QUIC, ALPN ``edgenode/1``) and dials
peers from an ephemeral port per connection. Its TLS certificate is self-signed for its own
Ed25519 node key, made with the `Transport`. aioquic has no public API for a server to check a
client's certificate, and no chain exists to verify anyway, so trust comes from an application
handshake on the connection's one stream (`gossip._frames`): both sides present credentials
signed by the cluster's trust root and sign fresh nonces bound to the server's TLS certificate.
The client reads that certificate through `peer_certificate` and requires its key to be the
server's credential's key. Each connection is a `gossip.quicconn.PeerConnection`; this module
owns them all and re-exports that module's public names.

A side that refuses the other logs ``peer_refused`` (address, claimed subject, reason) and
closes with `Close.REFUSED` and a short reason; the refused side logs ``refused_by_peer``.
Nothing but handshake frames flows before the server's ACCEPTED: no frame or datagram is
delivered, or sent, to an unauthenticated peer. Handshakes have a deadline, at most
`TransportConfig.max_pending_handshakes` inbound ones run at once, and an Initial that carries
no TLS ClientHello is dropped at once, so garbage and floods cost little and end quickly. Every
datagram at the listening port that opens or reaches no connection is a refusal, counted by
kind (`TransportStats.datagrams_refused`) and logged as ``datagrams_refused`` with counts per
address and kind, at most once per `TransportConfig.log_interval_s`.

After authentication, `send` writes DATA frames on the stream (reliable, in order) or QUIC
DATAGRAM frames (unreliable). Per peer, bytes queued before the connection is up plus bytes
handed to QUIC and not yet acknowledged are capped by `max_queue_bytes`; past it `send`
returns False (backpressure: the caller's protocol copes with loss). If both nodes dial each
other, both keep the connection dialled by the lower node id; the other is drained (each side
ends its stream after its last frame, and it closes once both ends are received and its data
acknowledged), so no queued frame is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import structlog
from aioquic._buffer import Buffer  # what aioquic.buffer re-exports (no __all__ there)
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gossip import _frames as fr
from gossip._credentials import Credential, CredentialError
from gossip._membership_wire import NodeId
from gossip.identity import IdentityError, cluster_dir, load_cluster, public_bytes
from gossip.quicconn import (
    AioquicInternalsError,
    PeerConnection,
    TransportError,
    peer_certificate,
    send_backlog,
)

__all__ = [
    "AioquicInternalsError",
    "NodeIdentity",
    "PeerConnection",
    "PeerDown",
    "PeerInfo",
    "PeerUp",
    "Transport",
    "TransportConfig",
    "TransportError",
    "TransportStats",
    "peer_certificate",
    "send_backlog",
]

log = structlog.get_logger("gossip.transport")

SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
"""Linux's socket options for buffers past net.core.[rw]mem_max (the socket module lacks them)."""

QUIC_VERSIONS = frozenset(int(v) for v in QuicProtocolVersion if v != 0)
MAX_TALLY_KEYS = 1024
"""Distinct (address, kind) counts of refused datagrams kept between two logs; past it, the
rest are counted under the address ``*`` (a flood from spoofed addresses stays bounded)."""


# -- Configuration, identity, events ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransportConfig:
    handshake_timeout_s: float = 5.0
    """Seconds from a connection's first packet to ACCEPTED (0.1-60). Shorter frees slots held
    by silent peers sooner; too short refuses peers on slow links."""
    connect_timeout_s: float = 5.0
    """Seconds `dial` waits for an authenticated connection (0.1-60)."""
    idle_timeout_s: float = 60.0
    """Seconds without any packet after which QUIC closes a connection (1-600)."""
    max_frame_bytes: int = 1 << 20
    """Largest reliable frame (kind, channel, payload), bytes (64 B-64 MiB). A peer sending a
    longer one has its connection closed; `send` of a longer one returns False."""
    max_datagram_bytes: int = 1100
    """Largest unreliable message (channel and payload), bytes (64-1150: one QUIC packet)."""
    max_queue_bytes: int = 4 << 20
    """Per peer: bytes queued and unacknowledged above which `send` returns False (>= the
    largest frame). Larger rides out longer stalls; smaller bounds memory per peer."""
    max_datagram_backlog: int = 64
    """Per connection: datagrams waiting for congestion window (1-10000); past it `send` of a
    datagram returns False, so stale unreliable messages are dropped rather than queued."""
    max_pending_handshakes: int = 64
    """Inbound connections allowed in the handshake at once (1-10000); more are refused."""
    log_interval_s: float = 10.0
    """Identical refusal logs (event, address, kind) are emitted at most once per this."""
    socket_buffer_bytes: int = 4 << 20
    """Kernel receive and send buffer of each UDP socket, bytes (64 KiB-256 MiB), taken past
    ``net.core.rmem_max`` where the process may (CAP_NET_ADMIN). A burst larger than the
    buffer arrives while the loop is busy (applying a catch-up chunk) is dropped by the
    kernel, and QUIC's recovery from it stalls the stream for a second or more."""

    def __post_init__(self) -> None:
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(
                    f"TransportConfig.{name}: expected {low} to {high}, got {value}; "
                    "nothing was started"
                )
        if self.max_queue_bytes < self.max_frame_bytes:
            raise ValueError(
                f"TransportConfig.max_queue_bytes: expected at least max_frame_bytes "
                f"({self.max_frame_bytes}), got {self.max_queue_bytes}; nothing was started"
            )


_BOUNDS: dict[str, tuple[float, float]] = {
    "handshake_timeout_s": (0.1, 60),
    "connect_timeout_s": (0.1, 60),
    "idle_timeout_s": (1, 600),
    "max_frame_bytes": (64, 64 << 20),
    "max_datagram_bytes": (64, 1150),
    "socket_buffer_bytes": (64 << 10, 256 << 20),
    "max_datagram_backlog": (1, 10_000),
    "max_pending_handshakes": (1, 10_000),
    "log_interval_s": (0, 3600),
}


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    node_id: NodeId
    key: Ed25519PrivateKey
    credential: Credential
    root_public: bytes

    @classmethod
    def load(cls, state_dir: Path) -> NodeIdentity:
        """This node's identity: ``node.key``, ``cluster/cluster.json``, ``cluster/node.cred``."""
        try:
            key = Ed25519PrivateKey.from_private_bytes((state_dir / "node.key").read_bytes())
        except (OSError, ValueError) as exc:
            raise IdentityError(
                f"{state_dir / 'node.key'}: no Ed25519 private key ({exc})"
            ) from None
        cluster = load_cluster(state_dir)
        path = cluster_dir(state_dir) / "node.cred"
        try:
            cred = Credential.decode(path.read_bytes())
        except FileNotFoundError:
            raise IdentityError(f"{path} does not exist: this node has not joined") from None
        except CredentialError as exc:
            raise IdentityError(f"{path}: {exc}") from None
        if cred.public_key != public_bytes(key):
            raise IdentityError(
                f"{path} is for key {cred.public_key.hex()[:16]}..., node.key is "
                f"{public_bytes(key).hex()[:16]}...: the credential is not this node's"
            )
        return cls(NodeId(cred.subject), key, cred, cluster.root_public)


@dataclass(frozen=True, slots=True)
class PeerUp:
    node: NodeId
    address: tuple[str, int]
    inbound: bool


@dataclass(frozen=True, slots=True)
class PeerDown:
    node: NodeId
    reason: str


@dataclass(frozen=True, slots=True)
class PeerInfo:
    address: tuple[str, int]
    """Where the connection's other end is (for an inbound one: its ephemeral port)."""
    since: float
    credential: Credential
    inbound: bool


@dataclass
class TransportStats:
    connections: int = 0
    """Connections authenticated since start (both directions)."""
    refused: int = 0
    dropped: int = 0
    """Messages `send` refused or lost (queue full, unknown address, too big, dial failed),
    and datagrams dropped on receipt (before authentication, malformed, too big)."""
    frames_in: dict[str, int] = field(default_factory=dict)
    frames_out: dict[str, int] = field(default_factory=dict)
    bytes_in: dict[str, int] = field(default_factory=dict)
    bytes_out: dict[str, int] = field(default_factory=dict)
    datagrams_in: dict[str, int] = field(default_factory=dict)
    datagrams_out: dict[str, int] = field(default_factory=dict)
    datagrams_refused: dict[str, int] = field(default_factory=dict)
    """UDP datagrams at the listening port that opened or reached no connection, by kind:
    ``not-quic``, ``unsupported-version``, ``short-initial``, ``no-connection`` and
    ``no-client-hello`` (an Initial that does not decrypt to a TLS ClientHello)."""


def _count(table: dict[str, int], key: str, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


@dataclass
class _Peer:
    dial_to: tuple[str, int] | None = None
    active: PeerConnection | None = None
    pending: deque[tuple[bool, bytes, str, int]] = field(default_factory=deque)
    pending_bytes: int = 0
    dialling: asyncio.Task[None] | None = None
    gone_since: float | None = None
    """When the caller held the peer gone (`expect_restart`), if it has not connected since."""


class _Server(QuicServer):
    """aioquic's server, with any exception from a datagram logged instead of escaping, and
    every datagram it drops without a connection to hand it to counted as a refusal."""

    def __init__(self, *, owner: Transport, **kw: Any) -> None:
        super().__init__(**kw)
        self.owner = owner

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        try:
            self.owner._delivered = False
            super().datagram_received(data, addr)
            if not self.owner._delivered:
                self.owner._refused_datagram(addr, _why_dropped(cast(bytes, data)))
        except Exception:
            log.exception("transport_bug", address=str(addr[:2]))


def _why_dropped(data: bytes) -> str:
    """Why aioquic's server dropped a datagram no connection took (the refusal's kind)."""
    try:
        header = pull_quic_header(Buffer(data=data), host_cid_length=8)
    except ValueError:
        return "not-quic"
    if header.version is not None and header.version not in QUIC_VERSIONS:
        return "unsupported-version"
    if header.packet_type == QuicPacketType.INITIAL:
        return "short-initial"  # under 1200 bytes: no client may open a connection with it
    return "no-connection"


def _certificate(key: Ed25519PrivateKey, node: str, now: float) -> x509.Certificate:
    """A self-signed certificate for this node's key: TLS needs one; trust comes from elsewhere."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)])
    start = datetime.datetime.fromtimestamp(now - 3600, tz=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, None)
    )


class Transport:
    """The node's QUIC endpoint: listens, dials, authenticates, and moves messages.

    `on_message(channel, sender, payload)` is called for every frame and datagram from an
    authenticated peer; `on_peer` with `PeerUp` / `PeerDown` as peers come and go. `clock`
    (Unix seconds) decides credential validity. Exceptions from the callbacks are logged."""

    def __init__(
        self,
        identity: NodeIdentity,
        config: TransportConfig,
        *,
        on_message: Callable[[str, NodeId, bytes], None],
        on_peer: Callable[[PeerUp | PeerDown], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.config = config
        self.clock = clock
        self.stats = TransportStats()
        self._on_message = on_message
        self._on_peer = on_peer
        self._limit = fr.RateLimit(config.log_interval_s)
        self._peers: dict[NodeId, _Peer] = {}
        self._conns: set[PeerConnection] = set()
        self._pending = 0
        self._server: QuicServer | None = None
        self._listening: socket.socket | None = None
        self._delivered = False  # set by a connection that takes the datagram in hand
        self._tally: dict[tuple[str, str], int] = {}
        self._tally_timer: asyncio.TimerHandle | None = None
        self._cert = _certificate(identity.key, identity.node_id, clock())
        self._cert_der = self._cert.public_bytes(Encoding.DER)

    def _configuration(self, *, client: bool) -> QuicConfiguration:
        config = QuicConfiguration(
            is_client=client,
            alpn_protocols=[fr.ALPN],
            idle_timeout=self.config.idle_timeout_s,
            max_datagram_frame_size=65536,
            max_data=4 * self.config.max_queue_bytes,
            max_stream_data=max(2 * self.config.max_frame_bytes, 1 << 20),
        )
        if client:
            config.verify_mode = ssl.CERT_NONE  # no chain: the handshake checks the key
            config.server_name = "edgenode"
        else:
            config.certificate = self._cert
            config.private_key = self.identity.key
        return config

    async def start(self, host: str = "::", port: int = 0) -> int:
        """Listen on `host`:`port` (UDP); "::" takes IPv4 too where the OS allows. The port."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        sock = self._socket(family)
        try:
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
        configuration = self._configuration(client=False)
        _, server = await loop.create_datagram_endpoint(
            lambda: _Server(owner=self, configuration=configuration, create_protocol=self._accept),
            sock=sock,
        )
        self._server = server
        self._listening = sock
        return int(sock.getsockname()[1])

    def _socket(self, family: int) -> socket.socket:
        """A UDP socket with buffers of `TransportConfig.socket_buffer_bytes`."""
        sock = socket.socket(family, socket.SOCK_DGRAM)
        size = self.config.socket_buffer_bytes
        for forced, plain in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, forced, size)
            except OSError:  # no CAP_NET_ADMIN: as much as net.core.[rw]mem_max allows
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, plain, size)
        return sock

    def _accept(self, quic: QuicConnection, **_: Any) -> PeerConnection:
        conn = PeerConnection(quic, owner=self, inbound=True)
        if self._pending >= self.config.max_pending_handshakes:
            conn.busy = True
            conn.counted = False
        else:
            self._pending += 1
        self._conns.add(conn)
        return conn

    def _release(self, conn: PeerConnection) -> None:
        if conn.counted:
            conn.counted = False
            self._pending -= 1

    def set_address(self, peer: NodeId, host: str, port: int) -> None:
        """Where to dial `peer` when a message is sent to it and no connection is up."""
        self._peers.setdefault(peer, _Peer()).dial_to = (host, port)

    def send(self, peer: NodeId, channel: str, data: bytes, *, reliable: bool) -> bool:
        """Queue `data` for `peer` on `channel`; dial in the background if need be.

        False: dropped (no address known, larger than the limit, the peer's queue is full).
        A channel name that is not valid raises ValueError (the caller's mistake)."""
        body = fr.channel_payload(channel, data)
        p = self._peers.get(peer)
        limit = self.config.max_frame_bytes - 1 if reliable else self.config.max_datagram_bytes
        if len(body) > limit or p is None or (p.active is None and p.dial_to is None):
            self.stats.dropped += 1
            return False
        wire = fr.frame(fr.Kind.DATA, body) if reliable else body
        conn = p.active
        stream, datagrams = send_backlog(conn._quic, conn.stream_id) if conn else (0, 0)
        full = p.pending_bytes + stream + len(wire) > self.config.max_queue_bytes
        if full or (not reliable and datagrams >= self.config.max_datagram_backlog):
            self.stats.dropped += 1
            return False
        if conn is not None:
            self._put(conn, reliable, wire, channel, len(data))
            return True
        p.pending.append((reliable, wire, channel, len(data)))
        p.pending_bytes += len(wire)
        if p.dialling is None and p.dial_to is not None:
            p.dialling = asyncio.get_running_loop().create_task(self._background_dial(peer))
        return True

    def _put(
        self, conn: PeerConnection, reliable: bool, wire: bytes, channel: str, size: int
    ) -> None:
        if reliable:
            assert conn.stream_id is not None
            conn._quic.send_stream_data(conn.stream_id, wire)
            _count(self.stats.frames_out, channel)
        else:
            conn._quic.send_datagram_frame(wire)
            _count(self.stats.datagrams_out, channel)
        _count(self.stats.bytes_out, channel, size)
        conn.flush_soon()

    async def _background_dial(self, peer: NodeId) -> None:
        p = self._peers[peer]
        try:
            assert p.dial_to is not None
            got = await self.dial(*p.dial_to)
            if got != peer:
                log.warning("peer_address_mismatch", expected=peer, found=got, address=p.dial_to)
        except TransportError as exc:
            log.info("dial_failed", peer=peer, reason=str(exc))
        finally:
            p.dialling = None
            if p.active is None and p.pending:  # nowhere to go: drop, counted
                self.stats.dropped += len(p.pending)
                p.pending.clear()
                p.pending_bytes = 0

    async def dial(self, host: str, port: int) -> NodeId:
        """Connect to `host`:`port` and authenticate: the node found there.

        Raises TransportError saying why not (refused and the reason, timed out, unreachable).
        A node already connected at that address is returned without a new connection."""
        for node, p in self._peers.items():
            if p.dial_to == (host, port) and p.active is not None:
                return node
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise TransportError(f"dial {host} port {port}: cannot resolve ({exc})") from None
        found = infos[0][4]
        addr: tuple[Any, ...] = found
        if len(found) == 2:
            addr = ("::ffff:" + str(found[0]), found[1], 0, 0)
        quic = QuicConnection(configuration=self._configuration(client=True))
        sock = self._socket(socket.AF_INET6)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", 0, 0, 0))
            udp, proto = await loop.create_datagram_endpoint(
                lambda: PeerConnection(quic, owner=self, inbound=False), sock=sock
            )
        except OSError as exc:
            sock.close()
            raise TransportError(f"dial {host} port {port}: {exc}") from None
        conn = proto
        conn.udp = udp
        conn.address = (host, port)
        self._conns.add(conn)
        try:
            conn.connect(addr)
        except OSError as exc:
            conn.refuse(fr.Close.DONE, "unreachable", str(exc))
            raise TransportError(f"dial {host} port {port}: {exc}") from None
        try:
            return await asyncio.wait_for(
                asyncio.shield(conn.authenticated), self.config.connect_timeout_s
            )
        except TimeoutError:
            conn.refuse(fr.Close.TIMEOUT, "deadline", "connect timeout")
            raise TransportError(
                f"dial {host} port {port}: no authenticated connection within "
                f"{self.config.connect_timeout_s} s"
            ) from None

    # called by connections

    def _up(self, conn: PeerConnection) -> None:
        assert conn.peer is not None
        self._release(conn)
        node = NodeId(conn.peer.subject)
        if node == self.identity.node_id:
            conn.refuse(fr.Close.REFUSED, "self", "connected to itself")
            return
        self.stats.connections += 1
        p = self._peers.setdefault(node, _Peer())
        old = p.active
        gone, p.gone_since = p.gone_since, None
        if old is not None and gone is not None and old.heard < gone:
            p.active = conn  # the old one is a dead process's: nothing was heard on it since
            old.refuse(fr.Close.DONE, "replaced", "the peer connected again after it was gone")
        elif old is not None:
            me = self.identity.node_id
            if fr.keeps_new(me, node, new_inbound=conn.inbound, old_inbound=old.inbound):
                p.active = conn
                self._demote(old)
            else:
                self._demote(conn)
        else:
            p.active = conn
        if p.active is conn:
            while p.pending:
                self._put(conn, *p.pending.popleft())
            p.pending_bytes = 0
        if old is None and self._on_peer is not None:
            self._call(self._on_peer, PeerUp(node, conn.address, conn.inbound))
        if not conn.authenticated.done():
            conn.authenticated.set_result(node)

    def _demote(self, conn: PeerConnection) -> None:
        """Stop using `conn` for new messages; end our side of it once what is queued is out."""
        if conn.state != "up":
            return
        conn.state = "draining"
        assert conn.peer is not None
        node = NodeId(conn.peer.subject)
        p = self._peers.get(node)
        if p is not None and p.active is conn:  # the peer ended it: it is going away
            p.active = None
            if self._on_peer is not None:
                self._call(self._on_peer, PeerDown(node, "peer ended the connection's stream"))
        conn.end_stream()

    def _closed(self, conn: PeerConnection, reason: str) -> None:
        self._conns.discard(conn)
        self._release(conn)
        if conn.peer is None:
            return
        node = NodeId(conn.peer.subject)
        p = self._peers.get(node)
        if p is not None and p.active is conn:
            p.active = None
            if self._on_peer is not None:
                self._call(self._on_peer, PeerDown(node, reason))

    def _frame(self, conn: PeerConnection, kind: int, body: bytes) -> None:
        view = fr.parse_channel_payload(body) if kind == fr.Kind.DATA else "not a DATA frame"
        if isinstance(view, str):
            conn.refuse(fr.Close.PROTOCOL, "malformed", f"frame: {view}")
            return
        assert conn.peer is not None
        channel, payload = view
        _count(self.stats.frames_in, channel)
        _count(self.stats.bytes_in, channel, len(payload))
        self._call(self._on_message, channel, NodeId(conn.peer.subject), payload)

    def _datagram(self, conn: PeerConnection, data: bytes) -> None:
        view = fr.parse_channel_payload(data)
        if conn.peer is None or isinstance(view, str) or len(data) > self.config.max_datagram_bytes:
            self.stats.dropped += 1
            return
        channel, payload = view
        _count(self.stats.datagrams_in, channel)
        _count(self.stats.bytes_in, channel, len(payload))
        self._call(self._on_message, channel, NodeId(conn.peer.subject), payload)

    def _log(
        self, event: str, address: tuple[str, int], subject: str, reason: str, kind: str
    ) -> None:
        """Log a refusal or close, at most once per (event, host, kind) and interval."""
        suppressed = self._limit.admit((event, address[0], kind), now=time.monotonic())
        if suppressed is not None:
            host, port = address
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            log.warning(
                event,
                address=where,
                subject=subject,
                reason=reason,
                kind=kind,
                suppressed=suppressed,
            )

    def _refused_datagram(self, addr: Any, kind: str) -> None:
        """Count a datagram refused at the listening port; log it. The first refusal after a
        quiet interval is logged at once; those that follow are counted per address and kind,
        and logged with their counts every `log_interval_s`, so every one is in the log."""
        _count(self.stats.datagrams_refused, kind)
        host = str(addr[0]).removeprefix("::ffff:")
        if self._tally_timer is None:
            self._log_refused(host, kind, 1)
            loop = asyncio.get_running_loop()
            self._tally_timer = loop.call_later(self.config.log_interval_s, self._flush_tally)
            return
        key = (host, kind) if len(self._tally) < MAX_TALLY_KEYS else ("*", kind)
        self._tally[key] = self._tally.get(key, 0) + 1

    def _flush_tally(self) -> None:
        tally, self._tally = self._tally, {}
        self._tally_timer = None
        for (host, kind), count in sorted(tally.items()):
            self._log_refused(host, kind, count)
        if tally:  # still coming: the next ones wait for the next interval too
            loop = asyncio.get_running_loop()
            self._tally_timer = loop.call_later(self.config.log_interval_s, self._flush_tally)

    def _log_refused(self, host: str, kind: str, count: int) -> None:
        total = sum(self.stats.datagrams_refused.values())
        log.warning("datagrams_refused", address=host, kind=kind, count=count, total=total)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("transport_callback_failed", callback=getattr(fn, "__name__", "?"))

    # queries and shutdown

    def peers(self) -> dict[NodeId, PeerInfo]:
        """Connected, authenticated peers."""
        out: dict[NodeId, PeerInfo] = {}
        for node, p in self._peers.items():
            c = p.active
            if c is not None and c.peer is not None:
                out[node] = PeerInfo(c.address, c.since, c.peer, c.inbound)
        return out

    def expect_restart(self, peer: NodeId) -> None:
        """The caller holds `peer` gone (membership declared it dead): its process may have
        ended without closing, and its connection here would last until the idle timeout.
        Until that connection hears from the peer again, a new connection from the peer
        replaces it, rather than being drained by the lower-id rule (which would turn a
        restarted peer away). A peer that was only cut off is heard on it again first."""
        p = self._peers.get(peer)
        if p is not None and p.active is not None:
            p.gone_since = time.monotonic()

    def queued(self, peer: NodeId) -> int:
        """Bytes queued for `peer`: before a connection, and sent on it but not acknowledged."""
        p = self._peers.get(peer)
        if p is None:
            return 0
        c = p.active
        return p.pending_bytes + (send_backlog(c._quic, c.stream_id)[0] if c else 0)

    async def close(self) -> None:
        """Close every connection and stop listening."""
        for p in self._peers.values():
            if p.dialling is not None:
                p.dialling.cancel()
        conns = list(self._conns)
        for c in conns:
            if c.state != "closed":
                c.state = "closed"
                c.close(fr.Close.DONE, "node shutting down")
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=0.5)
        for c in conns:
            if c.udp is not None:
                c.udp.close()
            c.deadline.cancel()
        if self._tally_timer is not None:
            self._tally_timer.cancel()
            self._flush_tally()  # what was still counted goes into the log before the end
            if self._tally_timer is not None:
                self._tally_timer.cancel()
                self._tally_timer = None
        if self._server is not None:
            self._server.close()
            self._server = None
