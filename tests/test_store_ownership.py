"""Every field has one owner: refused writes name the field and its owner; sharing and
transferring are changes in history; peers' writes are judged the same way in the fold."""

from __future__ import annotations

from pathlib import Path

import pytest
from storekit import NOW_MS, Origin, open_store, trust

from store import Hlc, NotAuthorizedError, Op, OwnershipError, Store

IMAGE = ("spec", "containers", "web", "image")
POD = {"spec": {"containers": {"web": {"image": "busybox"}}}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path / "s", "n1")
    s.put_document("Pod", "web", POD)
    return s


def test_a_write_to_a_field_the_manager_does_not_own_is_refused_naming_path_and_owner(
    store: Store,
) -> None:
    with pytest.raises(OwnershipError) as info:
        store.commit("Pod", "web", [Op("set", IMAGE, "evil")], manager="placement")
    e = info.value
    assert (e.path, e.owner, e.manager) == ("spec.containers.web.image", "user", "placement")
    assert "spec.containers.web.image is owned by user, not by placement" in str(e)
    assert "nothing was written" in str(e)
    assert len(store.history("Pod", "web")) == 1


def test_status_belongs_to_the_node_the_pod_is_assigned_to(store: Store) -> None:
    with pytest.raises(OwnershipError, match=r"nobody while assignment\.node is unset"):
        store.commit("Pod", "web", [Op("set", ("status", "phase"), "Running")], manager="node:n1")
    store.commit("Pod", "web", [Op("set", ("assignment", "node"), "n1")], manager="placement")
    store.commit("Pod", "web", [Op("set", ("status", "phase"), "Running")], manager="node:n1")
    doc = store.get("Pod", "web")
    assert doc is not None and doc["status"] == {"phase": "Running"}


def test_an_apply_leaves_fields_owned_by_other_managers_alone(store: Store) -> None:
    store.commit("Pod", "web", [Op("set", ("assignment", "node"), "n1")], manager="placement")
    store.put_document("Pod", "web", {"spec": {"containers": {"web": {"image": "b:2"}}}})
    doc = store.get("Pod", "web")
    assert doc is not None and doc["assignment"] == {"node": "n1"}


def test_a_key_may_write_only_as_the_managers_it_is_registered_for(tmp_path: Path) -> None:
    edge = open_store(tmp_path / "e", "edge", node_managers=["node:edge"])
    with pytest.raises(NotAuthorizedError, match="edge may not write as manager 'user'"):
        edge.put_document("Pod", "web", POD)
    assert edge.version_vector() == {}


def test_sharing_a_field_lets_another_manager_write_it_and_is_in_history(store: Store) -> None:
    replicas = ("spec", "containers", "web", "env", "REPLICAS")
    with pytest.raises(OwnershipError):
        store.commit("Pod", "web", [Op("set", replicas, "3")], manager="placement")
    store.commit(
        "Pod", "web", [Op("share", ("spec", "containers"), ("placement",))], manager="user"
    )
    store.commit("Pod", "web", [Op("set", replicas, "3")], manager="placement")
    # A manager shared with may write but not re-share.
    with pytest.raises(OwnershipError):
        store.commit("Pod", "web", [Op("share", ("spec",), ("node:n1",))], manager="placement")
    # Revoking the share (an empty list) takes the right away again.
    store.commit("Pod", "web", [Op("share", ("spec", "containers"), ())], manager="user")
    with pytest.raises(OwnershipError):
        store.commit("Pod", "web", [Op("set", replicas, "4")], manager="placement")
    fields = [r.fields for r in store.history("Pod", "web")]
    assert ("spec.containers",) in fields


def test_transferring_ownership_moves_the_right_to_write(store: Store) -> None:
    store.commit("Pod", "web", [Op("own", ("spec", "containers"), "placement")], manager="user")
    store.commit("Pod", "web", [Op("set", IMAGE, "by-placement")], manager="placement")
    with pytest.raises(OwnershipError, match="owned by placement, not by user"):
        store.commit("Pod", "web", [Op("set", IMAGE, "by-user")], manager="user")
    revs = store.history("Pod", "web")
    assert revs[1].manager == "user" and revs[1].fields == ("spec.containers",)


def test_a_peers_write_to_a_field_it_does_not_own_is_refused_in_history_with_no_effect(
    store: Store,
) -> None:
    peer = Origin("n2")
    trust(store, "n2", peer.key, ["node:n2"])
    seen = [(IMAGE, store.history("Pod", "web")[0].change)]
    store.apply_remote(
        [
            peer.change(
                [Op("set", IMAGE, "evil")], manager="node:n2", seen=seen, hlc=Hlc(NOW_MS + 1, 0)
            ).envelope
        ]
    )
    doc = store.get("Pod", "web")
    assert doc is not None and doc["spec"]["containers"]["web"]["image"] == "busybox"
    last = store.history("Pod", "web")[-1]
    assert last.refused == ("spec.containers.web.image (owned by user)",)
    # The change is kept (its origin's chain stays gapless), so the peer's next change applies.
    assert store.version_vector()["n2"] == 1


def test_a_node_object_belongs_to_the_node_of_that_name(tmp_path: Path) -> None:
    n1 = open_store(tmp_path / "n1", "n1")
    status = [Op("new", ()), Op("set", ("status", "phase"), "Ready")]
    n1.commit("Node", "n1", status, manager="node:n1")
    with pytest.raises(OwnershipError, match=r"owned by node:n2, not by node:n1"):
        n1.commit("Node", "n2", status, manager="node:n1")
    doc = n1.get("Node", "n1")
    assert doc is not None and doc["status"] == {"phase": "Ready"}
