"""Placement on a running node: documents and a membership view in, this node's writes out.

The inputs (`edgenode._placement_inputs`) are pure and tested on plain documents; the shell
(`edgenode.placing.NodePlacement`) against a real store, with time given by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgenode._ownership import KIND_RULES
from edgenode._placement import Assignment, PodWants, Write, pair_score
from edgenode._placement_inputs import assignment_of, assignment_ops, node_views, pod_wants
from edgenode.placing import NodePlacement
from edgenode.podspec import stored_pod
from store import Op, Store

GI = 1 << 30


def pod_doc(name: str, **spec: Any) -> dict[str, Any]:
    container = {"image": "busybox", "resources": spec.pop("resources", {})}
    return {
        "kind": "Pod",
        "metadata": {"name": name, "revision": 1, **spec.pop("metadata", {})},
        "spec": {"containers": {"c": container, **spec.pop("more", {})}, **spec},
    }


def node_doc(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "revision": 1, "labels": fields.pop("labels", {})},
        "spec": fields.pop("spec", {}),
        "status": {"phase": "Ready", **fields},
    }


def wants(doc: dict[str, Any]) -> PodWants:
    return pod_wants(doc, stored_pod(doc).spec)


# -- the inputs ---------------------------------------------------------------------------------


def test_pod_wants_sum_declared_resources_and_carry_the_rule_in_force() -> None:
    doc = pod_doc(
        "web",
        resources={"cpu": "250m", "memory": "64Mi"},
        more={"side": {"image": "busybox", "resources": {"cpu": "0.5"}}},
        nodeSelector={"zone": "edge"},
        onNodeLoss={"policy": "reschedule", "lostAfter": "2m", "onReturn": "keep-original"},
    )
    w = wants(doc)
    assert (w.cpu, w.memory, dict(w.selector)) == (750, 64 << 20, {"zone": "edge"})
    assert (w.policy, w.lost_after, w.on_return, w.pinned) == (
        "reschedule",
        120.0,
        "keep-original",
        None,
    )


def test_a_pinned_pod_without_a_node_loss_policy_is_best_effort() -> None:
    w = wants(pod_doc("cam", node="n2"))
    assert (w.pinned, w.policy) == ("n2", "best-effort")


def test_a_deployment_pod_names_its_owner() -> None:
    labels = {"edgenode.io/deployment": "web", "edgenode.io/version": "v2"}
    assert wants(pod_doc("web-v2-0", metadata={"labels": labels})).owner == "web@v2"


def test_assignment_is_read_from_the_document_and_a_missing_one_is_none() -> None:
    doc = pod_doc("web")
    assert assignment_of(doc) is None
    doc["assignment"] = {"node": "n2", "at": 12.5, "previous": "n1"}
    assert assignment_of(doc) == Assignment("n2", 12.5, "n1")
    assert wants(doc).assignment == Assignment("n2", 12.5, "n1")


def test_node_views_take_labels_capacity_and_cordon_from_node_objects() -> None:
    nodes = [
        node_doc("n1", labels={"zone": "a"}, capacity={"cpu": "2", "memory": "4Gi"}),
        node_doc("n2", spec={"unschedulable": True}),
    ]
    members = {"n2": ("suspect", 40.0)}
    [n1, n2] = node_views(nodes, members, me="n1", since=5.0)
    assert (n1.state, n1.since, dict(n1.labels), n1.cpu, n1.memory) == (
        "alive",
        5.0,
        {"zone": "a"},
        2000,
        4 * GI,
    )
    assert (n2.state, n2.since, n2.cpu, n2.schedulable) == ("suspect", 40.0, None, False)


def test_a_known_node_membership_has_not_reported_is_dead_since_this_node_started() -> None:
    views = node_views([node_doc("n1"), node_doc("n9")], {"n3": ("alive", 1.0)}, me="n1", since=7.0)
    by_name = {v.name: v for v in views}
    assert set(by_name) == {"n1", "n3", "n9"}  # members not yet published are in the view too
    assert (by_name["n9"].state, by_name["n9"].since) == ("dead", 7.0)
    assert by_name["n3"].state == "alive"


def test_an_unreadable_capacity_is_no_declared_limit() -> None:
    [view] = node_views([node_doc("n1", capacity={"cpu": "lots"})], {}, me="n1", since=0.0)
    assert view.cpu is None


def test_assignment_ops_write_only_the_fields_that_change() -> None:
    move = Write("web", "n2", "move", Assignment("n2", 30.0, "n1"), "")
    assert assignment_ops(move, Assignment("n1", 1.0)) == [
        Op("set", ("assignment", "node"), "n2"),
        Op("set", ("assignment", "at"), 30.0),
        Op("set", ("assignment", "previous"), "n1"),
    ]
    settle = Write("web", "n2", "settle", Assignment("n2", 30.0), "")
    assert assignment_ops(settle, Assignment("n2", 30.0, "n1")) == [
        Op("del", ("assignment", "previous"))
    ]
    release = Write("web", "n1", "unassign", None, "")
    assert assignment_ops(release, Assignment("n1", 1.0)) == [Op("del", ("assignment",))]
    assert assignment_ops(release, None) == []


# -- the shell, on a real store -------------------------------------------------------------


def open_node(path: Path, name: str) -> Store:
    return Store(
        path,
        node_id=name,
        signing_key=Ed25519PrivateKey.generate(),
        rules=KIND_RULES,
        node_managers=[f"node:{name}", "placement", "user"],
    )


def create(store: Store, name: str, **spec: Any) -> None:
    doc = pod_doc(name, **spec)
    del doc["metadata"]["revision"]
    store.put_document("Pod", name, doc)


def test_a_lone_node_assigns_itself_every_pod_that_fits_in_one_round(tmp_path: Path) -> None:
    store = open_node(tmp_path / "s", "n1")
    for i in range(5):
        create(store, f"p{i}")
    create(store, "elsewhere", node="n7")
    placement = NodePlacement(store, started_at=0.0)
    outcome = placement.run({}, now=100.0)
    assert outcome.written == [f"p{i}" for i in range(5)]
    assert {store.get("Pod", f"p{i}")["assignment"]["node"] for i in range(5)} == {"n1"}  # type: ignore[index]
    last = store.history("Pod", "p0")[-1]
    assert (last.manager, last.change.origin) == ("placement", "n1")
    wait = placement.waiting("elsewhere")
    assert wait is not None and wait.reason == "no-fit" and "n7" in wait.message
    assert placement.run({}, now=101.0).written == []  # nothing to do twice


def test_a_node_takes_over_a_lost_nodes_pod_after_lost_after_with_a_majority(
    tmp_path: Path,
) -> None:
    store = open_node(tmp_path / "s", "n1")
    # A pod that prefers n1 to n2, so n1 is the one to take it (the other would be n2's share).
    web = next(
        f"web-{i}"
        for i in range(100)
        if pair_score(f"web-{i}", "n1") < pair_score(f"web-{i}", "n2")
    )
    create(store, web, onNodeLoss={"policy": "reschedule", "lostAfter": "10s"})
    create(store, "cam", onNodeLoss={"policy": "best-effort"})
    for pod in (web, "cam"):
        store.commit("Pod", pod, [Op("set", ("assignment", "node"), "n3")], manager="placement")
    placement = NodePlacement(store, started_at=0.0)
    assert placement.run({"n2": ("alive", 0.0), "n3": ("alive", 0.0)}, now=1.0).written == []
    members = {"n2": ("alive", 0.0), "n3": ("dead", 50.0)}
    assert placement.run(members, now=55.0).written == []
    assert placement.last is not None and placement.last.next_wake == 60.0
    assert placement.run(members, now=61.0).written == [web]
    doc = store.get("Pod", web)
    assert doc is not None and doc["assignment"] == {"node": "n1", "at": 61.0, "previous": "n3"}
    cam = placement.waiting("cam")
    assert cam is not None and cam.reason == "best-effort"


def test_a_cut_off_node_keeps_its_pods_and_takes_no_others(tmp_path: Path) -> None:
    store = open_node(tmp_path / "s", "n1")
    create(store, "theirs", onNodeLoss={"policy": "reschedule", "lostAfter": "0s"})
    store.commit("Pod", "theirs", [Op("set", ("assignment", "node"), "n2")], manager="placement")
    members = {"n2": ("dead", 0.0), "n3": ("dead", 0.0)}
    placement = NodePlacement(store, started_at=0.0)
    assert placement.run(members, now=100.0).written == []
    wait = placement.waiting("theirs")
    assert wait is not None and wait.reason == "no-majority"
    anyway = NodePlacement(store, started_at=0.0, majority=False)
    assert anyway.run(members, now=100.0).written == ["theirs"]


def test_a_pod_whose_stored_spec_does_not_parse_is_left_out_and_said_why(
    tmp_path: Path,
) -> None:
    store = open_node(tmp_path / "s", "n1")
    store.commit(
        "Pod",
        "odd",
        [Op("new", ()), Op("set", ("spec", "containers", "c", "image"), 7)],
        manager="user",
    )
    placement = NodePlacement(store, started_at=0.0)
    assert placement.run({}, now=1.0).written == []
    assert "odd" in placement.unparsable


def test_regaining_a_majority_restarts_the_loss_clock_of_nodes_still_held_dead(
    tmp_path: Path,
) -> None:
    store = open_node(tmp_path / "s", "n1")
    create(store, "web", onNodeLoss={"policy": "reschedule", "lostAfter": "5s"})
    store.commit("Pod", "web", [Op("set", ("assignment", "node"), "n4")], manager="placement")
    placement = NodePlacement(store, started_at=0.0)
    cut_off = {"n2": ("dead", 10.0), "n3": ("dead", 10.0), "n4": ("dead", 10.0)}
    assert placement.run(cut_off, now=50.0).written == []  # no majority
    back = {"n2": ("alive", 60.0), "n3": ("alive", 60.0), "n4": ("dead", 10.0)}
    assert placement.run(back, now=60.0).written == []
    assert placement.majority_since == 60.0
    wait = placement.waiting("web")
    assert wait is not None and (wait.reason, wait.until) == ("lost-node", 65.0)
