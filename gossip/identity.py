"""A cluster's identity on disk: its trust root, its description, credentials, join tokens.

`init_cluster` makes a cluster on the node where it runs: the trust root's key pair
(``<state>/cluster/root.key``, root-only; an operator may move it offline once the nodes have
joined), the cluster's description (``cluster.json``: id, ULA prefix, the root's public key)
and the first node's credential for the key it already signs its changes with
(``<state>/node.key``). `issue` signs a credential for another node or an operator;
`create_join_token` and `redeem` are the one-time join flow: a token is a random secret
shown once, stored only as its SHA-256 with an expiry, and spent by its first use.

Every file is written to a temporary name, fsynced and renamed; key files are mode 0600.
Nothing here talks to the network: the transport brings tokens and credentials across.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gossip._credentials import (
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
DAY_S = 86_400
TOKEN_PREFIX = "edgenode-join"


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


def init_cluster(
    state_dir: Path, node: str, *, now: int, days: int = 365
) -> tuple[Cluster, Credential]:
    """Make a cluster with this node as its first member. Refused if one exists here."""
    cdir = cluster_dir(state_dir)
    if (cdir / "cluster.json").exists():
        raise IdentityError(
            f"{cdir} already holds a cluster ({load_cluster(state_dir).id}); nothing was "
            "changed. To start over, remove that directory first"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    cdir.mkdir(mode=0o700, exist_ok=True)
    root = Ed25519PrivateKey.generate()
    node_key_path = state_dir / "node.key"
    if node_key_path.exists():
        node_key = _load_key(node_key_path)
    else:
        node_key = Ed25519PrivateKey.generate()
        _write(node_key_path, _private_bytes(node_key), 0o600)
    _write(cdir / "root.key", _private_bytes(root), 0o600)
    cid = cluster_id(public_bytes(root))
    cluster = Cluster(cid, ula_prefix(cid), public_bytes(root))
    description = {"id": cluster.id, "ula": cluster.ula, "root_public": cluster.root_public.hex()}
    _write(cdir / "cluster.json", json.dumps(description, indent=2).encode(), 0o644)
    cred = issue(state_dir, node, "node", public_bytes(node_key), now=now, days=days)
    _write(cdir / "node.cred", cred.encode(), 0o644)
    return cluster, cred


def _private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def load_cluster(state_dir: Path) -> Cluster:
    path = cluster_dir(state_dir) / "cluster.json"
    try:
        raw = json.loads(path.read_text())
        return Cluster(raw["id"], raw["ula"], bytes.fromhex(raw["root_public"]))
    except FileNotFoundError:
        raise IdentityError(
            f"{path} does not exist: this node belongs to no cluster yet (edgenode init)"
        ) from None
    except (ValueError, KeyError) as exc:
        raise IdentityError(f"{path} is not a cluster description ({exc})") from None


def issue(
    state_dir: Path, subject: str, role: Role, public_key: bytes, *, now: int, days: int = 365
) -> Credential:
    """A credential for `subject`'s key, signed with this node's copy of the trust root."""
    cluster = load_cluster(state_dir)
    root = _load_key(cluster_dir(state_dir) / "root.key")
    unsigned = Credential(cluster.id, subject, role, public_key, now, now + days * DAY_S)
    signed = Credential(
        unsigned.cluster,
        unsigned.subject,
        unsigned.role,
        unsigned.public_key,
        unsigned.not_before,
        unsigned.not_after,
        root.sign(unsigned.body()),
    )
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
