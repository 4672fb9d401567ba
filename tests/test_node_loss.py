"""Node loss for real: four daemons, each in its own network namespace; one is killed, its
pods follow their own policies, and it comes back.

A `reschedule` pod runs on another node once membership has declared its node dead and its
`lostAfter` has passed; a `best-effort` one stays bound to its node and is never run elsewhere.
When the node returns, `keep-replacement` leaves the replacement running and the returned node
stops its own copy; `keep-original` moves the pod back and the replacement stops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from daemonkit import wait_for
from labkit import apply, call, named_lab, pod

from edgenode.lab import Lab

NODES = ["n1", "n2", "n3", "n4"]
LOST_AFTER_S = 3
START_SLACK_S = 15.0
"""A bound on what follows the decision: the change reaching the taker's reconciler, the
image, the sandbox and the container starting, the status coming back."""

POD = """apiVersion: edgenode/v1
kind: Pod
metadata: {{name: {name}}}
spec:
  {extra}
  containers:
    main:
      image: busybox
      command: ["sh", "-c", "exec sleep 3600"]
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with named_lab("l") as lab:
        lab.up(len(NODES))
        yield lab


def runs_on(lab: Lab, node: str, name: str) -> bool:
    """Whether node `node` itself reports pod `name` running there (its own store)."""
    doc = pod(lab, node, name) or {}
    status = doc.get("status") or {}
    assigned = (doc.get("assignment") or {}).get("node")
    return assigned == node and status.get("node") == node and status.get("phase") == "Running"


def held_by_sandbox(lab: Lab, node: str, name: str) -> bool:
    return (lab.state_dir(node) / "pods" / name / "pod.json").exists()


def state_seen(lab: Lab, viewer: str, node: str) -> str:
    return next(str(r["state"]) for r in call(lab, viewer, "nodes") if r["name"] == node)


def everyone_alive(lab: Lab) -> bool:
    return all(
        all(str(r["state"]).startswith("alive") for r in call(lab, n, "nodes"))
        and len(call(lab, n, "nodes")) == len(NODES)
        for n in NODES
    )


def placed(lab: Lab, name: str) -> str:
    """The node pod `name` ends up running on (waits for it)."""
    found: list[str] = []

    def running() -> bool:
        found[:] = [n for n in NODES if runs_on(lab, n, name)]
        return len(found) == 1

    wait_for(running, timeout=60, what=f"{name} to run on one node")
    return found[0]


def policy(on_return: str) -> str:
    return f"onNodeLoss: {{policy: reschedule, lostAfter: {LOST_AFTER_S}s, onReturn: {on_return}}}"


