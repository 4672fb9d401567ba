"""The transport's bytes on the wire: frames, channels, and the mutual authentication handshake.

Theory of operation. Two nodes talk over one QUIC connection (ALPN `ALPN`). The client opens
one bidirectional stream; everything reliable, in both directions, is a *frame* on it::

    frame = length (4 bytes, big-endian, counts what follows) | kind (1 byte) | body

A `FrameDecoder` cuts frames out of the stream's bytes; a length over the decoder's limit is an
error at once, before the body arrives, so a peer cannot make this node buffer more than the
limit. Small unreliable messages travel as QUIC DATAGRAM frames (RFC 9221) holding
``channel-length (1 byte) | channel | payload``; a DATA frame's body has the same shape.

The first frames on the stream are the handshake, CBOR arrays checked field by field:

1. client -> HELLO ``[VERSION, credential, nonce_c]``
2. server -> SERVER_HELLO ``[credential, nonce_s, sig_s]``
3. client -> AUTH ``[sig_c]``
4. server -> ACCEPTED ``[]``

``sig_s`` and ``sig_c`` are Ed25519 signatures, by each side's node key, over a transcript of
a label naming the signer's role, the cluster id, both nonces, SHA-256 of the server's TLS
certificate and SHA-256 of both credentials (`transcript`). Each side checks the other's
credential with `check` (this cluster's root signed it, it is valid now, role ``node``); the
client also checks that the server's TLS certificate holds the key its credential names.
Signing fresh nonces proves possession of the credential's key; including the certificate's
digest binds the proof to this TLS session, so a relay between two honest nodes (which must
present a certificate of its own) makes both signatures fail. No DATA frame is accepted, and
none is sent, by either side before ACCEPTED.

`ClientHandshake` and `ServerHandshake` are pure: bytes in, a `Step` out (a reply to send, the
authenticated peer, or a refusal with its reason). A peer's bad bytes become a refusal or a
decode error, never an exception. Nonces, the clock and the keys are the caller's.
"""

from __future__ import annotations

import enum
import hashlib
import re
import struct
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gossip._credentials import Credential, CredentialError, check

ALPN = "edgenode/1"
VERSION = 1
"""The handshake's version; a HELLO of another version is refused naming both."""
NONCE_BYTES = 32
MAX_HANDSHAKE_BYTES = 4096
"""The limit on a frame while the handshake runs: credentials are a few hundred bytes."""
HEADER = struct.Struct(">IB")
LENGTH = struct.Struct(">I")
CHANNEL = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
"""A channel name: 1 to 32 lowercase ASCII letters, digits, ``_.-``, starting with a letter."""
SERVER_LABEL = "edgenode-auth/1 server"
CLIENT_LABEL = "edgenode-auth/1 client"


class Kind(enum.IntEnum):
    HELLO = 1
    SERVER_HELLO = 2
    AUTH = 3
    ACCEPTED = 4
    DATA = 5


class Close(enum.IntEnum):
    """Application error codes a connection is closed with (the reason phrase says more)."""

    DONE = 0
    REFUSED = 0x10
    """Authentication failed: the other side logs ``refused_by_peer`` with the reason."""
    PROTOCOL = 0x11
    """A malformed or unexpected frame."""
    FRAME_TOO_BIG = 0x12
    TIMEOUT = 0x13
    """The handshake did not finish before its deadline."""
    BUSY = 0x14
    """Too many handshakes in progress at this node."""
    REPLACED = 0x15
    """Another connection between the same two nodes was kept instead of this one."""


def frame(kind: Kind, body: bytes) -> bytes:
    """One frame: header and body."""
    return HEADER.pack(len(body) + 1, kind) + body


def channel_payload(channel: str, payload: bytes) -> bytes:
    """The body of a DATA frame or of a DATAGRAM: the channel's name, then the payload.

    Raises ValueError for a channel name `CHANNEL` does not match: the caller's mistake."""
    if not CHANNEL.match(channel):
        raise ValueError(
            f"channel: expected 1-32 of a-z 0-9 _ . - starting with a letter, got {channel!r}; "
            "nothing was sent"
        )
    name = channel.encode()
    return bytes([len(name)]) + name + payload


def parse_channel_payload(body: bytes) -> tuple[str, bytes] | str:
    """(channel, payload) from `channel_payload`'s bytes, or why they are not that."""
    if not body:
        return "empty message: expected a channel name"
    size = body[0]
    name = body[1 : 1 + size]
    if len(name) != size:
        return f"channel name of {size} bytes, only {len(name)} present"
    try:
        channel = name.decode("ascii")
    except UnicodeDecodeError:
        return "channel name is not ASCII"
    if not CHANNEL.match(channel):
        return f"channel name {channel!r} is not a valid channel name"
    return channel, body[1 + size :]


