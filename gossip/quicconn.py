"""One QUIC connection of the transport: its TLS and application handshakes, then frames.

Theory of operation. `PeerConnection` is the aioquic protocol of one connection, inbound
(made by the `Transport`'s server) or dialled; `gossip.transport` owns every one of them and
is the public face. A connection goes ``tls -> handshake -> up -> draining``, and to
``closed`` from any of them. After TLS, the connection's one stream carries the handshake of
`gossip._frames` (credentials and signed nonces, bound to the server's certificate, which the
client reads through `peer_certificate`); once the peer is proved, frames and datagrams go to
the owner (`Transport._frame`, `Transport._datagram`), which also decides, in `_up`, which of
two connections to the same peer to keep and drains the other. Every input from asyncio or
aioquic is handled inside a try: an unexpected exception is logged and closes the connection
with a PROTOCOL error, never escaping to the event loop.

`peer_certificate` and `send_backlog` (for backpressure) are the only places that touch aioquic
internals; tests/test_transport.py pins both.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, cast

import structlog
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gossip import _frames as fr
from gossip._credentials import Credential
from gossip._membership_wire import NodeId

if TYPE_CHECKING:
    from gossip.transport import Transport

log = structlog.get_logger("gossip.transport")


class TransportError(RuntimeError):
    """A dial failed (refused, timed out, unreachable): the reason says which; nothing is kept."""


class AioquicInternalsError(RuntimeError):
    """aioquic no longer has an internal this transport relies on: pin a compatible aioquic."""


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# -- The aioquic internals this module relies on (tests/test_transport.py pins both) ----------


def peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer presented in the TLS handshake (None before it arrives)."""
    tls = getattr(quic, "tls", None)
    if tls is None or not hasattr(tls, "_peer_certificate"):
        raise AioquicInternalsError(
            "aioquic's TLS context has no _peer_certificate: this transport cannot bind the "
            "handshake to the server's certificate; nothing was trusted"
        )
    return cast(x509.Certificate | None, tls._peer_certificate)


def send_backlog(quic: QuicConnection, stream_id: int | None) -> tuple[int, int]:
    """What aioquic holds to send: (stream bytes not yet acknowledged, datagrams not yet sent)."""
    try:
        datagrams = len(quic._datagrams_pending)
        if stream_id is None or stream_id not in quic._streams:
            return 0, datagrams
        sender = quic._streams[stream_id].sender
        return int(sender._buffer_stop - sender._buffer_start), datagrams
    except AttributeError as exc:
        raise AioquicInternalsError(
            f"aioquic's connection no longer exposes its send buffers ({exc}): backpressure "
            "cannot be measured"
        ) from None


def _address(addr: Any) -> tuple[str, int]:
    host = str(addr[0])
    return (host.removeprefix("::ffff:") if "." in host else host, int(addr[1]))


# -- One connection --------------------------------------------------------------------------------