def test_a_lost_nodes_pods_follow_their_policies_and_settle_when_it_returns(lab: Lab) -> None:
    wait_for(lambda: everyone_alive(lab), timeout=30, what="the mesh")
    apply(lab, "n1", POD.format(name="moves", extra=policy("keep-replacement")))
    victim = placed(lab, "moves")
    survivors = [n for n in NODES if n != victim]
    # Two more pods on the same node: one that goes back when it returns, one that never moves.
    apply(lab, survivors[0], POD.format(name="goes-back", extra=f"node: {victim}"))
    apply(
        lab,
        survivors[0],
        POD.format(name="stays", extra=f"node: {victim}\n  onNodeLoss: {{policy: best-effort}}"),
    )
    wait_for(lambda: runs_on(lab, victim, "goes-back"), timeout=60, what="goes-back on victim")
    wait_for(lambda: runs_on(lab, victim, "stays"), timeout=60, what="stays on the victim")
    # goes-back was pinned only to put it there: unpin it, with keep-original.
    apply(lab, survivors[0], POD.format(name="goes-back", extra=policy("keep-original")))
    wait_for(
        lambda: all(
            ((pod(lab, n, "goes-back") or {}).get("spec") or {}).get("node") is None for n in NODES
        ),
        timeout=10,
        what="the unpinned spec everywhere",
    )
    assert runs_on(lab, victim, "goes-back")  # unpinning is no cause to move

    killed = time.monotonic()
    lab.kill(victim)  # SIGKILL: the daemon is gone, its pods' processes keep running
    watcher = survivors[0]
    wait_for(
        lambda: state_seen(lab, watcher, victim) == "dead",
        timeout=40,
        what=f"{watcher} to declare {victim} dead",
    )
    dead_at = time.monotonic()
    # Replacements run within lostAfter of the death, plus what starting a container costs.
    for name in ("moves", "goes-back"):
        wait_for(
            lambda name=name: any(runs_on(lab, n, name) for n in survivors),  # type: ignore[misc]
            timeout=LOST_AFTER_S + START_SLACK_S,
            what=f"{name} to run on a survivor",
        )
    replaced_at = time.monotonic()
    moved = pod(lab, watcher, "moves") or {}
    assert moved["assignment"]["node"] in survivors
    assert moved["assignment"]["previous"] == victim
    # The best-effort pod never moved: still assigned to the lost node, explained as such.
    for n in survivors:
        assert (pod(lab, n, "stays") or {})["assignment"]["node"] == victim
        assert not held_by_sandbox(lab, n, "stays")
    why = lab.cli(watcher, "why", "pod/stays")
    assert why.returncode == 0 and "best-effort: waits for its node" in why.stdout, why
    print(
        f"detection {dead_at - killed:.1f} s, replacement {replaced_at - dead_at:.1f} s "
        f"after death (lostAfter {LOST_AFTER_S} s)"
    )

    lab.start(victim)
    wait_for(lambda: everyone_alive(lab), timeout=60, what=f"{victim} back in the mesh")
    # keep-replacement: the replacement stays, the returned node stops its copy.
    wait_for(
        lambda: not held_by_sandbox(lab, victim, "moves"),
        timeout=30,
        what=f"{victim} to stop its copy of moves",
    )
    # The replacement's node settles it (clears `previous`); the returned node stops its copy
    # on seeing the pod is not its own, which may come first.
    wait_for(
        lambda: "previous" not in ((pod(lab, victim, "moves") or {}).get("assignment") or {}),
        timeout=30,
        what=f"{victim} to see moves settled",
    )
    replacement = (pod(lab, victim, "moves") or {})["assignment"]
    assert replacement["node"] in survivors
    # keep-original: back on the returned node; the replacement's node stops its copy.
    wait_for(lambda: runs_on(lab, victim, "goes-back"), timeout=30, what="goes-back back home")
    wait_for(
        lambda: [n for n in survivors if held_by_sandbox(lab, n, "goes-back")] == [],
        timeout=30,
        what="the replacement of goes-back to stop",
    )
    # best-effort: it comes back with its node.
    wait_for(lambda: runs_on(lab, victim, "stays"), timeout=30, what="stays running again")
    # Exactly one copy of each, and every node agrees on where.
    for name in ("moves", "goes-back", "stays"):
        holders = [n for n in NODES if held_by_sandbox(lab, n, name)]
        assert len(holders) == 1, (name, holders)
        where = {(pod(lab, n, name) or {})["assignment"]["node"] for n in NODES}
        assert where == set(holders), (name, where, holders)
    history = json.loads(lab.cli(watcher, "history", "pod/moves", "-o", "json").stdout)
    assert any(r["manager"] == "placement" and r["author"] in survivors for r in history)


DEPLOYMENT = """apiVersion: edgenode/v1
kind: PinnedDeployment
metadata: {name: roll}
spec:
  versions:
    v1:
      replicas: 3
      template:
        spec:
          containers:
            main: {image: busybox, command: ["sh", "-c", "exec sleep 3600"]}
    v2:
      replicas: 0
      template:
        spec:
          containers:
            main: {image: busybox, command: ["sh", "-c", "echo v2; exec sleep 3600"]}
"""


def counts(lab: Lab, node: str) -> dict[str, int]:
    [doc] = call(lab, node, "get", kind="pinneddeployment", name="roll")
    return {v: b["replicas"] for v, b in doc["spec"]["versions"].items()}


def running_pods(lab: Lab, version: str) -> set[str]:
    """The pods of `version` that run on the node they are assigned to, seen from that node."""
    return {
        f"roll-{version}-{i}"
        for i in range(3)
        for n in NODES
        if runs_on(lab, n, f"roll-{version}-{i}")
    }


