"""Node loss with both policies, and the node's return, timed on a real 4-node mesh.

Pod `moves` (``reschedule``, ``lostAfter: 3s``, ``keep-replacement``) is placed by the mesh;
pod `stays` (``best-effort``) is put on the same node. That node's daemon is SIGKILLed (its
pods' processes keep running, as after a daemon crash). The survivors declare it dead,
`moves` runs on a survivor once its lostAfter has passed, and `stays` stays bound to the lost
node, run nowhere else. The node's daemon starts again: it stops its own copy of `moves` (the
replacement is kept) and reports `stays` running again; every node agrees on where each pod
is, and each runs exactly once. (tests/test_node_loss.py shows the behaviour in more cases;
this scenario measures it.)

Figures: `dead_s` (kill until every survivor holds the node dead), `replaced_s` (kill until
the replacement runs), `replaced_after_dead_s`; from the daemon's restart: `answering_s` (its
socket answers, its pods adopted), `back_alive_s` (all see all alive), `settled_s` (one copy
of each pod, and every node agrees where).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from fieldkit import (
    Lab,
    alive_seen_by,
    all_see_all,
    apply_text,
    call,
    get,
    named_lab,
    pod,
    report,
    waited,
)

NODES = ["n1", "n2", "n3", "n4"]
LOST_AFTER_S = 3

MOVES = {"policy": "reschedule", "lostAfter": f"{LOST_AFTER_S}s", "onReturn": "keep-replacement"}


def runs_on(lab: Lab, node: str, name: str) -> bool:
    """Whether `node` itself reports pod `name` assigned to it and running there."""
    doc: dict[str, Any] = get(lab, node, "pod", name) or {}
    status = doc.get("status") or {}
    assigned = (doc.get("assignment") or {}).get("node")
    return assigned == node and status.get("node") == node and status.get("phase") == "Running"


def holds(lab: Lab, node: str, name: str) -> bool:
    """Whether `node`'s sandbox holds pod `name` (running, or left by a crashed daemon)."""
    return (lab.state_dir(node) / "pods" / name / "pod.json").exists()


def assigned(lab: Lab, node: str, name: str) -> str | None:
    return ((get(lab, node, "pod", name) or {}).get("assignment") or {}).get("node")


def dead_everywhere(lab: Lab, viewers: list[str], node: str) -> bool:
    return all(
        next(str(r["state"]) for r in call(lab, v, "nodes") if r["name"] == node) == "dead"
        for v in viewers
    )


def settled(lab: Lab, victim: str) -> bool:
    """One copy of each pod, where every node agrees it is: `stays` back on `victim`."""
    for name in ("moves", "stays"):
        holders = [n for n in NODES if holds(lab, n, name)]
        if len(holders) != 1 or {assigned(lab, n, name) for n in NODES} != set(holders):
            return False
        if not runs_on(lab, holders[0], name):
            return False
    return holds(lab, victim, "stays") and not holds(lab, victim, "moves")


def test_a_lost_nodes_pods_follow_their_policies_and_settle_when_it_returns() -> None:
    with named_lab("fl") as lab:
        lab.up(len(NODES))
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh to form")
        apply_text(lab, "n1", pod("moves", onNodeLoss=MOVES))
        where: list[str] = []

        def placed() -> bool:
            where[:] = [n for n in NODES if runs_on(lab, n, "moves")]
            return len(where) == 1

        waited(placed, timeout=60, what="moves running on one node")
        victim = where[0]
        survivors = [n for n in NODES if n != victim]
        stays = pod("stays", node=victim, onNodeLoss={"policy": "best-effort"})
        apply_text(lab, survivors[0], stays)
        waited(lambda: runs_on(lab, victim, "stays"), timeout=60, what="stays on the victim")

        killed = time.monotonic()
        lab.kill(victim, signal.SIGKILL)
        dead_s = waited(
            lambda: dead_everywhere(lab, survivors, victim), timeout=60, what="victim dead"
        )
        waited(
            lambda: any(runs_on(lab, n, "moves") for n in survivors),
            timeout=60,
            what="a replacement of moves on a survivor",
        )
        replaced_s = time.monotonic() - killed
        # best-effort: bound to the lost node, not run elsewhere, past its lostAfter too.
        time.sleep(0.5)
        assert not any(holds(lab, n, "stays") for n in survivors)
        assert {assigned(lab, n, "stays") for n in survivors} == {victim}
        assert holds(lab, victim, "stays") and holds(lab, victim, "moves")  # still running

        restarted = time.monotonic()
        lab.start(victim)
        answering_s = time.monotonic() - restarted
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="all four alive again")
        back_alive_s = time.monotonic() - restarted
        waited(lambda: settled(lab, victim), timeout=60, what="one copy of each pod")
        settled_s = time.monotonic() - restarted
        taker = next(n for n in survivors if holds(lab, n, "moves"))
        assert alive_seen_by(lab, victim) == set(NODES)
        report(
            "node_loss",
            nodes=len(NODES),
            lost_after_s=LOST_AFTER_S,
            dead_s=round(dead_s, 2),
            replaced_s=round(replaced_s, 2),
            replaced_after_dead_s=round(replaced_s - dead_s, 2),
            answering_s=round(answering_s, 2),
            back_alive_s=round(back_alive_s, 2),
            settled_s=round(settled_s, 2),
            replacement_on=taker,
            victim=victim,
        )
