"""Cluster identity: the trust root, its cluster id and ULA prefix, and signed credentials.

Theory of operation. A cluster is its *trust root*, an Ed25519 key pair made by
``edgenode init``. Everything else derives from the root's public key or is signed by it:

- the cluster id is the first 16 bytes of SHA-256 over the root's public key, in hex: two
  clusters cannot share an id without sharing a root;
- the cluster's IPv6 ULA /48 comes from the same digest (RFC 4193: ``fd`` followed by a 40-bit
  global id), so every node derives it alone;
- a *credential* binds a subject (a node's id, or an operator's name) and a role (``node`` or
  ``operator``) to that subject's own Ed25519 public key, for a validity window, signed by the
  root. Peers and the store trust a key only through a credential that `check` accepts.

A credential's role decides the store managers its key may act as (`managers`): a node writes
as ``node:<its id>`` and as ``placement``; an operator as ``user``. Pure: the clock is a
parameter, keys are bytes; signing is the caller's (`sign_body` returns the bytes to sign).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Role = Literal["node", "operator"]
ROLES: tuple[Role, ...] = ("node", "operator")
FORMAT = 1
"""Bumped if the signed body ever changes shape; a credential of another format is refused."""
SUBJECT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class CredentialError(ValueError):
    """A credential is malformed; nothing was trusted."""


def cluster_id(root_public: bytes) -> str:
    """The cluster's id: 32 hex digits derived from its trust root's public key."""
    _check_key(root_public, "the trust root's public key")
    return hashlib.sha256(b"edgenode cluster\0" + root_public).hexdigest()[:32]


def ula_prefix(cluster: str) -> str:
    """The cluster's IPv6 ULA /48 (RFC 4193: fd + a 40-bit global id from the cluster id)."""
    digest = hashlib.sha256(b"edgenode ula\0" + cluster.encode()).digest()
    g = digest[:5]
    return f"fd{g[0]:02x}:{g[1]:02x}{g[2]:02x}:{g[3]:02x}{g[4]:02x}::/48"


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != 32:
        raise CredentialError(f"{what}: expected 32 bytes (an Ed25519 public key), got {key!r}")


@dataclass(frozen=True, slots=True)
class Credential:
    cluster: str
    subject: str
    """A node's id or an operator's name: a DNS label."""
    role: Role
    public_key: bytes
    not_before: int
    """Unix seconds from which it is valid."""
    not_after: int
    """Unix seconds after which it is not."""
    signature: bytes = b""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise CredentialError(
                f"credential for {self.subject!r}: role expected one of {', '.join(ROLES)}, "
                f"got {self.role!r}"
            )
        if not SUBJECT.match(self.subject):
            raise CredentialError(
                f"credential subject: expected a DNS label (lowercase letters, digits, '-'), "
                f"got {self.subject!r}"
            )
        _check_key(self.public_key, f"credential for {self.subject}")
        if self.not_after <= self.not_before:
            raise CredentialError(
                f"credential for {self.subject}: expected not_after after not_before, got "
                f"{self.not_before}..{self.not_after}"
            )

    def body(self) -> bytes:
        """The canonical bytes the trust root signs (everything but the signature)."""
        return cbor2.dumps(
            [
                FORMAT,
                self.cluster,
                self.subject,
                self.role,
                self.public_key,
                self.not_before,
                self.not_after,
            ],
            canonical=True,
        )

    def encode(self) -> bytes:
        """The credential as stored in files and sent to peers."""
        return cbor2.dumps([self.body(), self.signature], canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> Credential:
        """A credential from `encode`'s bytes, or `CredentialError` saying what is wrong."""
        try:
            body, signature = cbor2.loads(data)
            fmt, cluster, subject, role, key, not_before, not_after = cbor2.loads(body)
        except (ValueError, TypeError, cbor2.CBORDecodeError) as exc:
            raise CredentialError(f"not a credential: {exc}") from None
        if fmt != FORMAT:
            raise CredentialError(f"credential format {fmt!r}: this node reads format {FORMAT}")
        if not all(isinstance(v, int) for v in (not_before, not_after)) or not isinstance(
            signature, bytes
        ):
            raise CredentialError("not a credential: validity and signature have wrong types")
        return cls(str(cluster), str(subject), role, key, not_before, not_after, signature)


def check(cred: Credential, *, root_public: bytes, now: int) -> str | None:
    """Why `cred` is not to be trusted in the cluster of `root_public` at `now`; None: trust it."""
    expected = cluster_id(root_public)
    if cred.cluster != expected:
        return (
            f"credential of {cred.subject} belongs to cluster {cred.cluster}, "
            f"not this cluster ({expected})"
        )
    try:
        Ed25519PublicKey.from_public_bytes(root_public).verify(cred.signature, cred.body())
    except InvalidSignature:
        return f"credential of {cred.subject}: the trust root's signature does not verify"
    if now < cred.not_before:
        return f"credential of {cred.subject} is not valid before {cred.not_before} (now {now})"
    if now > cred.not_after:
        return f"credential of {cred.subject} expired at {cred.not_after} (now {now})"
    return None


def managers(cred: Credential) -> tuple[str, ...]:
    """The store managers the credential's key may write as."""
    if cred.role == "node":
        return (f"node:{cred.subject}", "placement")
    return ("user",)
