"""Convergence by construction: the same set of changes folds to the same bytes, in any order."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from storekit import RULES, Origin, open_store, trust

from store import ChainError, Change, Hlc, Op, Store, fold

PATHS = [
    ("spec", "containers", "web", "image"),
    ("spec", "containers", "web", "env", "A"),
    ("spec", "containers", "side", "image"),
    ("metadata", "labels", "app"),
    ("assignment", "node"),
    ("status", "phase"),
]
MANAGERS = ["user", "placement", "node:a", "node:b"]

op_strategy = st.one_of(
    st.builds(
        lambda p, v: Op("set", p, v),
        st.sampled_from(PATHS),
        st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"]), st.just(["x", 1])),
    ),
    st.builds(lambda p: Op("del", p), st.sampled_from([*PATHS, ("spec", "containers"), ()])),
    st.just(Op("new", ())),
    st.builds(lambda m: Op("share", ("status",), (m,)), st.sampled_from(MANAGERS)),
    st.builds(lambda m: Op("own", ("spec",), m), st.sampled_from(MANAGERS)),
)

change_spec = st.tuples(
    st.sampled_from(["a", "b", "c"]),  # origin
    st.integers(0, 6),  # wall clock step (0 makes concurrent-looking ties)
    st.sampled_from(MANAGERS),
    st.lists(op_strategy, min_size=1, max_size=4),
    st.sampled_from(["Pod/web", "Pod/db"]),
)


def build(specs: list[tuple[str, int, str, list[Op], str]]) -> tuple[list[Change], list[Origin]]:
    origins = {n: Origin(n) for n in "abc"}
    out: list[Change] = []
    for node, step, manager, ops, target in specs:
        o = origins[node]
        o.wall += step
        # Claim to have seen the writer of the first field only sometimes: some edits are
        # informed, some concurrent.
        seen = [(ops[0].path, out[-1].id)] if out and step % 2 else []
        hlc = Hlc(o.wall, o.seq)
        out.append(o.change(ops, target=target, manager=manager, hlc=hlc, seen=seen))
    return out, list(origins.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(change_spec, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_any_permutation_and_duplication_folds_to_identical_bytes_and_history(
    specs: list[tuple[str, int, str, list[Op], str]], rnd: random.Random
) -> None:
    changes, _ = build(specs)
    shuffled = changes + rnd.sample(changes, k=len(changes) // 2)
    rnd.shuffle(shuffled)
    for target in ("Pod/web", "Pod/db"):
        kind, name = target.split("/")
        mine = [c for c in changes if c.target == target]
        theirs = [c for c in shuffled if c.target == target]
        s1, h1 = fold(kind, name, mine, RULES["Pod"])
        s2, h2 = fold(kind, name, theirs, RULES["Pod"])
        assert s1.encode() == s2.encode()
        assert [e.encode() for e in h1] == [e.encode() for e in h2]
        assert s1.revision == len(mine)


def deliver_randomly(store: Store, changes: list[Change], rnd: random.Random) -> None:
    """Random batches, out of order and with duplicates; a batch with a gap is refused whole
    and its changes come back later; finally everything once more."""
    pending = [c.envelope for c in changes]
    for _ in range(200):
        if not pending:
            break
        batch = rnd.sample(pending, rnd.randint(1, len(pending)))
        batch += rnd.sample(pending, min(2, len(pending)))
        try:
            store.apply_remote(batch)
        except ChainError:
            continue
        delivered = set(batch)
        pending = [e for e in pending if e not in delivered]
    store.apply_remote([c.envelope for c in changes])


@settings(max_examples=30, deadline=None)
@given(st.lists(change_spec, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_stores_fed_in_different_orders_and_batches_converge_byte_for_byte(
    specs: list[tuple[str, int, str, list[Op], str]], rnd: random.Random
) -> None:
    changes, origins = build(specs)
    with tempfile.TemporaryDirectory() as tmp:
        stores = [open_store(Path(tmp) / f"r{i}", "receiver") for i in range(2)]
        for store in stores:
            for o in origins:
                trust(store, o.node, o.key, MANAGERS)
            deliver_randomly(store, changes, rnd)
        a, b = stores
        assert a.version_vector() == b.version_vector()
        assert a.version_vector() == {o.node: o.seq for o in origins if o.seq}
        for target in {c.target for c in changes}:
            kind, name = target.split("/")
            sa, sb = a.get_state(kind, name), b.get_state(kind, name)
            assert sa is not None and sb is not None
            assert sa.encode() == sb.encode()
            assert a.history(kind, name) == b.history(kind, name)
            expected, _ = fold(kind, name, [c for c in changes if c.target == target], RULES[kind])
            assert sa.encode() == expected.encode()
        assert a.state_digest() == b.state_digest()
        for s in stores:
            s.close()


def test_the_state_digest_changes_with_every_applied_change_and_only_then() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "s", "a")
        digests = [store.state_digest()]
        for value in ("one", "two", "two"):
            new = [Op("new", ())] if len(digests) == 1 else []
            store.commit("Pod", "web", [*new, Op("set", PATHS[0], value)], manager="user")
            digests.append(store.state_digest())
        store.commit("Pod", "web", [Op("del", ())], manager="user")
        digests.append(store.state_digest())
        store.version_vector()
        assert store.state_digest() == digests[-1]  # reading changes nothing
        assert len(set(digests)) == len(digests), digests  # a revision counts even unchanged
        store.close()
