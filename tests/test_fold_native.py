"""The C fold (store/_cchange.c) against the reference (`apply_change` in store/_fold.py).

Folding any sequence of changes with the C fold taking what it can must leave the object in
the very state the reference leaves it in, byte for byte, and write the same history records:
over sets, creates, deletes, shares and transfers, by owners and by managers that own nothing,
with seen writers right and wrong (conflicts), status under a templated owner.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from copy import deepcopy
from typing import Any

import msgpack
import pytest
from conftest import require
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storekit import RULES

from store import Change, Hlc, Op, _fold, make_change
from store._change import ZERO_DIGEST, ChangeId
from store._fold import ObjectState, fold_records
from store._ownership import rule_owners
from store._path import same_leaf

SIGNER = Ed25519PrivateKey.generate()
POD_RULES = RULES["Pod"]
HPREFIX = b"Pod\0web\0"


@pytest.fixture(scope="module")
def native() -> Iterator[Callable[..., int]]:
    require(_fold._BUILT_FOLD is not None, "the C fold store/_cchange.c was not built")
    assert _fold._BUILT_FOLD is not None
    yield _fold._BUILT_FOLD[0]
    _fold.use_native_fold(True)


def folded(changes: list[Change], *, use_c: bool) -> tuple[ObjectState, list[tuple[bytes, bytes]]]:
    _fold.use_native_fold(use_c)
    try:
        state = ObjectState("Pod", "web")
        records: list[tuple[bytes, bytes]] = []
        # in two calls, as two batches would: the second continues the first's state
        half = len(changes) // 2
        fold_records(state, changes[:half], POD_RULES, HPREFIX, records)
        state.encode()
        fold_records(state, changes[half:], POD_RULES, HPREFIX, records)
        return state, records
    finally:
        _fold.use_native_fold(True)


def same_state(a: ObjectState, b: ObjectState) -> None:
    assert a.encode() == b.encode()
    for name in ("exists", "revision", "last_key", "transfers", "shares", "dirty"):
        assert getattr(a, name) == getattr(b, name), name
    assert list(a.writers.items()) == list(b.writers.items())
    assert list(a.fields) == list(b.fields)
    assert all(same_leaf(a.fields[p], b.fields[p]) for p in a.fields)
    assert type(a.revision) is type(b.revision) is int


PATHS = [
    ("spec", "containers", "web", "image"),
    ("spec", "replicas"),
    ("metadata", "labels", "app"),
    ("assignment", "node"),
    ("status", "phase"),
    ("status", "containers", "web", "ready"),
    ("unowned", "thing"),
]
MANAGERS = ["user", "placement", "node:n1", "node:n2", "nobody-at-all"]
ORIGINS = ["n1", "n2", "n3"]
values = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f + 0.0)
    | st.text(max_size=40)
    | st.lists(st.integers(0, 9), max_size=3)
)
ops = st.one_of(
    st.builds(lambda p, v: Op("set", p, v), st.sampled_from(PATHS), values),
    st.builds(
        lambda p, v: Op("set", p, v), st.just(("assignment", "node")), st.sampled_from(ORIGINS)
    ),
    st.just(Op("new", ())),
    st.builds(lambda p: Op("del", p), st.sampled_from([(), ("spec",), *PATHS])),
    st.builds(
        lambda p, m: Op("share", p, (m,)),
        st.sampled_from([("spec",), *PATHS]),
        st.sampled_from(MANAGERS),
    ),
    st.builds(
        lambda p, m: Op("own", p, m),
        st.sampled_from([("status",), *PATHS]),
        st.sampled_from(MANAGERS),
    ),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Change]:
    """Changes to one Pod from a few origins, in fold order; mostly the common shape."""
    out: list[Change] = []
    seqs = dict.fromkeys(ORIGINS, 0)
    writers: dict[tuple[str, ...], ChangeId] = {}
    common = draw(st.booleans())
    for i in range(draw(st.integers(1, 25))):
        origin = draw(st.sampled_from(ORIGINS))
        seqs[origin] += 1
        if i == 0 or (common and draw(st.integers(0, 5)) > 0):
            path = draw(st.sampled_from(PATHS[:5]))
            manager = {"spec": "user", "metadata": "user", "assignment": "placement"}.get(
                path[0], "node:n1"
            )
            some = [Op("new", ())] if i == 0 else []
            some += [Op("set", path, draw(values))]
        else:
            manager = draw(st.sampled_from(MANAGERS))
            some = draw(st.lists(ops, min_size=1, max_size=4))
        seen = [
            (op.path, writers[op.path] if draw(st.booleans()) else ChangeId("n9", 1))
            for op in some
            if op.path in writers and draw(st.booleans())
        ]
        change = make_change(
            signer=SIGNER,
            origin=origin,
            seq=seqs[origin],
            prev=ZERO_DIGEST,
            kind="Pod",
            name="web",
            hlc=Hlc(1_800_000_000_000 + i // 2, draw(st.integers(0, 3))),
            author=origin,
            manager=manager,
            ops=some,
            seen=seen,
        )
        out.append(change)
        for op in some:
            writers[op.path] = change.id
    return sorted(out, key=lambda c: c.sort_key)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=histories())
def test_the_c_fold_leaves_the_state_and_history_the_reference_leaves(
    native: Callable[..., int], changes: list[Change]
) -> None:
    want, want_records = folded(changes, use_c=False)
    got, got_records = folded(changes, use_c=True)
    same_state(want, got)
    assert got_records == want_records


def plain_changes(n: int) -> list[Change]:
    out = []
    for seq in range(1, n + 1):
        ops = [Op("new", ())] if seq == 1 else []
        ops += [
            Op("set", ("spec", "containers", "web", "image"), f"busybox:{seq}"),
            Op("set", ("spec", "replicas"), seq),
        ]
        seen = [] if seq == 1 else [(("spec", "replicas"), ChangeId("n1", seq - 1))]
        out.append(
            make_change(
                signer=SIGNER,
                origin="n1",
                seq=seq,
                prev=ZERO_DIGEST,
                kind="Pod",
                name="web",
                hlc=Hlc(1_800_000_000_000 + seq, 0),
                author="n1",
                manager="user",
                ops=ops,
                seen=seen,
            )
        )
    return out


def test_the_c_fold_takes_the_common_case_itself(native: Callable[..., int]) -> None:
    changes = plain_changes(5)
    _fold.use_native_fold(False)
    state = ObjectState("Pod", "web")
    records: list[tuple[bytes, bytes]] = []
    fold_records(state, changes[:1], POD_RULES, HPREFIX, records)  # fills the owners memo
    _fold.use_native_fold(True)
    owners = rule_owners(POD_RULES)
    assert native(state, changes, 1, owners, HPREFIX, records) == 5  # all four, by itself
    want, want_records = folded(changes, use_c=False)
    same_state(want, state)
    assert records == want_records


def test_the_c_fold_stops_before_a_change_out_of_fold_order(native: Callable[..., int]) -> None:
    changes = plain_changes(3)
    state, records = folded(changes, use_c=True)
    before = state.encode()
    owners = rule_owners(POD_RULES)
    assert native(state, [changes[1]], 0, owners, HPREFIX, records) == 0
    assert state.encode() == before and len(records) == 3
    with pytest.raises(ValueError, match="is not after"):
        fold_records(state, [changes[1]], POD_RULES, HPREFIX, records)


def test_a_status_write_under_a_templated_owner_is_folded_by_the_node_it_names(
    native: Callable[..., int],
) -> None:
    changes = plain_changes(1)
    writes = [
        ("n3", 1, "placement", ("assignment", "node"), "n1"),
        ("n1", 2, "node:n1", ("status", "phase"), "Running on n1"),
        ("n2", 1, "node:n2", ("status", "phase"), "Running on n2"),  # not its pod: refused
    ]
    for at, (node, seq, manager, path, value) in enumerate(writes, start=1):
        changes.append(
            make_change(
                signer=SIGNER,
                origin=node,
                seq=seq,
                prev=ZERO_DIGEST,
                kind="Pod",
                name="web",
                hlc=Hlc(1_800_000_000_100 + at, 0),
                author=node,
                manager=manager,
                ops=[Op("set", path, value)],
            )
        )
    want, want_records = folded(changes, use_c=False)
    got, got_records = folded(changes, use_c=True)
    same_state(want, got)
    assert got_records == want_records
    assert got.fields[("status", "phase")] == "Running on n1"
    refused = [msgpack.unpackb(record)[8] for _, record in got_records]
    assert refused == [[], [], [], [["status\0phase", "node:n1"]]]  # owned by the assigned node
    assert b"status\0phase" in got_records[-1][1]


def test_the_c_fold_keeps_no_memory_per_change(native: Callable[..., int]) -> None:
    changes = plain_changes(40)

    def rounds(n: int) -> None:
        for _ in range(n):
            state = ObjectState("Pod", "web")
            records: list[Any] = []
            fold_records(state, changes, POD_RULES, HPREFIX, records)
            state.encode()

    rounds(3)
    gc.collect()
    tracemalloc.start()
    try:
        first = tracemalloc.get_traced_memory()[0]
        rounds(200)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes kept after folding {200 * len(changes)} changes"


def encoded_both_ways(state: ObjectState) -> tuple[bytes, bytes | None]:
    """`state` encoded by the reference, and a copy of it by the C encoder (None: left to the
    reference); both leave their state's row caches the same."""
    copy = deepcopy(state)
    assert _fold._BUILT_FOLD is not None
    by_c = _fold._BUILT_FOLD[1](copy)
    _fold.use_native_fold(False)
    try:
        by_python = state.encode()
    finally:
        _fold.use_native_fold(True)
    if by_c is not None:
        assert (copy.rows, copy.dirty, copy.order) == (state.rows, state.dirty, state.order)
    return by_python, by_c


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=histories())
def test_the_c_encoder_writes_the_state_record_the_reference_writes(
    native: Callable[..., int], changes: list[Change]
) -> None:
    state = ObjectState("Pod", "web")
    for at, change in enumerate(changes):
        fold_records(state, [change], POD_RULES, HPREFIX, [])
        if at % 3 != 1:  # now and then two changes between encodes
            by_python, by_c = encoded_both_ways(state)
            assert by_c is None or by_c == by_python


