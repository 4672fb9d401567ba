"""Leaderless placement (`edgenode._placement`): each rule by name, then its properties.

Time is stepped by hand: every call gives `now`. The plans are asserted on, never side effects.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgenode._placement import (
    Assign,
    Assignment,
    Move,
    NodeView,
    PlacementError,
    Plan,
    PodWants,
    Settle,
    Unassign,
    apply,
    holds_majority,
    my_actions,
    pair_score,
    place,
    writes,
)

GIB = 1 << 30


def node(name: str, state: str = "alive", since: float = 0.0, **kw: Any) -> NodeView:
    return NodeView(name, state, since, **kw)  # type: ignore[arg-type]


def on(name: str, at: float = 0.0, previous: str | None = None) -> Assignment:
    return Assignment(name, at, previous)


def three(**kw: Any) -> list[NodeView]:
    return [node(n, **kw) for n in ("n1", "n2", "n3")]


def where(pods: Iterable[PodWants]) -> dict[str, str | None]:
    return {p.name: p.assignment.node if p.assignment else None for p in pods}


# -- placing new pods -----------------------------------------------------------------------


def test_unassigned_pod_is_assigned_to_an_alive_node_written_by_that_node() -> None:
    plan = place([PodWants("web")], three(), now=5.0)
    [decision] = plan.assign
    assert decision.pod == "web" and decision.node in {"n1", "n2", "n3"}
    [write] = my_actions(plan, decision.node)
    assert write.kind == "assign" and write.assignment == Assignment(decision.node, 5.0)
    assert all(my_actions(plan, n) == [] for n in {"n1", "n2", "n3"} - {decision.node})


def test_new_pods_never_go_to_suspect_dead_or_left_nodes() -> None:
    nodes = [node("s", "suspect"), node("d", "dead"), node("l", "left"), node("ok")]
    plan = place([PodWants(f"p{i}") for i in range(20)], nodes, now=0.0)
    assert {a.node for a in plan.assign} == {"ok"}


def test_pod_is_placed_only_where_its_selector_matches() -> None:
    nodes = [node("a", labels={"zone": "a"}), node("b", labels={"zone": "b"})]
    pods = [PodWants(f"p{i}", selector={"zone": "b"}) for i in range(10)]
    assert {a.node for a in place(pods, nodes, now=0.0).assign} == {"b"}


def test_pinned_pod_goes_only_to_its_node() -> None:
    pods = [PodWants(f"p{i}", pinned="n2") for i in range(10)]
    assert {a.node for a in place(pods, three(), now=0.0).assign} == {"n2"}


def test_pinned_pod_waits_when_its_node_is_not_in_the_view() -> None:
    [wait] = place([PodWants("p", pinned="n9")], three(), now=0.0).waiting
    assert (
        wait.reason == "no-fit" and "n9" in wait.message and "not in the membership" in wait.message
    )
    assert wait.nodes == {n: "the pod is pinned to n9" for n in ("n1", "n2", "n3")}


def test_resource_fit_skips_full_nodes_and_a_waiting_pod_names_each_nodes_reason() -> None:
    nodes = [
        node("big", cpu=1000, memory=GIB),
        node("small", cpu=100, memory=GIB),
        node("tiny", cpu=1000, memory=1),
        node("gone", "dead", 3.0),
    ]
    pods = [PodWants("a", cpu=600, memory=10), PodWants("b", cpu=600, memory=10)]
    plan = place(pods, nodes, now=0.0)
    assert plan.assign == (Assign("a", "big", "placed on big"),)
    [wait] = plan.waiting
    assert (wait.pod, wait.reason, wait.node) == ("b", "no-fit", None)
    assert wait.message == "none of 4 nodes fits"
    assert wait.nodes == {
        "big": "cpu 600m wanted, 400m free of 1000m",
        "gone": "dead since 3 (only alive nodes take pods)",
        "small": "cpu 600m wanted, 100m free of 100m",
        "tiny": "memory 10 B wanted, 1 B free of 1 B",
    }


def test_memory_fit_is_checked_like_cpu() -> None:
    plan = place([PodWants("p", memory=2 * GIB)], [node("n", memory=GIB)], now=0.0)
    assert plan.waiting[0].nodes == {"n": f"memory {2 * GIB} B wanted, {GIB} B free of {GIB} B"}


def test_node_without_declared_capacity_has_no_limit() -> None:
    pods = [PodWants(f"p{i}", cpu=4000, memory=64 * GIB) for i in range(10)]
    assert len(place(pods, [node("n")], now=0.0).assign) == 10


def test_capacity_counts_the_pods_already_assigned() -> None:
    old = PodWants("old", cpu=800, assignment=on("n1"))
    plan = place([old, PodWants("new", cpu=300)], [node("n1", cpu=1000), node("n2")], now=0.0)
    assert plan.keep == ("old",) and plan.assign == (Assign("new", "n2", "placed on n2"),)


# -- stickiness -----------------------------------------------------------------------------


def test_pod_on_an_alive_node_is_kept_even_when_another_node_scores_better() -> None:
    nodes = three()
    best = min(("n1", "n2", "n3"), key=lambda n: (pair_score("web", n), n))
    other = next(n for n in ("n1", "n2", "n3") if n != best)
    plan = place([PodWants("web", assignment=on(other))], nodes, now=100.0)
    assert plan.keep == ("web",) and writes(plan) == []


def test_pod_on_a_suspect_node_is_kept_suspect_is_not_dead() -> None:
    pod = PodWants("web", lost_after=0.0, assignment=on("n1"))
    plan = place([pod], [node("n1", "suspect", 0.0), node("n2")], now=1000.0)
    assert plan.keep == ("web",) and plan.waiting == ()


def test_kept_pods_are_never_evicted_when_capacity_shrinks() -> None:
    pods = [PodWants(f"p{i}", cpu=500, assignment=on("n1")) for i in range(4)]
    plan = place([*pods, PodWants("new", cpu=1)], [node("n1", cpu=1000)], now=0.0)
    assert plan.keep == ("p0", "p1", "p2", "p3")
    assert plan.waiting[0].pod == "new"


# -- node loss ------------------------------------------------------------------------------


def test_reschedule_pod_waits_lost_after_then_moves_and_records_its_original() -> None:
    pod = PodWants("web", lost_after=30.0, assignment=on("n1"))
    nodes = [node("n1", "dead", since=100.0), node("n2")]
    early = place([pod], nodes, now=129.9)
    [wait] = early.waiting
    assert (wait.reason, wait.node, wait.until) == ("lost-node", "n1", 130.0)
    assert early.next_wake == 130.0 and writes(early) == []
    later = place([pod], nodes, now=130.0)
    [move] = later.move
    assert (move.source, move.target, move.cause, move.previous) == ("n1", "n2", "node-lost", "n1")
    assert [w.assignment for w in my_actions(later, "n2")] == [Assignment("n2", 130.0, "n1")]
    assert my_actions(later, "n1") == []


def test_left_node_is_lost_like_a_dead_one() -> None:
    pod = PodWants("web", lost_after=10.0, assignment=on("n1"))
    plan = place([pod], [node("n1", "left", since=0.0), node("n2")], now=10.0)
    assert [m.target for m in plan.move] == ["n2"]


def test_pod_assigned_to_a_node_after_its_death_is_lost_only_since_the_assignment() -> None:
    # n1 came back and moved its keep-original pod home at t=100; n2 still holds n1 dead since
    # t=0 and must not take the pod again at once (it would flap until n2 sees n1 alive).
    pod = PodWants("db", lost_after=10.0, on_return="keep-original", assignment=on("n1", at=100.0))
    nodes = [node("n1", "dead", since=0.0), node("n2")]
    [wait] = place([pod], nodes, now=105.0).waiting
    assert (wait.reason, wait.until) == ("lost-node", 110.0)
    assert [m.target for m in place([pod], nodes, now=110.0).move] == ["n2"]


def test_pod_on_a_node_gone_from_the_view_is_lost_since_its_assignment() -> None:
    pod = PodWants("web", lost_after=30.0, assignment=on("ghost", at=50.0))
    assert place([pod], [node("n2")], now=79.0).waiting[0].until == 80.0
    assert place([pod], [node("n2")], now=80.0).move[0].target == "n2"


def test_best_effort_pod_never_moves_and_waits_for_its_node() -> None:
    pod = PodWants("cam", policy="best-effort", lost_after=0.0, assignment=on("n1"))
    plan = place([pod], [node("n1", "dead", since=0.0), node("n2")], now=1e9)
    [wait] = plan.waiting
    assert (wait.reason, wait.node, wait.until) == ("best-effort", "n1", None)
    assert writes(plan) == [] and plan.next_wake is None
    back = place([pod], [node("n1"), node("n2")], now=1e9 + 1)
    assert back.keep == ("cam",)


def test_lost_pod_without_a_fitting_node_stays_assigned_and_waits() -> None:
    pod = PodWants("db", cpu=900, lost_after=0.0, assignment=on("n1"))
    plan = place([pod], [node("n1", "dead"), node("n2", cpu=500)], now=1.0)
    [wait] = plan.waiting
    assert (wait.reason, wait.node) == ("no-fit", "n1") and writes(plan) == []


def test_pinned_pod_on_a_lost_node_waits_as_no_other_node_may_take_it() -> None:
    pod = PodWants("p", pinned="n1", lost_after=0.0, assignment=on("n1"))
    plan = place([pod], [node("n1", "dead"), node("n2")], now=5.0)
    assert plan.waiting[0].node == "n1" and plan.waiting[0].nodes["n2"] == "the pod is pinned to n1"


def test_chain_of_losses_keeps_the_first_original() -> None:
    pod = PodWants("web", lost_after=0.0, assignment=on("n2", previous="n1"))
    plan = place([pod], [node("n1", "dead"), node("n2", "dead"), node("n3")], now=1.0)
    assert plan.move[0].previous == "n1" and plan.move[0].target == "n3"


# -- changed spec or labels -----------------------------------------------------------------


def test_changed_selector_moves_the_pod_off_its_alive_node_written_by_the_taker() -> None:
    nodes = [node("a", labels={"zone": "a"}), node("b", labels={"zone": "b"})]
    pod = PodWants("p", selector={"zone": "b"}, assignment=on("a"))
    plan = place([pod], nodes, now=7.0)
    assert plan.move == (
        Move(
            "p",
            "a",
            "b",
            "mismatch",
            None,
            "its node a no longer matches its pin or selector; moved to b",
        ),
    )
    assert [w.writer for w in writes(plan)] == ["b"]


def test_node_labels_that_stop_matching_are_a_cause_too() -> None:
    pod = PodWants("p", selector={"gpu": "yes"}, assignment=on("a"))
    plan = place([pod], [node("a", labels={"gpu": "no"}), node("b", labels={"gpu": "yes"})], now=0)
    assert plan.move[0].target == "b"


def test_changed_selector_without_a_fitting_node_releases_the_pod_written_by_its_node() -> None:
    pod = PodWants("p", selector={"zone": "c"}, assignment=on("a"))
    plan = place([pod], [node("a", labels={"zone": "a"})], now=0.0)
    assert [u.node for u in plan.unassign] == ["a"]
    assert plan.decisions() == {"p": "unassign"} and plan.waiting[0].node is None
    assert [(w.kind, w.assignment) for w in my_actions(plan, "a")] == [("unassign", None)]


def test_changed_pin_moves_the_pod_to_its_new_node() -> None:
    plan = place([PodWants("p", pinned="n3", assignment=on("n1"))], three(), now=0.0)
    assert [(m.source, m.target, m.cause) for m in plan.move] == [("n1", "n3", "mismatch")]


# -- a lost node returns --------------------------------------------------------------------


def test_keep_replacement_on_return_forgets_the_original_written_by_the_replacement() -> None:
    pod = PodWants("web", on_return="keep-replacement", assignment=on("n2", 40.0, previous="n1"))
    plan = place([pod], [node("n1"), node("n2")], now=90.0)
    [settle] = plan.settle
    assert (settle.node, settle.dropped) == ("n2", "n1")
    assert my_actions(plan, "n1") == []  # its copy stops: the assignment is not n1's
    assert [w.assignment for w in my_actions(plan, "n2")] == [Assignment("n2", 40.0)]


def test_keep_original_on_return_moves_the_pod_back_written_by_the_original() -> None:
    pod = PodWants("web", on_return="keep-original", assignment=on("n2", 40.0, previous="n1"))
    plan = place([pod], [node("n1"), node("n2")], now=90.0)
    [move] = plan.move
    assert (move.source, move.target, move.cause, move.previous) == (
        "n2",
        "n1",
        "original-returned",
        None,
    )
    assert [w.assignment for w in my_actions(plan, "n1")] == [Assignment("n1", 90.0)]
    assert my_actions(plan, "n2") == []


def test_keep_original_stays_on_the_replacement_while_the_original_is_full() -> None:
    full = PodWants("hog", cpu=1000, assignment=on("n1"))
    pod = PodWants("web", cpu=500, on_return="keep-original", assignment=on("n2", previous="n1"))
    plan = place([full, pod], [node("n1", cpu=1000), node("n2")], now=9.0)
    assert plan.keep == ("hog", "web") and writes(plan) == []


def test_pods_going_back_count_the_room_a_later_one_frees_on_their_original() -> None:
    # Two returned nodes swapped pods: "a" on n1 came from n2, "b" on n2 came from n1. n2
    # holds more than its capacity (it shrank, or two takers raced). Only once "b" leaves n2
    # does "a" fit there: it goes back in the same plan, not in the next one.
    a = PodWants("a", cpu=100, on_return="keep-original", assignment=on("n1", previous="n2"))
    b = PodWants("b", cpu=700, on_return="keep-original", assignment=on("n2", previous="n1"))
    nodes = [node("n1"), node("n2", cpu=500)]
    plan = place([a, b], nodes, now=0.0)
    assert [(m.pod, m.target) for m in plan.move] == [("a", "n2"), ("b", "n1")]
    assert writes(place(apply([a, b], plan), nodes, now=0.0)) == []


def test_original_that_no_longer_matches_is_forgotten_even_with_keep_original() -> None:
    pod = PodWants(
        "web", selector={"z": "b"}, on_return="keep-original", assignment=on("n2", previous="n1")
    )
    nodes = [node("n1", labels={"z": "a"}), node("n2", labels={"z": "b"})]
    assert [s.dropped for s in place([pod], nodes, now=0.0).settle] == ["n1"]


def test_original_still_suspect_has_not_returned() -> None:
    pod = PodWants("web", on_return="keep-original", assignment=on("n2", previous="n1"))
    plan = place([pod], [node("n1", "suspect"), node("n2")], now=0.0)
    assert plan.keep == ("web",)


# -- views, writers, errors -----------------------------------------------------------------


def test_split_views_may_run_a_pod_twice_until_the_move_reaches_the_lost_node() -> None:
    # n2 believes n1 dead past lostAfter; n1 is alive and keeps running its pod meanwhile.
    pod = PodWants("web", lost_after=10.0, assignment=on("n1"))
    seen_by_n2 = place([pod], [node("n1", "dead", since=0.0), node("n2")], now=20.0)
    seen_by_n1 = place([pod], [node("n1"), node("n2")], now=20.0)
    assert [w.writer for w in writes(seen_by_n2)] == ["n2"] and seen_by_n1.keep == ("web",)
    assert my_actions(seen_by_n1, "n1") == []  # n1 writes nothing, and runs web: two copies
    moved = apply([pod], seen_by_n2)
    # Once n2's write reaches n1 the assignment is n2's: n1's reconciler stops its copy. When
    # the views agree again, n2 forgets the original (keep-replacement), and that is all.
    assert where(moved) == {"web": "n2"}
    agreed = [node("n1"), node("n2")]
    settled = place(moved, agreed, now=21.0)
    assert [(w.writer, w.kind) for w in writes(settled)] == [("n2", "settle")]
    assert writes(place(apply(moved, settled), agreed, now=22.0)) == []


def test_a_node_missing_from_one_view_changes_only_the_pods_that_preferred_it() -> None:
    names = [f"n{i}" for i in range(20)]
    pods = [PodWants(f"p{i}") for i in range(300)]
    full = {a.pod: a.node for a in place(pods, [node(n) for n in names], now=0.0).assign}
    part = {a.pod: a.node for a in place(pods, [node(n) for n in names[1:]], now=0.0).assign}
    differ = {p for p in full if full[p] != part[p]}
    assert differ == {p for p in full if full[p] == "n0"} and differ


def test_each_pod_takes_its_best_fitting_node_by_pair_score() -> None:
    names = [f"n{i}" for i in range(12)]
    nodes = [node(n, cpu=1000 if i % 3 else 100) for i, n in enumerate(names)]
    plan = place([PodWants(f"p{i}", cpu=200) for i in range(30)], nodes, now=0.0)
    loads: Counter[str] = Counter()
    for a in plan.assign:  # name order, as placed
        fitting = [n.name for n in nodes if (n.cpu or 0) - loads[n.name] >= 200]
        assert a.node == min(fitting, key=lambda n: (pair_score(a.pod, n), n))
        loads[a.node] += 200


def test_pods_spread_over_the_nodes() -> None:
    names = [f"node-{i}" for i in range(10)]
    plan = place([PodWants(f"pod-{i}") for i in range(200)], [node(n) for n in names], now=0.0)
    counts = Counter(a.node for a in plan.assign)
    assert set(counts) == set(names) and max(counts.values()) <= 2.5 * 20


def test_duplicate_names_are_refused_and_nothing_is_decided() -> None:
    with pytest.raises(PlacementError, match="pod web is given twice; nothing was decided"):
        place([PodWants("web"), PodWants("web")], three(), now=0.0)
    with pytest.raises(PlacementError, match="node n1 is given twice"):
        place([], [node("n1"), node("n1")], now=0.0)


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(PlacementError, match=r"pod p: .*cpu=-1.*nothing was decided"):
        place([PodWants("p", cpu=-1)], three(), now=0.0)


def test_empty_view_leaves_every_pod_waiting() -> None:
    [wait] = place([PodWants("p")], [], now=0.0).waiting
    assert wait.message == "the membership view holds no node" and wait.nodes == {}


# -- a majority for taking over, cordoned nodes ---------------------------------------------


def five(alive: int) -> list[NodeView]:
    return [node(f"n{i}", "alive" if i <= alive else "dead") for i in range(1, 6)]


def test_with_majority_a_view_seeing_most_nodes_alive_replaces_lost_pods() -> None:
    pod = PodWants("web", lost_after=0.0, assignment=on("n5"))
    [move] = place([pod], five(alive=3), now=10.0, majority=True).move
    assert move.cause == "node-lost" and move.target in {"n1", "n2", "n3"}


def test_with_majority_a_minority_view_keeps_its_own_pods_and_takes_none() -> None:
    # n1 and n2 see n3..n5 dead: the other side of a partition, or their own isolation.
    theirs = PodWants("web", lost_after=0.0, assignment=on("n4"))
    mine = PodWants("db", lost_after=0.0, assignment=on("n1"))
    plan = place([theirs, mine], five(alive=2), now=100.0, majority=True)
    assert plan.move == () and plan.keep == ("db",)
    [wait] = plan.waiting
    assert (wait.pod, wait.reason, wait.node, wait.until) == ("web", "no-majority", "n4", None)
    assert "only 2 of 5 nodes alive" in wait.message
    # Without the rule the same view would take it.
    assert [m.pod for m in place([theirs, mine], five(alive=2), now=100.0).move] == ["web"]


def test_with_majority_new_pods_are_still_placed_on_a_minority_side() -> None:
    plan = place([PodWants("new")], five(alive=1), now=0.0, majority=True)
    assert [(a.pod, a.node) for a in plan.assign] == [("new", "n1")]


def test_a_view_back_in_a_majority_gives_the_nodes_it_holds_dead_their_lost_after_again() -> None:
    # n1 was cut off: it held n4 dead since 50 while it could not tell that from its own
    # isolation. Its view holds a majority again from 100 (n2, n3 are back); n4 has not
    # merged yet. Its pod moves only at 100 + lostAfter, not at once.
    pod = PodWants("web", lost_after=3.0, assignment=on("n4", at=40.0))
    nodes = [node("n1"), node("n2"), node("n3"), node("n4", "dead", since=50.0)]
    [wait] = place([pod], nodes, now=101.0, majority=True, majority_since=100.0).waiting
    assert (wait.reason, wait.until) == ("lost-node", 103.0)
    moved = place([pod], nodes, now=103.0, majority=True, majority_since=100.0).move
    assert [m.pod for m in moved] == ["web"]


def test_an_even_split_gives_the_majority_to_the_side_holding_the_first_node() -> None:
    first = [node("a"), node("b"), node("c", "dead"), node("d", "dead")]
    second = [node("a", "dead"), node("b", "dead"), node("c"), node("d")]
    assert holds_majority(first) and not holds_majority(second)
    # Two nodes: the survivor takes over only if it is the first by name.
    assert holds_majority([node("a"), node("b", "dead")])
    assert not holds_majority([node("a", "dead"), node("b")])


def test_nodes_that_left_do_not_count_for_a_majority() -> None:
    gone = [node("a", "left"), node("b", "left"), node("c", "left"), node("d"), node("e")]
    assert holds_majority(gone) and not holds_majority([node("a", "dead"), node("b", "suspect")])
    assert not holds_majority([])


def test_a_cordoned_node_keeps_its_pods_and_takes_no_new_one() -> None:
    nodes = [node("n1", schedulable=False), node("n2")]
    kept = PodWants("old", assignment=on("n1"))
    plan = place([kept, *[PodWants(f"p{i}") for i in range(10)]], nodes, now=0.0)
    assert plan.keep == ("old",) and {a.node for a in plan.assign} == {"n2"}
    pinned = place([PodWants("p", pinned="n1")], nodes, now=0.0)
    [wait] = pinned.waiting
    assert wait.nodes["n1"].startswith("cordoned")


def test_keep_original_does_not_go_back_to_a_cordoned_original() -> None:
    pod = PodWants("db", on_return="keep-original", assignment=on("n2", previous="n1"))
    plan = place([pod], [node("n1", schedulable=False), node("n2")], now=0.0)
    assert plan.move == () and [s.pod for s in plan.settle] == ["db"]


def test_a_pod_moved_off_a_lost_node_forgets_a_cordoned_original_at_once() -> None:
    # Its original n3 is alive but cordoned: it would never go back, so nothing is left to settle.
    pod = PodWants(
        "db", lost_after=0.0, on_return="keep-original", assignment=on("n0", previous="n3")
    )
    nodes = [node("n3", schedulable=False), node("n1")]
    [move] = place([pod], nodes, now=0.0).move
    assert (move.target, move.previous) == ("n1", None)
    assert writes(place(apply([pod], place([pod], nodes, now=0.0)), nodes, now=0.0)) == []


# -- properties -----------------------------------------------------------------------------

NODE_NAMES = [f"n{i}" for i in range(6)]
ASSIGNABLE = [*NODE_NAMES, "ghost"]
STATES = ("alive", "alive", "alive", "suspect", "dead", "left")


@st.composite
def views(draw: st.DrawFn) -> list[NodeView]:
    names = draw(st.lists(st.sampled_from(NODE_NAMES), unique=True, max_size=len(NODE_NAMES)))
    return [
        NodeView(
            n,
            draw(st.sampled_from(STATES)),
            draw(st.sampled_from([0.0, 40.0, 90.0])),
            {"zone": draw(st.sampled_from("ab"))},
            draw(st.sampled_from([None, 500, 1000, 2000])),
            draw(st.sampled_from([None, 4 * GIB])),
            draw(st.sampled_from([True, True, True, False])),
        )
        for n in names
    ]


@st.composite
def pod_sets(draw: st.DrawFn) -> list[PodWants]:
    out = []
    for i in range(draw(st.integers(0, 14))):
        assigned = draw(st.booleans())
        out.append(
            PodWants(
                f"p{i}",
                cpu=draw(st.sampled_from([0, 100, 300, 700])),
                memory=draw(st.sampled_from([0, GIB])),
                selector=draw(st.sampled_from([{}, {}, {}, {"zone": "a"}, {"zone": "b"}])),
                pinned=draw(
                    st.one_of(st.none(), st.none(), st.none(), st.sampled_from(ASSIGNABLE))
                ),
                policy=draw(st.sampled_from(["reschedule", "best-effort"])),
                lost_after=draw(st.sampled_from([0.0, 20.0, 60.0])),
                on_return=draw(st.sampled_from(["keep-replacement", "keep-original"])),
                assignment=Assignment(
                    draw(st.sampled_from(ASSIGNABLE)),
                    draw(st.sampled_from([0.0, 50.0])),
                    draw(st.sampled_from([None, None, *ASSIGNABLE])),
                )
                if assigned
                else None,
            )
        )
    return out


NOW = st.sampled_from([0.0, 45.0, 100.0, 200.0])


def loads(pods: Iterable[PodWants]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for p in pods:
        if p.assignment is not None:
            cpu, mem = out.get(p.assignment.node, (0, 0))
            out[p.assignment.node] = (cpu + p.cpu, mem + p.memory)
    return out


MAJORITY = st.booleans()


@settings(max_examples=200, deadline=None)
@given(pod_sets(), views(), NOW, MAJORITY, st.randoms(use_true_random=False))
def test_same_inputs_in_any_order_give_the_same_plan(
    pods: list[PodWants], nodes: list[NodeView], now: float, majority: bool, rng: random.Random
) -> None:
    shuffled_pods, shuffled_nodes = pods[:], nodes[:]
    rng.shuffle(shuffled_pods)
    rng.shuffle(shuffled_nodes)
    assert place(shuffled_pods, shuffled_nodes, now=now, majority=majority) == place(
        pods, nodes, now=now, majority=majority
    )


@settings(max_examples=200, deadline=None)
@given(pod_sets(), views(), NOW, MAJORITY)
def test_once_views_agree_each_decision_has_one_writer_and_capacity_holds(
    pods: list[PodWants], nodes: list[NodeView], now: float, majority: bool
) -> None:
    plan = place(pods, nodes, now=now, majority=majority)
    everyone = (
        {n.name for n in nodes} | {"ghost"} | {p.assignment.node for p in pods if p.assignment}
    )
    by_node = [w for n in sorted(everyone) for w in my_actions(plan, n)]
    assert sorted(by_node, key=lambda w: w.pod) == writes(plan)
    written = Counter(w.pod for w in writes(plan))
    assert all(count == 1 for count in written.values())  # no pod written twice
    after, before = loads(apply(pods, plan)), loads(pods)
    gained = {a.node for a in plan.assign} | {m.target for m in plan.move}
    view = {n.name: n for n in nodes}
    for name in gained:  # a node given pods is alive, not cordoned and within its capacity
        n = view[name]
        cpu, mem = after[name]
        assert n.state == "alive" and n.schedulable
        assert n.cpu is None or cpu <= n.cpu, (name, cpu, n.cpu, before.get(name))
        assert n.memory is None or mem <= n.memory
    assert set(plan.decisions()) == {p.name for p in pods}


@settings(max_examples=200, deadline=None)
@given(pod_sets(), views(), NOW, MAJORITY)
def test_placing_the_plans_result_again_changes_nothing(
    pods: list[PodWants], nodes: list[NodeView], now: float, majority: bool
) -> None:
    placed = apply(pods, place(pods, nodes, now=now, majority=majority))
    again = place(placed, nodes, now=now, majority=majority)
    assert writes(again) == []


@settings(max_examples=200, deadline=None)
@given(pod_sets(), views(), NOW)
def test_a_view_without_a_majority_never_moves_a_pod_off_a_lost_node(
    pods: list[PodWants], nodes: list[NodeView], now: float
) -> None:
    plan = place(pods, nodes, now=now, majority=True)
    if not holds_majority(nodes):
        assert [m for m in plan.move if m.cause == "node-lost"] == []
    else:
        assert [w for w in plan.waiting if w.reason == "no-majority"] == []


@settings(max_examples=200, deadline=None)
@given(pod_sets(), views(), NOW, MAJORITY)
def test_an_alive_node_never_loses_a_pod_without_a_cause(
    pods: list[PodWants], nodes: list[NodeView], now: float, majority: bool
) -> None:
    plan = place(pods, nodes, now=now, majority=majority)
    view: Mapping[str, NodeView] = {n.name: n for n in nodes}
    wants = {p.name: p for p in pods}
    leaving: list[Move | Unassign] = [*plan.move, *plan.unassign]
    for d in leaving:
        source = d.source if isinstance(d, Move) else d.node
        if source not in view or view[source].state != "alive":
            continue
        p, n = wants[d.pod], view[source]
        matches = p.pinned in (None, n.name) and all(
            n.labels.get(k) == v for k, v in p.selector.items()
        )
        if isinstance(d, Move) and d.cause == "original-returned":
            assert p.on_return == "keep-original" and p.assignment is not None
            assert p.assignment.previous == d.target
        else:
            assert not matches, (d, p, n)


def test_plan_is_plain_data() -> None:
    plan = place([PodWants("p", assignment=on("n2", previous="n1"))], three(), now=0.0)
    assert isinstance(plan, Plan) and plan.settle == (
        Settle("p", "n2", "n1", 0.0, plan.settle[0].message),
    )
