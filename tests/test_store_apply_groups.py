"""`Store.apply_groups`: decoded runs of several origins, each checked on its own, written in
one transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from storekit import Origin, open_store, snapshot, trust

from store import (
    Applied,
    ChainError,
    Change,
    ChangeApplied,
    Op,
    SignatureError,
    Store,
    UnknownKeyError,
    decode_change,
)

IMAGE = ("spec", "containers", "web", "image")


def create(origin: Origin, target: str) -> Change:
    return origin.change([Op("new", ()), Op("set", IMAGE, "busybox")], target=target)


def edit(origin: Origin, target: str, image: str) -> Change:
    return origin.change([Op("set", IMAGE, image)], target=target)


def store_with(tmp_path: Path, name: str, *origins: Origin) -> Store:
    store = open_store(tmp_path / name, "me")
    for o in origins:
        trust(store, o.node, o.key)
    return store


def test_groups_write_what_separate_applies_write_in_one_commit(tmp_path: Path) -> None:
    a, b = Origin("a"), Origin("b")
    # Both origins edit the same Pod, so the second group folds into what the first folded.
    run_a = [create(a, "Pod/web"), edit(a, "Pod/web", "busybox:1"), create(a, "Pod/db")]
    run_b = [edit(b, "Pod/web", "busybox:2"), edit(b, "Pod/db", "busybox:3")]
    one = store_with(tmp_path, "one", a, b)
    apart = store_with(tmp_path, "apart", a, b)
    commits_before = one._env.info()["last_txnid"]

    outcomes = one.apply_groups([run_a, run_b])

    assert one._env.info()["last_txnid"] == commits_before + 1
    assert [type(o) for o in outcomes] == [Applied, Applied]
    assert [len(o.applied) for o in outcomes if isinstance(o, Applied)] == [3, 2]
    apart.apply_remote([c.envelope for c in run_a])
    apart.apply_remote([c.envelope for c in run_b])
    assert one.state_digest() == apart.state_digest()
    assert one.get("Pod", "web") == apart.get("Pod", "web")
    assert [r.change for r in one.history("Pod", "web")] == [
        r.change for r in apart.history("Pod", "web")
    ]


def test_a_refused_group_writes_nothing_and_the_others_are_applied(tmp_path: Path) -> None:
    good, forged, stranger = Origin("good"), Origin("forged"), Origin("stranger")
    store = store_with(tmp_path, "s", good)
    trust(store, "forged", Ed25519PrivateKey.generate())  # not the key that signs its changes
    forged_run = [create(forged, "Pod/x"), edit(forged, "Pod/x", "evil")]
    gap = Origin("good")  # the same origin's key is not needed: the gap is found first
    gap.seq = 5
    groups = [
        [create(good, "Pod/web")],
        forged_run,
        [create(stranger, "Pod/y")],
        [create(good, "Pod/db")],
        [decode_change(gap.change([Op("new", ())]).envelope)],
    ]

    outcomes = store.apply_groups(groups)

    assert isinstance(outcomes[0], Applied) and isinstance(outcomes[3], Applied)
    assert isinstance(outcomes[1], SignatureError)
    assert "forged:2" in str(outcomes[1]) and "nothing was written" in str(outcomes[1])
    assert isinstance(outcomes[2], UnknownKeyError)
    assert isinstance(outcomes[4], ChainError)
    assert store.version_vector() == {"good": 2}
    assert store.get("Pod", "x") is None and store.get("Pod", "y") is None
    assert store.get("Pod", "db") is not None


def test_only_refused_groups_write_nothing_at_all(tmp_path: Path) -> None:
    forged = Origin("forged")
    store = store_with(tmp_path, "s")  # no key trusted
    before = snapshot(store)

    outcomes = store.apply_groups([[create(forged, "Pod/x")]])

    assert isinstance(outcomes[0], UnknownKeyError)
    assert snapshot(store) == before


def test_watchers_hear_of_every_group_applied(tmp_path: Path) -> None:
    a, b = Origin("a"), Origin("b")
    store = store_with(tmp_path, "s", a, b)

    async def run() -> list[str]:
        watch = store.watch()
        store.apply_groups([[create(a, "Pod/web")], [create(b, "Pod/db")]])
        heard = [await asyncio.wait_for(watch.__anext__(), 1) for _ in range(2)]
        return sorted(str(e.change) for e in heard if isinstance(e, ChangeApplied))

    assert asyncio.run(run()) == ["a:1", "b:1"]


def test_groups_that_interleave_in_time_fold_each_object_once(tmp_path: Path) -> None:
    a, b = Origin("a"), Origin("b")
    b.wall = a.wall  # the two origins write the same Pod turn by turn
    run_a, run_b = [create(a, "Pod/web")], []
    for i in range(3):
        run_b.append(edit(b, "Pod/web", f"b:{i}"))
        run_a.append(edit(a, "Pod/web", f"a:{i}"))
    grouped = store_with(tmp_path, "grouped", a, b)
    apart = store_with(tmp_path, "apart", a, b)

    outcomes = grouped.apply_groups([run_a, run_b])

    assert [o.refolded for o in outcomes if isinstance(o, Applied)] == [0, 0]
    apart.apply_remote([c.envelope for c in run_a])
    assert apart.apply_remote([c.envelope for c in run_b]).refolded == 1  # what it saves
    assert grouped.state_digest() == apart.state_digest()
    assert grouped.get("Pod", "web") == apart.get("Pod", "web")
