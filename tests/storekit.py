"""Helpers for store tests: rules, keys, stores, hand-made changes and a byte-level snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from store import Change, Hlc, KeyEntry, Op, OwnerRule, Store, make_change
from store._change import ZERO_DIGEST

RULES = {
    "Pod": [
        OwnerRule((), "user"),
        OwnerRule(("metadata",), "user"),
        OwnerRule(("spec",), "user"),
        OwnerRule(("assignment",), "placement"),
        OwnerRule(("status",), "node:{assignment.node}"),
    ],
    "Node": [
        OwnerRule((), "node:{name}"),
        OwnerRule(("metadata",), "user"),
        OwnerRule(("status",), "node:{name}"),
    ],
}
NOW_MS = 1_800_000_000_000


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def all_managers(node: str) -> tuple[str, ...]:
    return (f"node:{node}", "placement", "user")


def open_store(path: Path, node: str, key: Ed25519PrivateKey | None = None, **kw: Any) -> Store:
    return Store(
        path,
        node_id=node,
        signing_key=key or Ed25519PrivateKey.generate(),
        rules=RULES,
        node_managers=kw.pop("node_managers", all_managers(node)),
        clock=kw.pop("clock", lambda: NOW_MS),
        **kw,
    )


def trust(store: Store, node: str, key: Ed25519PrivateKey, managers: Sequence[str] = ()) -> None:
    store.register_key(KeyEntry(node, public_bytes(key), tuple(managers) or all_managers(node)))


class Origin:
    """Makes a valid hash chain of changes by hand, as a peer node would."""

    def __init__(self, node: str, key: Ed25519PrivateKey | None = None) -> None:
        self.node = node
        self.key = key or Ed25519PrivateKey.generate()
        self.seq = 0
        self.prev = ZERO_DIGEST
        self.wall = NOW_MS - 100_000

    def change(
        self,
        ops: Sequence[Op],
        *,
        target: str = "Pod/web",
        manager: str = "user",
        hlc: Hlc | None = None,
        seen: Sequence[Any] = (),
    ) -> Change:
        kind, name = target.split("/")
        self.seq += 1
        if hlc is None:
            self.wall += 1
            hlc = Hlc(self.wall, 0)
        c = make_change(
            signer=self.key,
            origin=self.node,
            seq=self.seq,
            prev=self.prev,
            kind=kind,
            name=name,
            hlc=hlc,
            author=self.node,
            manager=manager,
            ops=ops,
            seen=seen,
        )
        self.prev = c.digest
        return c


def snapshot(store: Store) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every key and value of every database: to show that a refusal wrote nothing."""
    env: lmdb.Environment = store._env
    out: dict[bytes, list[tuple[bytes, bytes]]] = {}
    with env.begin() as txn:
        for name, _ in txn.cursor():
            db = env.open_db(name, txn=txn, create=False)
            out[name] = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
    return out
