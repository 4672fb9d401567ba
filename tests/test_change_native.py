"""The C decoder (store/_cchange.c) against the reference (`decode_change_reference`).

It may leave any envelope to the reference (None), but what it returns must be exactly what
the reference returns, field by field and type by type, and it must never accept what the
reference refuses: on generated changes of every shape, on every truncation and on corrupted
bytes at every offset.
"""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cbor2
import pytest
from conftest import require
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import Change, Hlc, MalformedChangeError, Op, _change, make_change
from store._change import (
    ZERO_DIGEST,
    ChangeId,
    author_content,
    check_op,
    decode_change_reference,
)
from store._path import KNOWN_PATHS, same_leaf

SIGNER = Ed25519PrivateKey.generate()
AUTHOR = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def native() -> Callable[[bytes], Change | None]:
    require(_change.NATIVE_DECODER, "the C decoder store/_cchange.c was not built (no C compiler?)")
    assert _change._BUILT is not None
    return _change._BUILT


def reference(envelope: bytes) -> Change | None:
    try:
        return decode_change_reference(envelope)
    except MalformedChangeError:
        return None


def same_change(a: Change, b: Change) -> None:
    for f in dataclasses.fields(Change):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert type(x) is type(y), f.name
        if f.name == "ops":
            assert len(x) == len(y)
            for o, p in zip(x, y, strict=True):
                assert type(o) is Op and type(p) is Op
                assert o.op == p.op and o.path == p.path and same_leaf(o.arg, p.arg), (o, p)
        elif f.name == "seen":
            assert list(x.items()) == list(y.items())
            assert all(type(v) is ChangeId for v in y.values())
        else:
            assert x == y, f.name
    assert type(b.hlc) is Hlc and type(b.id) is ChangeId


def agrees(native: Callable[[bytes], Change | None], envelope: bytes) -> Change | None:
    """The reference's verdict on `envelope`, after checking the C decoder agrees with it."""
    want = reference(envelope)  # first: it fills the memos the C decoder looks ids up in
    got = native(envelope)
    if got is not None:
        assert want is not None, f"the C decoder accepted what the reference refuses: {envelope!r}"
        same_change(want, got)
    return want


ids = st.sampled_from(["n1", "n2", "node-a.lan", "x@y/z", "a" * 253, "op_1"])
keys = st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), min_size=1)
paths = st.lists(
    st.sampled_from(["spec", "status", "env", "é", "a.b", "x" * 60]) | keys, max_size=5
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
leaves = scalars | st.lists(scalars, max_size=3)
ops = st.one_of(
    st.builds(lambda p, v: Op("set", ("f", *p), v), paths, leaves),
    st.just(Op("new", ())),
    st.builds(lambda p: Op("del", tuple(p)), paths),
    st.builds(lambda p, m: Op("share", tuple(p), tuple(m)), paths, st.lists(ids, max_size=2)),
    st.builds(lambda p, m: Op("own", tuple(p), m), paths, ids),
)


@st.composite
def changes(draw: st.DrawFn) -> bytes:
    origin = draw(ids)
    author = draw(st.sampled_from([origin, "operator"]))
    # checked as a local commit checks them (which also turns -0.0 into 0.0)
    some_ops = [check_op(o.to_wire()) for o in draw(st.lists(ops, min_size=1, max_size=4))]
    seen = draw(
        st.lists(
            st.tuples(paths.map(tuple), st.tuples(ids, st.integers(1, (1 << 64) - 1))), max_size=3
        )
    )
    kind, name = draw(st.sampled_from(["Pod", "Node"])), draw(ids)
    manager = draw(st.sampled_from(["user", "placement", "node:n1"]))
    at = author_sig = None
    if author != origin:
        at = draw(st.integers(0, (1 << 64) - 1))
        content = author_content(
            author=author, manager=manager, kind=kind, name=name, ops=some_ops, at=at
        )
        author_sig = AUTHOR.sign(content)
    change = make_change(
        signer=SIGNER,
        origin=origin,
        seq=draw(st.integers(1, (1 << 64) - 1)),
        prev=draw(st.sampled_from([ZERO_DIGEST, bytes(range(32))])),
        kind=kind,
        name=name,
        hlc=Hlc(draw(st.integers(0, (1 << 63) - 1)), draw(st.integers(0, (1 << 32) - 1))),
        author=author,
        manager=manager,
        ops=some_ops,
        seen=[(p, ChangeId(*w)) for p, w in seen],
        at=at,
        author_sig=author_sig,
    )
    return change.envelope


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelope=changes())
def test_the_c_decoder_returns_exactly_what_the_reference_decodes(
    native: Callable[[bytes], Change | None], envelope: bytes
) -> None:
    assert agrees(native, envelope) is not None  # made by make_change: the reference accepts


