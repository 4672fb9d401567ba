"""Remote changes: idempotent and gapless, and every bad batch is refused with nothing written."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from storekit import NOW_MS, Origin, open_store, snapshot, trust

from store import (
    ChainError,
    ClockDriftError,
    ForbiddenManagerError,
    Hlc,
    HlcConfig,
    MalformedChangeError,
    Op,
    RemoteStoreError,
    SignatureError,
    Store,
    UnknownKeyError,
    author_content,
    make_change,
)

CREATE = [Op("new", ()), Op("set", ("spec", "containers", "web", "image"), "busybox")]


@pytest.fixture
def peer() -> Origin:
    return Origin("peer")


@pytest.fixture
def store(tmp_path: Path, peer: Origin) -> Store:
    s = open_store(tmp_path / "store", "me")
    trust(s, peer.node, peer.key)
    return s


def run_of(peer: Origin, n: int) -> list[bytes]:
    out = [peer.change(CREATE).envelope]
    for i in range(1, n):
        edit = [Op("set", ("spec", "containers", "web", "image"), f"busybox:{i}")]
        out.append(peer.change(edit).envelope)
    return out


def refused(store: Store, batch: list[bytes], error: type[RemoteStoreError]) -> str:
    before = snapshot(store)
    with pytest.raises(error) as info:
        store.apply_remote(batch)
    assert snapshot(store) == before
    assert "nothing was written" in str(info.value)
    return str(info.value)


def test_applying_the_same_changes_twice_is_idempotent(store: Store, peer: Origin) -> None:
    run = run_of(peer, 5)
    assert len(store.apply_remote(run).applied) == 5
    before = snapshot(store)
    again = store.apply_remote(run + run[:2])
    assert again.applied == [] and again.duplicates == 7
    assert snapshot(store) == before


def test_a_gap_in_an_origins_sequence_is_refused_and_names_what_is_missing(
    store: Store, peer: Origin
) -> None:
    run = run_of(peer, 5)
    store.apply_remote(run[:2])
    msg = refused(store, [run[3], run[4]], ChainError)
    assert "gap in the changes of peer" in msg and "send seq 3..3" in msg


def test_garbage_and_truncated_cbor_are_refused(store: Store, peer: Origin) -> None:
    good = run_of(peer, 1)[0]
    for bad in [b"", b"\xff\x00garbage", good[: len(good) // 2], good[:-1], cbor2.dumps([1, 2])]:
        with pytest.raises(MalformedChangeError):
            store.apply_remote([bad])
    # A valid change after garbage in the same batch: the whole batch is refused.
    refused(store, [good, b"\x9f\x9f"], MalformedChangeError)
    assert store.version_vector() == {}


def test_another_encoding_of_a_signed_change_is_refused_so_the_origins_chain_stays_whole(
    store: Store, peer: Origin
) -> None:
    """Same body, same signature, other bytes: a relay re-wrapping the newest change of a
    run would have a digest stored that the origin's next change does not link to."""
    run = run_of(peer, 2)
    outer = cbor2.loads(run[1])
    body, sig = outer[0], outer[1]
    long_length = b"\x83\x5a" + len(body).to_bytes(4, "big") + body + b"\x58\x40" + sig + b"\xf6"
    undefined = run[1][:-1] + b"\xf7"  # undefined where the author signature's null goes
    for variant in (long_length, undefined, run[1] + b"\x00"):
        assert variant != run[1] and cbor2.loads(variant[: len(run[1]) + 3])[0] == body
        msg = refused(store, [run[0], variant], MalformedChangeError)
        assert "refused a malformed change" in msg
    assert len(store.apply_remote(run).applied) == 2
    assert len(store.apply_remote([peer.change(CREATE[1:]).envelope]).applied) == 1


def test_a_body_with_a_wrong_field_type_is_refused(store: Store, peer: Origin) -> None:
    good = peer.change(CREATE)
    body = cbor2.loads(good.body)
    body[2] = "1"  # seq
    body_bytes = cbor2.dumps(body, canonical=True)
    bad = cbor2.dumps([body_bytes, peer.key.sign(body_bytes), None])
    msg = refused(store, [bad], MalformedChangeError)
    assert "seq is an integer" in msg


def test_an_integer_the_store_cannot_hold_is_refused_as_malformed(
    store: Store, peer: Origin
) -> None:
    # Valid CBOR, but below what the store's records of folded objects can hold.
    for value in (-(2**64), [1, -(2**63) - 1]):
        fresh = Origin("peer", peer.key)
        bad = fresh.change([*CREATE, Op("set", ("spec", "n"), value)]).envelope
        message = refused(store, [bad], MalformedChangeError)
        assert "-2^63..2^64-1" in message
    fine = Origin("peer", peer.key).change([*CREATE, Op("set", ("spec", "n"), -(2**63))])
    store.apply_remote([fine.envelope])
    state = store.get_state("Pod", "web")
    assert state is not None and state.fields[("spec", "n")] == -(2**63)