def test_a_rollout_across_the_mesh_steps_pauses_and_aborts_back(lab: Lab) -> None:
    wait_for(lambda: everyone_alive(lab), timeout=60, what="the mesh")
    apply(lab, "n2", DEPLOYMENT)
    wait_for(lambda: len(running_pods(lab, "v1")) == 3, timeout=90, what="three v1 pods")
    # Started on n3, driven by n3: one replica at a time, each waiting for the last.
    out = lab.cli("n3", "rollout", "roll", "--to", "v2", "--wait-ready", "--no-wait")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: counts(lab, "n1")["v2"] >= 2, timeout=90, what="two steps to v2")
    assert lab.cli("n1", "rollout", "pause", "roll").returncode == 0  # from any node
    time.sleep(1)
    paused = counts(lab, "n4")
    time.sleep(3)
    assert counts(lab, "n4") == paused  # no step while paused
    aborted = lab.cli("n4", "rollout", "abort", "roll")
    assert aborted.returncode == 0 and "back to v1 3, v2 0" in aborted.stdout, aborted
    wait_for(
        lambda: all(counts(lab, n) == {"v1": 3, "v2": 0} for n in NODES),
        timeout=15,
        what="the start counts on every node",
    )
    wait_for(
        lambda: len(running_pods(lab, "v1")) == 3 and running_pods(lab, "v2") == set(),
        timeout=90,
        what="three v1 pods and no v2 after the abort",
    )
    status = json.loads(lab.cli("n2", "rollout", "status", "roll", "-o", "json").stdout)
    assert status["rollout"] is None and status["last"]["state"] == "aborted"
    # Every step was an explicit edit of the counts, authored by the operator of n3.
    history = json.loads(lab.cli("n1", "history", "pinneddeployment/roll", "-o", "json").stdout)
    steps = [
        r
        for r in history
        if not r["created"]
        and any(f.startswith("spec.versions.") and f.endswith(".replicas") for f in r["fields"])
    ]
    assert [r["author"] for r in steps[:2]] == ["admin-n3", "admin-n3"], steps
    # Then all the way, two at a time, followed from n1 until it is done.
    done = lab.cli("n1", "rollout", "roll", "--to", "v2", "--step", "2", "--timeout", "180")
    assert done.returncode == 0 and "every one of 3 replicas runs v2" in done.stdout, done
    wait_for(
        lambda: len(running_pods(lab, "v2")) == 3 and running_pods(lab, "v1") == set(),
        timeout=90,
        what="three v2 pods and no v1",
    )


def test_a_node_cut_off_keeps_running_its_pods_and_duplicates_end_after_the_heal(
    lab: Lab,
) -> None:
    wait_for(lambda: everyone_alive(lab), timeout=60, what="the mesh")
    apply(lab, "n1", POD.format(name="island", extra=policy("keep-replacement")))
    alone = placed(lab, "island")
    rest = [n for n in NODES if n != alone]
    # A reschedule pod on the other side: pinned there first, then let go (no cause to move).
    apply(lab, "n1", POD.format(name="mainland", extra=f"node: {rest[0]}"))
    wait_for(lambda: runs_on(lab, rest[0], "mainland"), timeout=60, what="mainland running")
    apply(lab, "n1", POD.format(name="mainland", extra=policy("keep-original")))
    wait_for(
        lambda: ((pod(lab, alone, "mainland") or {}).get("spec") or {}).get("node") is None,
        timeout=10,
        what="mainland let go, seen by the node to be cut off",
    )
    lab.partition([[alone], rest])
    try:
        wait_for(
            lambda: (
                state_seen(lab, rest[0], alone) == "dead"
                and state_seen(lab, alone, rest[0]) == "dead"
            ),
            timeout=60,
            what="both sides to hold the other dead",
        )
        # The majority replaces it; the cut-off node keeps its copy and takes nothing.
        wait_for(
            lambda: any(runs_on(lab, n, "island") for n in rest),
            timeout=LOST_AFTER_S + START_SLACK_S,
            what="a replacement on the majority side",
        )
        assert held_by_sandbox(lab, alone, "island")  # two copies while views disagree
        assert runs_on(lab, alone, "island")  # as far as the cut-off node knows, it is its
        why = lab.cli(alone, "why", "pod/island")
        assert why.returncode == 0 and "is running" in why.stdout, why
        # The other side's pods are lost to it, but it has no majority: it takes none.
        time.sleep(LOST_AFTER_S + 1)
        assert not held_by_sandbox(lab, alone, "mainland")
        why = lab.cli(alone, "why", "pod/mainland")
        assert why.returncode == 0 and "no majority" in why.stdout, why
    finally:
        healed = time.monotonic()
        lab.heal()
    wait_for(
        lambda: not held_by_sandbox(lab, alone, "island"),
        timeout=60,
        what="the cut-off node to stop its copy once it hears of the move",
    )
    print(f"duplicate ended {time.monotonic() - healed:.1f} s after the heal")
    history = lab.cli(rest[0], "history", "pod/island").stdout
    holders = [n for n in NODES if held_by_sandbox(lab, n, "island")]
    assert len(holders) == 1 and holders != [alone], (holders, history)