@settings(max_examples=300, deadline=None)
@given(envelope=changes(), data=st.data())
def test_the_c_decoder_never_accepts_a_corrupted_change_the_reference_refuses(
    native: Callable[[bytes], Change | None], envelope: bytes, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(envelope) - 1))
    byte = data.draw(st.integers(0, 255))
    agrees(native, envelope[:at] + bytes([byte]) + envelope[at + 1 :])
    agrees(native, envelope[:at])
    agrees(native, envelope + bytes([byte]))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_the_c_decoder_leaves_arbitrary_bytes_to_the_reference(
    native: Callable[[bytes], Change | None], raw: bytes
) -> None:
    agrees(native, raw)
    agrees(native, b"\x83" + raw)


def common_changes() -> list[bytes]:
    """Changes of the shapes gossip carries all day: sets of scalars, new, del, seen."""
    out = []
    for seq in range(1, 6):
        ops = [Op("new", ())] if seq == 1 else []
        ops += [
            Op("set", ("spec", "containers", "web", "image"), f"busybox:{seq}"),
            Op("set", ("spec", "replicas"), seq),
            Op("set", ("spec", "ratio"), seq / 3),
            Op("set", ("spec", "paused"), seq % 2 == 0),
            Op("set", ("spec", "note"), None),
            Op("set", ("spec", "offset"), -seq),
            Op("del", ("spec", "old")),
        ]
        change = make_change(
            signer=SIGNER,
            origin="n1",
            seq=seq,
            prev=ZERO_DIGEST,
            kind="Pod",
            name="web",
            hlc=Hlc(1_800_000_000_000 + seq, seq),
            author="n1",
            manager="user",
            ops=ops,
            seen=[(("spec", "replicas"), ChangeId("n2", seq))],
        )
        out.append(change.envelope)
    return out


def test_the_c_decoder_reads_the_common_shapes_itself(
    native: Callable[[bytes], Change | None],
) -> None:
    for envelope in common_changes():
        assert agrees(native, envelope) is not None
        assert native(envelope) is not None, "the common shape fell back to the reference"


def test_every_truncation_and_every_flipped_byte_agrees_with_the_reference(
    native: Callable[[bytes], Change | None],
) -> None:
    for envelope in common_changes()[:2]:
        for at in range(len(envelope)):
            assert agrees(native, envelope[:at]) is None
            for byte in (0x00, 0x17, 0x18, 0x1B, 0x40, 0x5F, 0x7F, 0x9F, 0xF6, 0xFF):
                agrees(native, envelope[:at] + bytes([byte]) + envelope[at + 1 :])
            agrees(native, envelope[:at] + bytes([envelope[at] ^ 0x01]) + envelope[at + 1 :])


def test_a_forgotten_memo_changes_nothing_the_c_decoder_returns(
    native: Callable[[bytes], Change | None],
) -> None:
    envelope = common_changes()[1]
    before = agrees(native, envelope)
    _change._GOOD_IDS.clear()
    _change._GOOD_MANAGERS.clear()
    KNOWN_PATHS.clear()
    after = native(envelope)  # found by the bytes that encode them
    assert before is not None and after is not None
    same_change(before, after)


def test_decode_change_uses_the_c_decoder_unless_told_not_to(
    native: Callable[[bytes], Change | None],
) -> None:
    envelope = common_changes()[0]
    assert _change.decode_change(envelope) == decode_change_reference(envelope)
    try:
        assert _change.use_native(False) is False
        assert _change._native is None
        assert _change.decode_change(envelope) == decode_change_reference(envelope)
    finally:
        assert _change.use_native(True) is True
    assert _change._native is native


