"""A cluster's identity on disk: its trust root, its description, credentials, join bundles.

`init_cluster` makes a cluster on the node where it runs: the trust root's key pair
(``<state>/cluster/root.key``, root-only; an operator may move it offline once the nodes have
joined), the cluster's description (``cluster.json``: id, ULA prefix, the root's public key),
the first node's credential for the key it already signs its changes with (``<state>/node.key``,
``cluster/node.cred``) and a credential for the node's local administrator
(``cluster/operator.key``, ``cluster/operator.cred``): the local API is a root-only socket, so
whoever is root on a node is an operator of its cluster, and writes as ``user`` with that key.

Joining, without a network: the new node prints a `JoinRequest` (its name, its node key, its
local operator's name and key: public values only; `join_request` makes the keys); a node
holding the root key checks it and signs a `Bundle` (`issue_bundle`: the cluster description,
a node credential and an operator credential); the new node checks the bundle against its own
keys and name and installs it (`join`), or refuses, writing nothing. No private key crosses,
so a bundle is not a secret. Joining the same cluster again renews the credentials.

`issue` signs a credential for another node or an operator; `create_join_token` and `redeem`
are the one-time join flow over the mesh: a token is a random secret shown once, stored only
as its SHA-256 with an expiry, and spent by its first use. `local_identity` is what a node
trusts at start: its cluster files, checked, or None for a lone node.

Every file is written to a temporary name, fsynced and renamed; key files are mode 0600.
Nothing here talks to the network: the transport brings tokens and credentials across.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gossip._credentials import (
    SUBJECT,
    Credential,
    CredentialError,
    Role,
    check,
    cluster_id,
    managers,
    ula_prefix,
)
from store import KeyEntry

CLUSTER_DIR = "cluster"
NODE_KEY = "node.key"
"""In the state directory: the key the node signs its changes and its mesh handshakes with."""
CLUSTER_FILE = "cluster.json"
NODE_CRED = "node.cred"
OPERATOR_KEY = "operator.key"
OPERATOR_CRED = "operator.cred"
"""These four in ``<state>/cluster``."""
DAY_S = 86_400
SKEW_S = 300
"""Seconds a credential is valid before it is issued: a node whose clock runs up to this much
behind the issuer's still accepts it. Range 0..3600; more tolerates worse clocks."""
TOKEN_PREFIX = "edgenode-join"
REQUEST_PREFIX = "edgenode-join-request"
BUNDLE_PREFIX = "edgenode-bundle"
BUNDLE_FORMAT = 1


class IdentityError(RuntimeError):
    """The cluster's files are missing, unreadable, or refuse the request; nothing changed."""


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    ula: str
    root_public: bytes


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _load_key(path: Path) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(path.read_bytes())
    except FileNotFoundError:
        raise IdentityError(
            f"{path} does not exist: this node has no such key (run edgenode init on the "
            "cluster's first node, or copy the key here)"
        ) from None
    except ValueError as exc:
        raise IdentityError(f"{path}: not an Ed25519 private key ({exc})") from None


def cluster_dir(state_dir: Path) -> Path:
    return state_dir / CLUSTER_DIR


def operator_name(node: str) -> str:
    """The default name of a node's local operator: ``admin-<node>``."""
    return f"admin-{node}"


def _check_subject(subject: str, what: str) -> None:
    if not SUBJECT.match(subject):
        raise IdentityError(
            f"{what}: expected a DNS label (1-63 of a-z, 0-9, '-', not starting or ending "
            f"with '-'), got {subject!r}; nothing was written"
        )


def _key(path: Path) -> Ed25519PrivateKey:
    """The key at `path`, made (mode 0600) if there is none."""
    if path.exists():
        return _load_key(path)
    key = Ed25519PrivateKey.generate()
    _write(path, _private_bytes(key), 0o600)
    return key


