"""Everything is versioned: history, diff, rollback, deletes, conflicts and watch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from storekit import Origin, open_store, trust

from store import (
    ChangeApplied,
    Hlc,
    InvalidChangeError,
    NotFoundError,
    Op,
    Store,
    WatchOverflowed,
)

IMAGE = ("spec", "containers", "web", "image")


def pod(image: str, **env: str) -> dict[str, object]:
    web: dict[str, object] = {"image": image}
    if env:
        web["env"] = env
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": {"web": web}}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "s", "n1")


def test_history_lists_every_revision_with_author_manager_time_and_fields(store: Store) -> None:
    store.put_document("Pod", "web", pod("busybox:1", A="1"))
    store.put_document("Pod", "web", pod("busybox:2", A="1"))
    store.put_document("Pod", "web", pod("busybox:2"))
    revs = store.history("Pod", "web")
    assert [r.revision for r in revs] == [1, 2, 3]
    assert revs[0].created and revs[0].author == "n1" and revs[0].manager == "user"
    assert revs[1].fields == ("spec.containers.web.image",)
    assert revs[2].fields == ("spec.containers.web.env.A",)
    assert revs[0].time_ms <= revs[1].time_ms <= revs[2].time_ms
    doc = store.get("Pod", "web")
    assert doc is not None and doc["metadata"]["revision"] == 3


def test_applying_an_unchanged_document_writes_nothing(store: Store) -> None:
    assert store.put_document("Pod", "web", pod("b")) is not None
    assert store.put_document("Pod", "web", pod("b")) is None
    assert len(store.history("Pod", "web")) == 1


def test_diff_compares_any_two_revisions_field_by_field(store: Store) -> None:
    store.put_document("Pod", "web", pod("busybox:1", A="1"))
    store.put_document("Pod", "web", pod("busybox:2", B="2"))
    diff = store.diff("Pod", "web", 1, 2)
    assert [(d.path, d.before, d.after, d.change) for d in diff] == [
        ("spec.containers.web.env.A", "1", None, "removed"),
        ("spec.containers.web.env.B", None, "2", "added"),
        ("spec.containers.web.image", "busybox:1", "busybox:2", "changed"),
    ]
    assert store.diff("Pod", "web", 2) == []
    with pytest.raises(NotFoundError, match=r"has revisions 1\.\.2, not 7"):
        store.diff("Pod", "web", 1, 7)


def test_rollback_restores_fields_as_a_new_revision(store: Store) -> None:
    store.put_document("Pod", "web", pod("busybox:1", A="1"))
    store.commit("Pod", "web", [Op("set", ("assignment", "node"), "n1")], manager="placement")
    store.put_document("Pod", "web", pod("busybox:2"))
    result = store.rollback("Pod", "web", 1)
    assert result.committed is not None and result.committed.revision == 4
    doc = store.get("Pod", "web")
    assert doc is not None
    assert doc["spec"]["containers"]["web"] == {"image": "busybox:1", "env": {"A": "1"}}
    # Fields owned by others (the assignment) are not rewound by a user's rollback.
    assert doc["assignment"] == {"node": "n1"}
    assert len(store.history("Pod", "web")) == 4
    assert store.diff("Pod", "web", 1, 4)[0].path == "assignment.node"


def test_deleting_leaves_a_tombstone_and_recreating_continues_history(store: Store) -> None:
    store.put_document("Pod", "web", pod("busybox"))
    store.delete("Pod", "web")
    assert store.get("Pod", "web") is None
    assert store.list_objects("Pod") == []
    state = store.get_state("Pod", "web")
    assert state is not None and not state.exists and state.fields == {}
    assert IMAGE in state.writers  # the tombstone
    with pytest.raises(NotFoundError, match="Pod/web does not exist"):
        store.commit("Pod", "web", [Op("set", IMAGE, "x")], manager="user")
    store.put_document("Pod", "web", pod("busybox:2"))
    revs = store.history("Pod", "web")
    assert [(r.created, r.deleted) for r in revs] == [(True, False), (False, True), (True, False)]
    assert store.rollback("Pod", "web", 2).committed is not None
    assert store.get("Pod", "web") is None


def test_a_late_delete_is_not_undone_by_an_older_concurrent_edit(store: Store) -> None:
    a, b = Origin("a"), Origin("b")
    for o in (a, b):
        trust(store, o.node, o.key)
    create = a.change([Op("new", ()), Op("set", IMAGE, "v1")], hlc=Hlc(100, 0))
    delete = a.change([Op("del", ())], hlc=Hlc(300, 0), seen=[((), create.id), (IMAGE, create.id)])
    edit = b.change([Op("set", IMAGE, "v2")], hlc=Hlc(200, 0), seen=[(IMAGE, create.id)])
    store.apply_remote([create.envelope, delete.envelope])
    store.apply_remote([edit.envelope])  # arrives late, older than the delete
    assert store.get("Pod", "web") is None
    assert [r.change for r in store.history("Pod", "web")] == [create.id, edit.id, delete.id]


def test_concurrent_edits_of_one_field_are_marked_as_conflicts_in_history(store: Store) -> None:
    a, b = Origin("a"), Origin("b")
    for o in (a, b):
        trust(store, o.node, o.key)
    create = a.change([Op("new", ()), Op("set", IMAGE, "v1")], hlc=Hlc(100, 0))
    # Both edit the image having seen only the create: concurrent.
    ea = a.change([Op("set", IMAGE, "from-a")], hlc=Hlc(200, 0), seen=[(IMAGE, create.id)])
    eb = b.change([Op("set", IMAGE, "from-b")], hlc=Hlc(250, 0), seen=[(IMAGE, create.id)])
    # A later edit that saw b's value is informed, not a conflict.
    ec = a.change([Op("set", IMAGE, "after")], hlc=Hlc(300, 0), seen=[(IMAGE, eb.id)])
    store.apply_remote([create.envelope, ea.envelope, eb.envelope, ec.envelope])
    revs = store.history("Pod", "web")
    assert revs[2].conflicts == ("spec.containers.web.image (over a:2, revision 2)",)
    assert revs[1].overwritten == ("spec.containers.web.image (by b:1, revision 3)",)
    assert revs[3].conflicts == ()
    doc = store.get("Pod", "web")
    assert doc is not None and doc["spec"]["containers"]["web"]["image"] == "after"


def test_a_late_older_change_takes_its_place_in_history(store: Store) -> None:
    a, b = Origin("a"), Origin("b")
    for o in (a, b):
        trust(store, o.node, o.key)
    create = a.change([Op("new", ()), Op("set", IMAGE, "v1")], hlc=Hlc(100, 0))
    later = a.change([Op("set", IMAGE, "v3")], hlc=Hlc(300, 0), seen=[(IMAGE, create.id)])
    store.apply_remote([create.envelope, later.envelope])
    older = b.change([Op("set", ("spec", "x"), 1)], hlc=Hlc(200, 0))
    assert store.apply_remote([older.envelope]).refolded == 1
    assert [r.change for r in store.history("Pod", "web")] == [create.id, older.id, later.id]
    state = store.get_state("Pod", "web")
    assert state is not None and state.revision == 3


def test_bad_local_edits_are_refused_with_nothing_written(store: Store) -> None:
    store.put_document("Pod", "web", pod("b"))
    cases: list[tuple[list[list[Any]], str]] = [
        ([["set", ["spec"], {"nested": "map"}]], "a field value is a string"),
        ([["frob", ["spec"]]], "unknown op 'frob'"),
        ([["set", [], 1]], "needs a field path"),
        ([], "needs at least one op"),
        ([["set", ["spec", "ratio"], float("nan")]], "a number value is finite, got nan"),
        ([["set", ["spec", "n"], [1, 2**64]]], r"an integer value is within -2\^63..2\^64-1"),
        ([["set", ["spec", "n"], -(2**63) - 1]], r"an integer value is within -2\^63"),
        ([["set", ["spec", "note"], "a\ud800"]], "a string value is Unicode text"),
        ([["set", ["spec", "\udfff"], 1]], "a path key is Unicode text"),
        ([["share", ["spec"], ["ops\ud800"]]], "a manager is Unicode text"),
    ]
    for ops, message in cases:
        with pytest.raises(InvalidChangeError, match=message):
            store.commit("Pod", "web", ops, manager="user")
    with pytest.raises(InvalidChangeError, match="unknown kind 'Vm'"):
        store.put_document("Vm", "x", {"spec": {"a": 1}})
    assert len(store.history("Pod", "web")) == 1


def test_a_negative_zero_is_committed_as_zero_so_peers_can_decode_the_change(
    store: Store, tmp_path: Path
) -> None:
    # DAG-CBOR forbids -0.0: a change carrying it would be refused by every peer, and every
    # later change of this node with it (a gap in its chain).
    store.commit("Pod", "z", [["new", []], ["set", ["spec", "x"], [-0.0, 1.5]]], manager="user")
    store.commit("Pod", "z", [["set", ["spec", "y"], -0.0]], manager="user")
    peer = open_store(tmp_path / "peer", "n2")
    trust(peer, "n1", store._key)
    peer.apply_remote(store.missing({}).changes)
    state = peer.get_state("Pod", "z")
    assert state is not None and state.fields[("spec", "y")] == 0.0
    assert str(state.fields[("spec", "y")]) == "0.0" and state.fields[("spec", "x")] == [0.0, 1.5]
    assert store.state_at("Pod", "z", 2).fields == state.fields


def test_the_version_vector_and_missing_changes_let_a_peer_catch_up(
    store: Store, tmp_path: Path
) -> None:
    for i in range(5):
        store.put_document("Pod", f"p{i}", pod("b"))
    assert store.version_vector() == {"n1": 5}
    peer = open_store(tmp_path / "peer", "n2")
    trust(peer, "n1", store._key)
    first = store.missing(peer.version_vector(), max_bytes=1)
    assert len(first.changes) == 1 and not first.complete
    peer.apply_remote(first.changes)
    rest = store.missing(peer.version_vector())
    assert rest.complete and len(rest.changes) == 4
    peer.apply_remote(rest.changes)
    assert peer.version_vector() == store.version_vector()
    assert store.missing(peer.version_vector()).changes == []


def test_watch_notifies_applied_changes_and_reports_overflow(store: Store) -> None:
    async def main() -> None:
        with store.watch(kinds=["Pod"], name="web") as w, store.watch(maxsize=2) as small:
            store.put_document("Pod", "web", pod("a"))
            store.put_document("Pod", "other", pod("a"))
            store.put_document("Pod", "web", pod("b"))
            first, second = await w.get(1), await w.get(1)
            assert isinstance(first, ChangeApplied) and first.revision == 1 and first.local
            assert isinstance(second, ChangeApplied) and second.revision == 2
            events = [await small.get(1) for _ in range(1)]
            assert events == [WatchOverflowed(dropped=3)]
            store.put_document("Pod", "web", pod("c"))
            after = await small.get(1)
            assert isinstance(after, ChangeApplied) and after.revision == 3

    asyncio.run(main())


def test_the_clock_survives_a_restart_and_never_goes_back(tmp_path: Path) -> None:
    wall = [5_000_000]
    s = open_store(tmp_path / "s", "n1", clock=lambda: wall[0])
    key = s._key
    c1 = s.put_document("Pod", "web", pod("a"))
    s.close()
    wall[0] -= 60_000  # the wall clock jumps back a minute
    s = open_store(tmp_path / "s", "n1", key=key, clock=lambda: wall[0])
    c2 = s.put_document("Pod", "web", pod("b"))
    assert c1 is not None and c2 is not None and c2.hlc > c1.hlc