def test_the_envelopes_one_encoding_is_all_the_c_decoder_reads(
    native: Callable[[bytes], Change | None],
) -> None:
    envelope = common_changes()[0]
    body, sig, _ = cbor2.loads(envelope)
    longer = b"\x83\x59" + len(body).to_bytes(2, "big") + body + b"\x58\x40" + sig + b"\xf6"
    assert agrees(native, longer) is None  # a length in a longer head than it needs
    assert native(bytearray(envelope)) is None  # type: ignore[arg-type]
    assert _change.decode_change(bytearray(envelope)) == decode_change_reference(envelope)


def decode_rounds(native: Callable[[bytes], Change | None], envelopes: list[bytes]) -> None:
    for _ in range(20):
        for envelope in envelopes:
            native(envelope)


def test_the_c_decoder_keeps_no_memory_per_change(native: Callable[[bytes], Change | None]) -> None:
    good = common_changes()
    bad = [e[:-1] for e in good] + [e[:40] + b"\xff" + e[41:] for e in good]
    envelopes: list[Any] = good + bad
    for envelope in envelopes:
        agrees(native, envelope)
    decode_rounds(native, envelopes)  # warm: memos and the C cache filled
    gc.collect()
    tracemalloc.start()
    try:
        first = tracemalloc.get_traced_memory()[0]
        decode_rounds(native, envelopes * 50)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes kept after {len(envelopes) * 1000} decodes"


def rewrapped(
    envelope: bytes, edit: Callable[[bytes], bytes], *, author_sig: bytes | None
) -> bytes:
    """`envelope` with its body edited and signed again, in the envelope's one encoding."""
    body, _, _ = cbor2.loads(envelope)
    body = edit(body)
    return _change._wrap(body, SIGNER.sign(body), author_sig)


def swap(old: bytes, new: bytes, body: bytes) -> bytes:
    return body.replace(old, new)


def test_a_float_dag_cbor_forbids_is_left_to_the_reference_which_refuses_it(
    native: Callable[[bytes], Change | None],
) -> None:
    envelope = common_changes()[2]
    ratio = cbor2.dumps(3 / 3)
    assert ratio in envelope
    for bits in ("7ff0000000000000", "fff0000000000000", "7ff8000000000000", "8000000000000000"):
        forbidden = b"\xfb" + bytes.fromhex(bits)
        bad = rewrapped(envelope, partial(swap, ratio, forbidden), author_sig=None)
        assert agrees(native, bad) is None
        assert native(bad) is None


def test_an_author_signature_on_a_change_by_its_origin_is_left_to_the_reference(
    native: Callable[[bytes], Change | None],
) -> None:
    envelope = common_changes()[1]
    assert agrees(native, envelope) is not None
    bad = rewrapped(envelope, lambda b: b, author_sig=AUTHOR.sign(b"anything"))
    assert agrees(native, bad) is None
    assert native(bad) is None


def test_a_manager_is_not_taken_for_an_id_the_reference_would_refuse(
    native: Callable[[bytes], Change | None],
) -> None:
    good = make_change(
        signer=SIGNER,
        origin="n1",
        seq=1,
        prev=ZERO_DIGEST,
        kind="Pod",
        name="web",
        hlc=Hlc(1_800_000_000_000, 0),
        author="n1",
        manager="node:n1",  # a manager, but not an id (ids have no ':')
        ops=[Op("set", ("status", "phase"), "Running")],
    )
    assert agrees(native, good.envelope) is not None and native(good.envelope) is not None
    named = rewrapped(good.envelope, lambda b: b.replace(b"cweb", b"gnode:n1"), author_sig=None)
    assert cbor2.loads(cbor2.loads(named)[0])[5] == "node:n1"
    assert agrees(native, named) is None


def test_the_c_module_in_use_was_built_from_its_current_source() -> None:
    require(_change.NATIVE_DECODER, "the C decoder store/_cchange.c was not built (no C compiler?)")
    import store._cchange as built  # type: ignore[import-not-found]

    source = Path(_change.__file__).with_name("_cchange.c")
    if source.exists():  # an install from source: an edit not built since would go unseen
        assert Path(built.__file__).stat().st_mtime >= source.stat().st_mtime, (
            "store/_cchange.c changed since it was built: run `make install`"
        )