def init_cluster(
    state_dir: Path, node: str, *, now: int, days: int = 365, operator: str | None = None
) -> tuple[Cluster, Credential]:
    """Make a cluster with this node as its first member, and its local administrator
    (`operator`, default ``admin-<node>``) as an operator. Refused if one exists here."""
    operator = operator or operator_name(node)
    _check_subject(node, "the node's name")
    _check_subject(operator, "the local operator's name")
    if operator == node:
        raise IdentityError(f"the operator and the node are both named {node!r}: name them apart")
    cdir = cluster_dir(state_dir)
    if (cdir / CLUSTER_FILE).exists():
        raise IdentityError(
            f"{cdir} already holds a cluster ({load_cluster(state_dir).id}); nothing was "
            "changed. To start over, remove that directory first"
        )
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cdir.mkdir(mode=0o700, exist_ok=True)
    root = Ed25519PrivateKey.generate()
    node_key = _key(state_dir / NODE_KEY)
    operator_key = _key(cdir / OPERATOR_KEY)
    _write(cdir / "root.key", _private_bytes(root), 0o600)
    cid = cluster_id(public_bytes(root))
    cluster = Cluster(cid, ula_prefix(cid), public_bytes(root))
    cred = _sign(root, cluster, node, "node", public_bytes(node_key), now=now, days=days)
    op_cred = _sign(
        root, cluster, operator, "operator", public_bytes(operator_key), now=now, days=days
    )
    _install(state_dir, cluster, cred, op_cred)
    return cluster, cred


def _private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _describe(cluster: Cluster) -> dict[str, str]:
    return {"id": cluster.id, "ula": cluster.ula, "root_public": cluster.root_public.hex()}