class FrameDecoder:
    """Cuts frames out of a stream's bytes, holding at most one frame's worth.

    `feed` returns the complete frames; after an error (`error` is set) it returns nothing
    more and drops what it is fed."""

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self.limit = limit
        """The largest frame (kind and body) accepted; a longer length is an error."""
        self.error: str | None = None
        self.too_big = False

    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.error is not None:
            return []
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        at = 0
        while len(self._buf) - at >= 4:
            (length,) = LENGTH.unpack_from(self._buf, at)
            if length > self.limit:
                self.error = f"frame of {length} bytes is over the limit of {self.limit}"
                self.too_big = True
                break
            if length == 0:
                self.error = "frame of length 0: expected at least the kind byte"
                break
            if len(self._buf) - at < 4 + length:
                break
            kind = self._buf[at + 4]
            frames.append((kind, bytes(self._buf[at + HEADER.size : at + 4 + length])))
            at += 4 + length
        del self._buf[:at]
        if self.error is not None:
            self._buf.clear()
        return frames


def keeps_new(me: str, peer: str, *, new_inbound: bool, old_inbound: bool) -> bool:
    """Of two connections between `me` and `peer`, whether the new one is to be kept.

    Both ends decide alike: keep the one the lower node id dialled; if both were dialled by the
    same end, keep the older."""
    keeper = min(me, peer)
    new_dialler = peer if new_inbound else me
    old_dialler = peer if old_inbound else me
    return new_dialler == keeper and old_dialler != keeper


class RateLimit:
    """Admits one event per key per interval, counting those it holds back in between."""

    def __init__(self, interval_s: float, *, max_keys: int = 4096) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._last: dict[tuple[str, ...], tuple[float, int]] = {}

    def admit(self, key: tuple[str, ...], *, now: float) -> int | None:
        """None: hold this one back. Else: emit it, saying how many were held back before it."""
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if len(self._last) >= self._max_keys:
            self._last.clear()
        self._last[key] = (now, 0)
        return last[1] if last is not None else 0


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def transcript(
    label: str,
    *,
    cluster: str,
    nonce_c: bytes,
    nonce_s: bytes,
    cert_digest: bytes,
    server_cred: bytes,
    client_cred: bytes,
) -> bytes:
    """The bytes each side signs: everything both ends saw, and which end is signing."""
    return cbor2.dumps(
        [
            label,
            cluster,
            nonce_c,
            nonce_s,
            cert_digest,
            digest(server_cred),
            digest(client_cred),
        ],
        canonical=True,
    )


@dataclass(frozen=True, slots=True)
class Step:
    """What a handshake does with one frame: send `reply`, trust `peer`, or refuse."""

    reply: bytes = b""
    peer: Credential | None = None
    refused: str | None = None
    """Why the peer is refused (then the connection is to be closed with REFUSED)."""
    code: str = ""
    """A short name of the refusal's kind (for counting and rate-limiting logs)."""
    subject: str = ""
    """The subject the peer claimed, when it got that far."""


def _cbor_list(body: bytes, size: int, what: str) -> list[object] | str:
    try:
        value = cbor2.loads(body)
    except Exception as exc:  # any decoding failure is the peer's fault
        return f"{what} is not CBOR ({type(exc).__name__})"
    if not isinstance(value, list) or len(value) != size:
        return f"{what}: expected an array of {size} items"
    return value


def _credential(raw: object, root_public: bytes, now: int) -> tuple[Credential | None, Step]:
    """The peer's credential if this cluster trusts it as a node, else a refusal."""
    if not isinstance(raw, bytes):
        return None, Step(refused="credential: expected bytes", code="malformed")
    try:
        cred = Credential.decode(raw)
    except CredentialError as exc:
        return None, Step(refused=str(exc), code="malformed")
    reason = check(cred, root_public=root_public, now=now)
    if reason is not None:
        code = (
            "other-cluster"
            if "belongs to cluster" in reason
            else "forged"
            if "does not verify" in reason
            else "expired"
            if "expired" in reason
            else "not-yet-valid"
        )
        return None, Step(refused=reason, code=code, subject=cred.subject)
    if cred.role != "node":
        return None, Step(
            refused=f"credential of {cred.subject}: role expected node, got {cred.role}",
            code="role",
            subject=cred.subject,
        )
    return cred, Step(subject=cred.subject)


def _verify(public: bytes, signature: object, data: bytes) -> bool:
    if not isinstance(signature, bytes):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _unexpected(kind: int, expected: Kind) -> Step:
    return Step(
        refused=f"handshake: expected {expected.name}, got a frame of kind {kind}",
        code="unexpected",
    )