def test_a_bad_signature_is_refused(store: Store, peer: Origin) -> None:
    c = peer.change(CREATE)
    forged = cbor2.dumps([c.body, Ed25519PrivateKey.generate().sign(c.body), None])
    msg = refused(store, [forged], SignatureError)
    assert "origin signature does not verify" in msg


def test_the_newest_signature_covers_the_whole_run(store: Store, peer: Origin) -> None:
    """Tampering with an older change of a run breaks a hash link, even though only the
    newest change's signature is verified."""
    run = run_of(peer, 3)
    outer = cbor2.loads(run[0])
    body = cbor2.loads(outer[0])
    body[10][1][2] = "evil:latest"  # the value of the second op
    body_bytes = cbor2.dumps(body, canonical=True)
    evil = cbor2.dumps([body_bytes, outer[1], None])
    msg = refused(store, [evil, run[1], run[2]], ChainError)
    assert "does not link" in msg


def test_a_fork_of_an_origins_chain_is_refused(store: Store, peer: Origin, tmp_path: Path) -> None:
    run = run_of(peer, 2)
    store.apply_remote(run)
    twin = Origin("peer", peer.key)
    other = twin.change([Op("new", ()), Op("set", ("spec", "x"), 1)])
    msg = refused(store, [other.envelope], ChainError)
    assert "two different changes numbered 1" in msg


def test_changes_from_an_unknown_origin_are_refused(store: Store) -> None:
    stranger = Origin("stranger")
    msg = refused(store, [stranger.change(CREATE).envelope], UnknownKeyError)
    assert "'stranger'" in msg


def test_a_manager_the_origin_may_not_act_as_is_refused(tmp_path: Path) -> None:
    s = open_store(tmp_path / "s", "me")
    edge = Origin("edge")
    trust(s, "edge", edge.key, ["node:edge"])
    msg = refused(s, [edge.change(CREATE, manager="user").envelope], ForbiddenManagerError)
    assert "may act only as node:edge" in msg


def test_a_change_beyond_the_clock_drift_bound_is_refused_with_the_reason(
    tmp_path: Path, peer: Origin
) -> None:
    s = open_store(tmp_path / "s", "me", hlc=HlcConfig(max_drift_ms=5_000))
    trust(s, peer.node, peer.key)
    future = peer.change(CREATE, hlc=Hlc(NOW_MS + 60_000, 0))
    msg = refused(s, [future.envelope], ClockDriftError)
    assert "60.0 s ahead" in msg and "drift bound of 5.0 s" in msg
    # Within the bound it is accepted, and the local clock moves past it.
    s2 = open_store(tmp_path / "s2", "me", hlc=HlcConfig(max_drift_ms=120_000))
    trust(s2, peer.node, peer.key)
    s2.apply_remote([future.envelope])
    assert s2.clock.last > future.hlc


def operator_edit(
    peer: Origin, op_key: Ed25519PrivateKey, at: int, *, tamper: bool = False
) -> bytes:
    ops = CREATE
    content = author_content(author="alice", manager="user", kind="Pod", name="web", ops=ops, at=at)
    sig = op_key.sign(content)
    if tamper:
        ops = [Op("new", ()), Op("set", ("spec", "containers", "web", "image"), "evil")]
    peer.seq += 1
    c = make_change(
        signer=peer.key,
        origin=peer.node,
        seq=peer.seq,
        prev=peer.prev,
        kind="Pod",
        name="web",
        hlc=Hlc(NOW_MS, 0),
        author="alice",
        manager="user",
        ops=ops,
        at=at,
        author_sig=sig,
    )
    peer.prev = c.digest
    return c.envelope


def test_an_operators_edit_relayed_by_a_node_carries_and_needs_the_operators_signature(
    tmp_path: Path,
) -> None:
    alice = Ed25519PrivateKey.generate()
    for tamper, at, error in [
        (False, NOW_MS - 10, None),
        (True, NOW_MS - 10, SignatureError),
        (False, NOW_MS - 3_600_000, ClockDriftError),
    ]:
        peer = Origin("peer")
        s = open_store(tmp_path / f"s{tamper}{at}", "me")
        trust(s, "peer", peer.key, ["node:peer"])  # the node itself may not act as user
        trust(s, "alice", alice, ["user"])
        env = operator_edit(peer, alice, at, tamper=tamper)
        if error is None:
            s.apply_remote([env])
            assert s.history("Pod", "web")[0].author == "alice"
        else:
            refused(s, [env], error)
        s.close()