def load_cluster(state_dir: Path) -> Cluster:
    path = cluster_dir(state_dir) / CLUSTER_FILE
    try:
        raw = json.loads(path.read_text())
        return Cluster(raw["id"], raw["ula"], bytes.fromhex(raw["root_public"]))
    except FileNotFoundError:
        raise IdentityError(
            f"{path} does not exist: this node belongs to no cluster yet (edgenode init)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentityError(f"{path} is not a cluster description ({exc})") from None


def _sign(
    root: Ed25519PrivateKey,
    cluster: Cluster,
    subject: str,
    role: Role,
    public_key: bytes,
    *,
    now: int,
    days: int,
) -> Credential:
    unsigned = Credential(cluster.id, subject, role, public_key, now - SKEW_S, now + days * DAY_S)
    return Credential(
        unsigned.cluster,
        unsigned.subject,
        unsigned.role,
        unsigned.public_key,
        unsigned.not_before,
        unsigned.not_after,
        root.sign(unsigned.body()),
    )


def issue(
    state_dir: Path, subject: str, role: Role, public_key: bytes, *, now: int, days: int = 365
) -> Credential:
    """A credential for `subject`'s key, signed with this node's copy of the trust root."""
    _check_subject(subject, f"the {role}'s name")
    cluster = load_cluster(state_dir)
    root = _load_key(cluster_dir(state_dir) / "root.key")
    signed = _sign(root, cluster, subject, role, public_key, now=now, days=days)
    reason = check(signed, root_public=cluster.root_public, now=now)
    if reason is not None:  # the root key does not match cluster.json
        raise IdentityError(f"{cluster_dir(state_dir)}: {reason}; nothing was issued")
    return signed


def registry_entry(cred: Credential) -> KeyEntry:
    """The store's key-registry entry for a trusted credential: its subject's key, allowed to
    write as the managers its role gives."""
    return KeyEntry(cred.subject, cred.public_key, managers(cred))


@contextlib.contextmanager
def _tokens(state_dir: Path) -> Iterator[dict[str, dict[str, object]]]:
    """The token table, locked, written back when the block ends without an error."""
    cdir = cluster_dir(state_dir)
    path = cdir / "tokens.json"
    fd = os.open(cdir / "tokens.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        table: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
        yield table
        _write(path, json.dumps(table, indent=2, sort_keys=True).encode(), 0o600)
    finally:
        os.close(fd)


def create_join_token(state_dir: Path, *, now: int, ttl_s: int = 3600) -> str:
    """A one-time token for a new node to join, valid `ttl_s` seconds; shown only now."""
    cluster = load_cluster(state_dir)
    secret = secrets.token_hex(16)
    with _tokens(state_dir) as table:
        table[hashlib.sha256(secret.encode()).hexdigest()] = {"expires": now + ttl_s}
        for digest in [d for d, t in table.items() if int(str(t["expires"])) < now]:
            del table[digest]
    return f"{TOKEN_PREFIX}:{cluster.id}:{secret}"


def redeem(state_dir: Path, token: str, subject: str, public_key: bytes, *, now: int) -> Credential:
    """Spend a join token: a node credential for `subject`'s key, or `IdentityError` saying
    why not (malformed, another cluster's, unknown or already spent, expired)."""
    cluster = load_cluster(state_dir)
    prefix, _, rest = token.partition(":")
    token_cluster, _, secret = rest.partition(":")
    if prefix != TOKEN_PREFIX or not token_cluster or not secret:
        raise IdentityError(
            f"join token: expected {TOKEN_PREFIX}:CLUSTER:SECRET, got {token[:24]!r}...; "
            "nothing was issued"
        )
    if token_cluster != cluster.id:
        raise IdentityError(
            f"join token is for cluster {token_cluster}, not this one ({cluster.id}); "
            "nothing was issued"
        )
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with _tokens(state_dir) as table:
        entry = table.pop(digest, None)  # spent by this use, whatever comes next
        if entry is None:
            raise IdentityError(
                "join token: unknown or already used; ask for a new one (edgenode token "
                "create); nothing was issued"
            )
        if int(str(entry["expires"])) < now:
            raise IdentityError(
                f"join token expired at {entry['expires']} (now {now}); ask for a new one; "
                "nothing was issued"
            )
    try:
        return issue(state_dir, subject, "node", public_key, now=now)
    except CredentialError as exc:
        raise IdentityError(f"join by {subject!r}: {exc}; the token is spent") from None


# -- joining with a bundle ----------------------------------------------------------------------


def parse_public_key(text: str, what: str) -> bytes:
    """An Ed25519 public key from 64 hex digits, or `IdentityError` naming `what`."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise IdentityError(
            f"{what}: expected 64 hex digits (an Ed25519 public key), got {text!r}; nothing "
            "was changed"
        )
    return key


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What a new node asks to be admitted with: public values only."""

    node: str
    node_public: bytes
    operator: str
    operator_public: bytes

    def encode(self) -> str:
        """One line: ``edgenode-join-request:NODE:NODEKEY:OPERATOR:OPERATORKEY`` (keys in hex)."""
        keys = (self.node_public.hex(), self.operator_public.hex())
        return f"{REQUEST_PREFIX}:{self.node}:{keys[0]}:{self.operator}:{keys[1]}"

    @classmethod
    def parse(cls, text: str) -> JoinRequest:
        """A request from `encode`'s line, or `IdentityError` saying what is wrong."""
        parts = text.strip().split(":")
        if len(parts) != 5 or parts[0] != REQUEST_PREFIX:
            raise IdentityError(
                f"join request: expected {REQUEST_PREFIX}:NODE:KEY:OPERATOR:KEY (the line "
                f"`edgenode join request` prints), got {text.strip()[:40]!r}; nothing was issued"
            )
        _, node, node_hex, operator, operator_hex = parts
        _check_subject(node, "join request: the node's name")
        _check_subject(operator, "join request: the operator's name")
        request = cls(
            node,
            parse_public_key(node_hex, "join request: the node's key"),
            operator,
            parse_public_key(operator_hex, "join request: the operator's key"),
        )
        if node == operator or request.node_public == request.operator_public:
            raise IdentityError(
                f"join request of {node}: the node and its operator need names and keys of "
                "their own; nothing was issued"
            )
        return request


def join_request(state_dir: Path, node: str, *, operator: str | None = None) -> JoinRequest:
    """This node's join request; its node key and local operator key are made if missing."""
    operator = operator or operator_name(node)
    _check_subject(node, "the node's name")
    _check_subject(operator, "the local operator's name")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cluster_dir(state_dir).mkdir(mode=0o700, exist_ok=True)
    node_key = _key(state_dir / NODE_KEY)
    operator_key = _key(cluster_dir(state_dir) / OPERATOR_KEY)
    return JoinRequest(node, public_bytes(node_key), operator, public_bytes(operator_key))


@dataclass(frozen=True, slots=True)
class Bundle:
    """What admits a node: the cluster's description and its two credentials (no secret)."""

    cluster: Cluster
    node: Credential
    operator: Credential

    def encode(self) -> bytes:
        """CBOR: [prefix, format, [id, ula, root public key], node credential, operator's]."""
        c = self.cluster
        creds = [self.node.encode(), self.operator.encode()]
        description = [c.id, c.ula, c.root_public]
        return cbor2.dumps([BUNDLE_PREFIX, BUNDLE_FORMAT, description, *creds], canonical=True)

    def text(self) -> str:
        """One line to paste: ``edgenode-bundle:`` and the CBOR in base64."""
        return f"{BUNDLE_PREFIX}:{base64.b64encode(self.encode()).decode()}"

    @classmethod
    def decode(cls, data: bytes) -> Bundle:
        """A bundle from `encode`'s bytes or `text`'s line, or `IdentityError`."""
        if data.lstrip().startswith(BUNDLE_PREFIX.encode() + b":"):
            try:
                data = base64.b64decode(data.strip()[len(BUNDLE_PREFIX) + 1 :], validate=True)
            except binascii.Error as exc:
                raise IdentityError(
                    f"join bundle: the base64 text does not decode ({exc})"
                ) from None
        try:
            prefix, fmt, (cid, ula, root), node, operator = cbor2.loads(data)
            if prefix != BUNDLE_PREFIX or fmt != BUNDLE_FORMAT:
                raise ValueError(f"expected {BUNDLE_PREFIX} format {BUNDLE_FORMAT}")
            if not all(isinstance(v, str) for v in (cid, ula)) or not isinstance(root, bytes):
                raise ValueError("the cluster description has wrong types")
            return cls(
                Cluster(cid, ula, root), Credential.decode(node), Credential.decode(operator)
            )
        except (ValueError, TypeError, cbor2.CBORDecodeError) as exc:
            raise IdentityError(
                f"join bundle: expected what `edgenode credential issue` writes, got something "
                f"else ({exc}); nothing was written"
            ) from None


def issue_bundle(state_dir: Path, request: JoinRequest, *, now: int, days: int = 365) -> Bundle:
    """Admit `request`'s node and operator: their credentials, signed by this node's root key."""
    node = issue(state_dir, request.node, "node", request.node_public, now=now, days=days)
    operator = issue(
        state_dir, request.operator, "operator", request.operator_public, now=now, days=days
    )
    return Bundle(load_cluster(state_dir), node, operator)


def check_bundle(
    bundle: Bundle, *, node: str, node_public: bytes, operator_public: bytes, now: int
) -> str | None:
    """Why `bundle` cannot admit this node (`node`, its keys) at `now`; None: it can."""
    c = bundle.cluster
    if cluster_id(c.root_public) != c.id or ula_prefix(c.id) != c.ula:
        return (
            f"its cluster description (id {c.id}, ULA {c.ula}) does not derive from its trust "
            "root: the bundle was altered"
        )
    for cred, role, key, name in (
        (bundle.node, "node", node_public, f"this node's key ({NODE_KEY})"),
        (
            bundle.operator,
            "operator",
            operator_public,
            f"the local operator's key ({OPERATOR_KEY})",
        ),
    ):
        reason = check(cred, root_public=c.root_public, now=now)
        if reason is not None:
            return reason
        if cred.role != role:
            return f"credential of {cred.subject}: expected role {role}, got {cred.role}"
        if cred.public_key != key:
            return (
                f"the {role} credential is for key {cred.public_key.hex()[:16]}…, but {name} is "
                f"{key.hex()[:16]}…: the bundle answers another node's request"
            )
    if bundle.node.subject != node:
        return f"the node credential is for {bundle.node.subject!r}, this node is named {node!r}"
    if bundle.operator.subject == node:
        return f"the operator credential is named like the node ({node!r})"
    return None


def join(state_dir: Path, bundle: Bundle, node: str, *, now: int) -> None:
    """Install `bundle` on this node, or raise `IdentityError` and write nothing. A node may
    join its own cluster again (renewing its credentials), never another."""
    cdir = cluster_dir(state_dir)
    node_key, operator_key = state_dir / NODE_KEY, cdir / OPERATOR_KEY
    if not (node_key.exists() and operator_key.exists()):
        raise IdentityError(
            f"{state_dir}: expected the keys `edgenode join request` makes ({node_key}, "
            f"{operator_key}), got none; run it first and send its line to the operator; "
            "nothing was written"
        )
    if (cdir / CLUSTER_FILE).exists():
        current = load_cluster(state_dir).id
        if current != bundle.cluster.id:
            raise IdentityError(
                f"this node already belongs to cluster {current}; the bundle is for cluster "
                f"{bundle.cluster.id}; nothing was written. To move it, remove {cdir} first"
            )
    reason = check_bundle(
        bundle,
        node=node,
        node_public=public_bytes(_load_key(node_key)),
        operator_public=public_bytes(_load_key(operator_key)),
        now=now,
    )
    if reason is not None:
        raise IdentityError(f"join bundle refused: {reason}; nothing was written")
    _install(state_dir, bundle.cluster, bundle.node, bundle.operator)


def _install(state_dir: Path, cluster: Cluster, node: Credential, operator: Credential) -> None:
    """Write the credentials, then the description: a node is in a cluster once it is there."""
    cdir = cluster_dir(state_dir)
    _write(cdir / NODE_CRED, node.encode(), 0o644)
    _write(cdir / OPERATOR_CRED, operator.encode(), 0o644)
    _write(cdir / CLUSTER_FILE, json.dumps(_describe(cluster), indent=2).encode(), 0o644)


# -- what a node trusts at start ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """A cluster node's checked identity: who it is, and who its local operator is."""

    cluster: Cluster
    node: Credential
    operator: Credential
    operator_key: Ed25519PrivateKey


def _credential(path: Path, root: bytes, role: Role, key: bytes, *, now: int) -> Credential:
    renew = (
        "renew it: run `edgenode join request` here, `edgenode credential issue REQUEST` on a "
        "node holding the trust root, then `edgenode join BUNDLE` here"
    )
    try:
        cred = Credential.decode(path.read_bytes())
    except FileNotFoundError:
        raise IdentityError(f"{path} does not exist (a partial copy?); {renew}") from None
    except CredentialError as exc:
        raise IdentityError(f"{path}: {exc}; {renew}") from None
    reason = check(cred, root_public=root, now=now)
    if reason is None and cred.role != role:
        reason = f"expected a {role} credential, got a {cred.role} credential"
    if reason is None and cred.public_key != key:
        reason = (
            f"it is for key {cred.public_key.hex()[:16]}…, expected the key beside it "
            f"({key.hex()[:16]}…)"
        )
    if reason is not None:
        raise IdentityError(f"{path}: {reason}; {renew}")
    return cred


def local_identity(state_dir: Path, node: str | None, *, now: int) -> LocalIdentity | None:
    """This node's cluster identity, checked against the trust root at `now`; None when it
    belongs to no cluster (no ``cluster/cluster.json``). Raises `IdentityError` naming the
    file, what is wrong with it and what to do."""
    cdir = cluster_dir(state_dir)
    if not (cdir / CLUSTER_FILE).exists():
        return None
    cluster = load_cluster(state_dir)
    root = cluster.root_public
    if cluster_id(root) != cluster.id:
        raise IdentityError(f"{cdir / CLUSTER_FILE}: its id does not derive from its trust root")
    node_key = public_bytes(_load_key(state_dir / NODE_KEY))
    cred = _credential(cdir / NODE_CRED, root, "node", node_key, now=now)
    if node is not None and cred.subject != node:
        raise IdentityError(
            f"{cdir / NODE_CRED} is for node {cred.subject!r}, expected this node's name "
            f"{node!r}; give --node {cred.subject} (EDGENODE_NODE), or join as {node}"
        )
    operator_key = _load_key(cdir / OPERATOR_KEY)
    op = _credential(cdir / OPERATOR_CRED, root, "operator", public_bytes(operator_key), now=now)
    return LocalIdentity(cluster, cred, op, operator_key)