def test_the_c_encoder_takes_rows_rewritten_in_place(native: Callable[..., int]) -> None:
    state, _ = folded(plain_changes(2), use_c=False)
    values: list[Any] = [-1, -33, -129, -40000, -(2**31) - 1, -(2**63), 2**64 - 1, 0.5, True]
    values += [None, "é" * 40, [1, [-2, "x" * 300]], "y" * 70000]
    for value in values:
        state.fields[("spec", "replicas")] = value
        state.dirty.append(("spec", "replicas"))
        by_python, by_c = encoded_both_ways(state)
        assert by_c == by_python, value


def test_an_owner_named_after_the_object_is_filled_in_with_its_name_not_a_field(
    native: Callable[..., int],
) -> None:
    # Node rules: everything is node:{name}'s. A field called "name" must not stand in for it.
    rules = RULES["Node"]
    writes = [
        ("n1", 1, [Op("new", ()), Op("set", ("name",), "n2")]),
        ("n2", 1, [Op("set", ("spec", "x"), 1)]),
    ]
    changes = [
        make_change(
            signer=SIGNER,
            origin=origin,
            seq=seq,
            prev=ZERO_DIGEST,
            kind="Node",
            name="n1",
            hlc=Hlc(1_800_000_000_000 + at, 0),
            author=origin,
            manager=f"node:{origin}",
            ops=ops,
        )
        for at, (origin, seq, ops) in enumerate(writes)
    ]
    results: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []
    for use_c in (False, True):
        _fold.use_native_fold(use_c)
        try:
            state = ObjectState("Node", "n1")
            records: list[tuple[bytes, bytes]] = []
            fold_records(state, changes[:1], rules, b"Node\0n1\0", records)
            fold_records(state, changes[1:], rules, b"Node\0n1\0", records)
            results.append((state.encode(), records))
        finally:
            _fold.use_native_fold(True)
    assert results[0] == results[1]
    assert [msgpack.unpackb(r)[8] for _, r in results[1][1]] == [[], [["spec\0x", "node:n1"]]]