class PeerConnection(QuicConnectionProtocol):
    """One QUIC connection: its handshake, then frames; every input handled in `_on_event`."""

    def __init__(self, quic: QuicConnection, *, owner: Transport, inbound: bool) -> None:
        super().__init__(quic)
        self.owner = owner
        self.inbound = inbound
        self.address: tuple[str, int] = ("", 0)
        self.state = "tls"  # tls -> handshake -> up -> draining; closed at any point
        self.handshake: fr.ClientHandshake | fr.ServerHandshake | None = None
        self.decoder = fr.FrameDecoder(fr.MAX_HANDSHAKE_BYTES)
        self.stream_id: int | None = None
        self.peer: Credential | None = None
        self.subject = ""
        self.since = 0.0
        self.busy = False
        self.negotiated = False  # a ClientHello was read (set before its first datagram ends)
        self.garbage = False  # its first datagram had no ClientHello: it was dropped
        self.heard = 0.0  # monotonic seconds when it last received a datagram
        self.counted = inbound  # holds a pending-handshake slot
        self.got_fin = False
        self.our_close: tuple[int, str] | None = None
        self.sent_fin = False
        self.authenticated: asyncio.Future[NodeId] = self._loop.create_future()
        self.udp: asyncio.DatagramTransport | None = None
        self.deadline = self._loop.call_later(owner.config.handshake_timeout_s, self._expire)
        self._flush_handle: asyncio.Handle | None = None

    # inputs from asyncio and aioquic

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.owner._delivered = True
        self.heard = time.monotonic()
        if self.garbage:  # more for a connection dropped as garbage (an Initial replayed)
            self.owner._refused_datagram(addr, "no-client-hello")
            return
        first = self.address == ("", 0)
        if first:
            self.address = _address(addr)
        try:
            if first and self.busy:  # read the ClientHello, answer only with the refusal
                self._quic.receive_datagram(cast(bytes, data), addr, now=self._loop.time())
                self.refuse(fr.Close.BUSY, "busy", "too many handshakes in progress")
                return
            super().datagram_received(data, addr)
            if first and self.inbound and self.state == "tls" and not self.negotiated:
                self._drop_silently()
        except Exception:
            log.exception("transport_bug", address=self._where())
            self.refuse(fr.Close.PROTOCOL, "internal", "internal error")

    def quic_event_received(self, event: events.QuicEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("transport_bug", address=self._where(), peer=self.subject)
            self.refuse(fr.Close.PROTOCOL, "internal", "internal error")

    def transmit(self) -> None:
        super().transmit()
        if (
            self.state == "draining"
            and self.got_fin
            and self.sent_fin
            and send_backlog(self._quic, self.stream_id) == (0, 0)
        ):
            self.state = "closed"
            self.close(fr.Close.REPLACED, "replaced by another connection")

    def _on_event(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ProtocolNegotiated):
            self.negotiated = True
        elif isinstance(event, events.HandshakeCompleted):
            self._tls_done(event)
        elif isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.DatagramFrameReceived):
            self.owner._datagram(self, event.data)
        elif isinstance(event, events.StreamReset) and event.stream_id == self.stream_id:
            self.refuse(fr.Close.PROTOCOL, "malformed", "peer reset the stream")
        elif isinstance(event, events.ConnectionTerminated):
            self._terminated(event)

    def _tls_done(self, event: events.HandshakeCompleted) -> None:
        if event.alpn_protocol != fr.ALPN:
            self.refuse(fr.Close.REFUSED, "alpn", f"ALPN {event.alpn_protocol!r}, not {fr.ALPN}")
            return
        if self.state != "tls":
            return
        self.state = "handshake"
        me = self.owner.identity
        if self.inbound:
            self.handshake = fr.ServerHandshake(
                key=me.key,
                credential=me.credential,
                root_public=me.root_public,
                nonce=secrets.token_bytes(fr.NONCE_BYTES),
                cert_der=self.owner._cert_der,
            )
            return
        cert = peer_certificate(self._quic)
        public = cert.public_key() if cert is not None else None
        if cert is None or not isinstance(public, Ed25519PublicKey):
            self.refuse(fr.Close.REFUSED, "certificate", "server certificate is not Ed25519")
            return
        handshake = fr.ClientHandshake(
            key=me.key,
            credential=me.credential,
            root_public=me.root_public,
            nonce=secrets.token_bytes(fr.NONCE_BYTES),
            cert_public=_raw(public),
            cert_der=cert.public_bytes(Encoding.DER),
        )
        self.handshake = handshake
        self.stream_id = self._quic.get_next_available_stream_id()
        self._write(handshake.hello())

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        if self.state in ("tls", "closed"):
            return
        if self.stream_id is None and self.inbound and event.stream_id == 0:
            self.stream_id = 0
        if event.stream_id != self.stream_id:
            self.refuse(fr.Close.PROTOCOL, "stream", f"unexpected stream {event.stream_id}")
            return
        for kind, body in self.decoder.feed(event.data):
            if self.state == "handshake":
                self._handshake_frame(kind, body)
            elif self.state in ("up", "draining"):
                self.owner._frame(self, kind, body)
            if self.state == "closed":
                return
        if self.decoder.error is not None:
            code = fr.Close.FRAME_TOO_BIG if self.decoder.too_big else fr.Close.PROTOCOL
            self.refuse(
                code, "frame-too-big" if self.decoder.too_big else "malformed", self.decoder.error
            )
            return
        if event.end_stream:
            self.got_fin = True
            if self.state == "up":
                self.owner._demote(self)
            elif self.state != "draining":
                self.refuse(fr.Close.PROTOCOL, "malformed", "stream ended during the handshake")

    def _handshake_frame(self, kind: int, body: bytes) -> None:
        assert self.handshake is not None
        step = self.handshake.receive(kind, body, now=int(self.owner.clock()))
        self.subject = step.subject or self.subject
        if step.refused is not None:
            self.refuse(fr.Close.REFUSED, step.code, step.refused)
            return
        if step.reply:
            self._write(step.reply)
        if step.peer is not None:
            self.peer = step.peer
            self.state = "up"
            self.since = self.owner.clock()
            self.deadline.cancel()
            self.decoder.limit = self.owner.config.max_frame_bytes
            self.owner._up(self)

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        self.state = "closed"
        self.deadline.cancel()
        reason = event.reason_phrase or f"closed with code {event.error_code}"
        by_peer = (event.error_code, event.reason_phrase) != self.our_close
        if event.error_code == fr.Close.REFUSED and by_peer:
            self.owner._log(
                "refused_by_peer", self.address, self.subject, reason, "refused_by_peer"
            )
        if not self.authenticated.done():
            self.authenticated.set_exception(TransportError(reason))
            self.authenticated.exception()  # retrieved: a background dial may not await it
        self.owner._closed(self, reason)
        if self.udp is not None:
            self.udp.close()

    # actions

    def close(self, error_code: int = 0, reason_phrase: str = "") -> None:
        if self.our_close is None:
            self.our_close = (error_code, reason_phrase)
        super().close(error_code, reason_phrase)

    def _where(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _write(self, data: bytes) -> None:
        assert self.stream_id is not None
        self._quic.send_stream_data(self.stream_id, data)
        self.flush_soon()

    def flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self.state != "closed":
            self.transmit()

    def end_stream(self) -> None:
        if not self.sent_fin and self.stream_id is not None:
            self.sent_fin = True
            self._quic.send_stream_data(self.stream_id, b"", end_stream=True)
            self.flush_soon()

    def _expire(self) -> None:
        if self.state in ("tls", "handshake"):
            self.refuse(fr.Close.TIMEOUT, "deadline", "handshake not finished before its deadline")

    def _drop_silently(self) -> None:
        """An Initial with no ClientHello in it: garbage. Forget it, sending nothing back; the
        owner counts the refusal and logs it with the others of its kind."""
        self.owner._refused_datagram(self.address, "no-client-hello")
        self.garbage = True
        self.owner._release(self)
        self.state = "closed"
        self.close(fr.Close.PROTOCOL, "")

    def refuse(self, code: fr.Close, kind: str, reason: str) -> None:
        if self.state == "closed":
            return
        self.owner._release(self)
        was = self.state
        self.state = "closed"
        if not self.inbound and code == fr.Close.TIMEOUT:
            self.owner._log("dial_timeout", self.address, self.subject, reason, kind)
        elif code in (fr.Close.REFUSED, fr.Close.TIMEOUT, fr.Close.BUSY):
            self.owner.stats.refused += 1
            self.owner._log("peer_refused", self.address, self.subject, reason, kind)
        else:
            self.owner._log("peer_closed", self.address, self.subject, reason, kind)
        if not self.authenticated.done():
            self.authenticated.set_exception(TransportError(reason))
            self.authenticated.exception()
        if was in ("up", "draining"):
            self.owner._closed(self, reason)
        self.close(code, reason[:200])