class ClientHandshake:
    """The dialling side. `hello` first; then `receive` each frame until a Step with a peer
    (authenticated) or a refusal."""

    def __init__(
        self,
        *,
        key: Ed25519PrivateKey,
        credential: Credential,
        root_public: bytes,
        nonce: bytes,
        cert_public: bytes,
        cert_der: bytes,
    ) -> None:
        self._key = key
        self._cred = credential.encode()
        self._cluster = credential.cluster
        self._root = root_public
        self._nonce = nonce
        self._cert_public = cert_public
        self._cert_digest = digest(cert_der)
        self._server: Credential | None = None

    def _transcript(self, label: str, nonce_s: bytes, server_cred: bytes) -> bytes:
        return transcript(
            label,
            cluster=self._cluster,
            nonce_c=self._nonce,
            nonce_s=nonce_s,
            cert_digest=self._cert_digest,
            server_cred=server_cred,
            client_cred=self._cred,
        )

    def hello(self) -> bytes:
        return frame(Kind.HELLO, cbor2.dumps([VERSION, self._cred, self._nonce]))

    def receive(self, kind: int, body: bytes, *, now: int) -> Step:
        if self._server is not None:
            if kind != Kind.ACCEPTED:
                return _unexpected(kind, Kind.ACCEPTED)
            return Step(peer=self._server, subject=self._server.subject)
        if kind != Kind.SERVER_HELLO:
            return _unexpected(kind, Kind.SERVER_HELLO)
        fields = _cbor_list(body, 3, "SERVER_HELLO")
        if isinstance(fields, str):
            return Step(refused=fields, code="malformed")
        raw, nonce_s, sig = fields
        cred, step = _credential(raw, self._root, now)
        if cred is None:
            return step
        assert isinstance(raw, bytes)
        if not isinstance(nonce_s, bytes) or len(nonce_s) != NONCE_BYTES:
            return Step(refused="SERVER_HELLO: nonce is not 32 bytes", code="malformed")
        if cred.public_key != self._cert_public:
            return Step(
                refused=(
                    f"the TLS certificate of {cred.subject} holds key "
                    f"{self._cert_public.hex()[:16]}..., its credential names "
                    f"{cred.public_key.hex()[:16]}..."
                ),
                code="certificate",
                subject=cred.subject,
            )
        signed = self._transcript(SERVER_LABEL, nonce_s, raw)
        if not _verify(cred.public_key, sig, signed):
            return Step(
                refused=f"{cred.subject}'s handshake signature does not verify",
                code="signature",
                subject=cred.subject,
            )
        self._server = cred
        mine = self._transcript(CLIENT_LABEL, nonce_s, raw)
        return Step(reply=frame(Kind.AUTH, cbor2.dumps([self._key.sign(mine)])))


class ServerHandshake:
    """The accepting side: `receive` each frame until a Step with a peer or a refusal."""

    def __init__(
        self,
        *,
        key: Ed25519PrivateKey,
        credential: Credential,
        root_public: bytes,
        nonce: bytes,
        cert_der: bytes,
    ) -> None:
        self._key = key
        self._cred = credential.encode()
        self._cluster = credential.cluster
        self._root = root_public
        self._nonce = nonce
        self._cert_digest = digest(cert_der)
        self._client: tuple[Credential, bytes, bytes] | None = None

    def _transcript(self, label: str, nonce_c: bytes, client_cred: bytes) -> bytes:
        return transcript(
            label,
            cluster=self._cluster,
            nonce_c=nonce_c,
            nonce_s=self._nonce,
            cert_digest=self._cert_digest,
            server_cred=self._cred,
            client_cred=client_cred,
        )

    def receive(self, kind: int, body: bytes, *, now: int) -> Step:
        if self._client is None:
            if kind != Kind.HELLO:
                return _unexpected(kind, Kind.HELLO)
            fields = _cbor_list(body, 3, "HELLO")
            if isinstance(fields, str):
                return Step(refused=fields, code="malformed")
            version, raw, nonce_c = fields
            if version != VERSION:
                return Step(
                    refused=f"handshake version {version!r}: this node speaks {VERSION}",
                    code="version",
                )
            cred, step = _credential(raw, self._root, now)
            if cred is None:
                return step
            assert isinstance(raw, bytes)
            if not isinstance(nonce_c, bytes) or len(nonce_c) != NONCE_BYTES:
                return Step(refused="HELLO: nonce is not 32 bytes", code="malformed")
            self._client = (cred, raw, nonce_c)
            signed = self._transcript(SERVER_LABEL, nonce_c, raw)
            reply = cbor2.dumps([self._cred, self._nonce, self._key.sign(signed)])
            return Step(reply=frame(Kind.SERVER_HELLO, reply), subject=cred.subject)
        cred, raw, nonce_c = self._client
        if kind != Kind.AUTH:
            step = _unexpected(kind, Kind.AUTH)
            return Step(refused=step.refused, code=step.code, subject=cred.subject)
        fields = _cbor_list(body, 1, "AUTH")
        if isinstance(fields, str):
            return Step(refused=fields, code="malformed", subject=cred.subject)
        signed = self._transcript(CLIENT_LABEL, nonce_c, raw)
        if not _verify(cred.public_key, fields[0], signed):
            return Step(
                refused=(
                    f"{cred.subject}'s handshake signature does not verify (not the holder of "
                    "the credential's key, or a relayed handshake)"
                ),
                code="signature",
                subject=cred.subject,
            )
        return Step(reply=frame(Kind.ACCEPTED, cbor2.dumps([])), peer=cred, subject=cred.subject)
