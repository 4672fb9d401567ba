"""Edits authored by an operator: the store signs them with the operator's key inside the
write, and a peer accepts them because it trusts the operator, not the node, as `user`."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from storekit import NOW_MS, open_store, public_bytes, snapshot, trust

from store import (
    ForbiddenManagerError,
    InvalidChangeError,
    KeyEntry,
    NotAuthorizedError,
    Op,
    Store,
    UnknownKeyError,
    author_content,
)

NODE_ONLY = ("node:a", "placement")
CREATE = [Op("new", ()), Op("set", ("spec", "containers", "web", "image"), "busybox")]


@pytest.fixture
def alice() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def node_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def origin(tmp_path: Path, node_key: Ed25519PrivateKey, alice: Ed25519PrivateKey) -> Store:
    """Node `a` of a cluster: its key writes as node:a and placement; alice writes as user."""
    s = open_store(tmp_path / "a", "a", node_key, node_managers=NODE_ONLY)
    trust(s, "alice", alice, ["user"])
    return s


def peer(tmp_path: Path, node_key: Ed25519PrivateKey, alice: Ed25519PrivateKey | None) -> Store:
    """Node `b`, trusting `a` for node:a and placement and (if given) alice for user."""
    s = open_store(tmp_path / "b", "b", node_managers=("node:b", "placement"))
    trust(s, "a", node_key, NODE_ONLY)
    if alice is not None:
        trust(s, "alice", alice, ["user"])
    return s


def everything(store: Store) -> list[bytes]:
    missing = store.missing({})
    assert missing.complete
    return missing.changes


def test_every_user_verb_authored_with_the_operators_key_is_accepted_by_a_peer(
    tmp_path: Path, origin: Store, node_key: Ed25519PrivateKey, alice: Ed25519PrivateKey
) -> None:
    origin.commit("Pod", "web", CREATE, manager="user", author="alice", author_key=alice)
    doc = {"spec": {"containers": {"web": {"image": "busybox:2"}}}}
    assert origin.put_document("Pod", "web", doc, author="alice", author_key=alice)
    assert origin.rollback("Pod", "web", 1, author="alice", author_key=alice).committed
    origin.delete("Pod", "web", author="alice", author_key=alice)
    b = peer(tmp_path, node_key, alice)
    applied = b.apply_remote(everything(origin))
    assert len(applied.applied) == 4
    assert b.get("Pod", "web") is None
    history = b.history("Pod", "web")
    assert [(r.author, r.manager) for r in history] == [("alice", "user")] * 4
    assert b.state_at("Pod", "web", 3).fields == origin.state_at("Pod", "web", 1).fields


def test_the_store_stamps_when_the_author_signed_with_its_own_clock(
    origin: Store, alice: Ed25519PrivateKey
) -> None:
    origin.commit("Pod", "web", CREATE, manager="user", author="alice", author_key=alice)
    (change,) = origin.changes("a")
    assert change.at == NOW_MS and change.author == "alice" and change.author_sig is not None
    content = author_content(
        author="alice", manager="user", kind="Pod", name="web", ops=change.ops, at=NOW_MS
    )
    alice.public_key().verify(change.author_sig, content)  # raises if it does not verify


def test_a_user_edit_the_node_authored_itself_is_refused_by_a_peer_that_trusts_it_only_as_node(
    tmp_path: Path, node_key: Ed25519PrivateKey, alice: Ed25519PrivateKey
) -> None:
    lone = open_store(tmp_path / "a", "a", node_key)  # a lone node: its key acts as user too
    lone.commit("Pod", "web", CREATE, manager="user")
    b = peer(tmp_path, node_key, alice)
    before = snapshot(b)
    with pytest.raises(ForbiddenManagerError) as info:
        b.apply_remote(everything(lone))
    assert snapshot(b) == before
    message = str(info.value)
    assert "writes as manager 'user'" in message
    assert "a may act only as node:a, placement" in message
    assert "nothing was written" in message


def test_a_peer_that_does_not_know_the_operator_refuses_its_edit(
    tmp_path: Path, origin: Store, node_key: Ed25519PrivateKey, alice: Ed25519PrivateKey
) -> None:
    origin.commit("Pod", "web", CREATE, manager="user", author="alice", author_key=alice)
    b = peer(tmp_path, node_key, None)
    before = snapshot(b)
    with pytest.raises(UnknownKeyError, match="authored by 'alice', whose key is not registered"):
        b.apply_remote(everything(origin))
    assert snapshot(b) == before


def test_an_author_key_that_is_not_the_registered_one_is_refused_and_nothing_is_written(
    origin: Store,
) -> None:
    before = snapshot(origin)
    with pytest.raises(NotAuthorizedError, match="the key given for author alice is") as info:
        origin.commit(
            "Pod",
            "web",
            CREATE,
            manager="user",
            author="alice",
            author_key=Ed25519PrivateKey.generate(),
        )
    assert "nothing was written" in str(info.value)
    assert snapshot(origin) == before


def test_an_author_key_with_a_signature_too_or_for_the_node_itself_is_refused(
    origin: Store, node_key: Ed25519PrivateKey, alice: Ed25519PrivateKey
) -> None:
    before = snapshot(origin)
    with pytest.raises(InvalidChangeError, match="carries its signature and also its key"):
        origin.commit(
            "Pod",
            "web",
            CREATE,
            manager="user",
            author="alice",
            author_key=alice,
            at=NOW_MS,
            author_sig=b"\0" * 64,
        )
    with pytest.raises(InvalidChangeError, match="author_key is for an author other than"):
        origin.commit("Pod", "web", CREATE, manager="node:a", author="a", author_key=node_key)
    assert snapshot(origin) == before


def test_the_operator_may_not_write_what_the_node_owns(
    origin: Store, alice: Ed25519PrivateKey
) -> None:
    origin.register_key(KeyEntry("alice", public_bytes(alice), ("user",)))
    with pytest.raises(NotAuthorizedError, match="alice may not write as manager 'placement'"):
        origin.commit(
            "Pod",
            "web",
            CREATE,
            manager="placement",
            author="alice",
            author_key=alice,
        )
