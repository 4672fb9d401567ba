"""A partition into 2 + 3 with writes on both sides, then the heal.

Five nodes converge on one object, `contested`. The lab is cut into {n1, n2} and {n3, n4,
n5}; once each side holds the other dead, both sides write: new objects and edits on nodes
picked at random (seeded), and the same field of `contested` on each side (n2 and n5). Every
write the API acknowledged is kept with its change id, read from the writer's own history.
Each side converges on its own and holds nothing of the other's. After the heal: every node
holds the same changes and the same state digest, every acknowledged change is in the
history of its object on every node, and `contested` shows the concurrent edit on both sides
of it: `conflicts` on the winner, `overwritten` on the loser, the same on every node.

Figures: `dead_s` (cut until both sides hold the other dead), `writes` (acknowledged, both
sides), `side_converged_s`, `heal_alive_s` (heal until all see all alive), `heal_converged_s`
(heal until identical state), `conflicts` (history entries marked, per node).
"""

from __future__ import annotations

import random
import time
from typing import Any

from fieldkit import (
    Lab,
    alive_seen_by,
    all_see_all,
    apply_text,
    call,
    converged,
    deployments,
    get,
    named_lab,
    report,
    waited,
)

LEFT, RIGHT = ["n1", "n2"], ["n3", "n4", "n5"]
NODES = LEFT + RIGHT
WRITES_PER_SIDE = 20
SEED = 2


def history(lab: Lab, node: str, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = call(lab, node, "history", ref=f"pinneddeployment/{name}")
    return out


def write(lab: Lab, node: str, name: str, arg: str) -> str:
    """Apply `name` at `arg` on `node`; the id of the change it acknowledged (the newest
    operator's change of `name` from `node`, in its own history)."""
    [outcome] = apply_text(lab, node, deployments([name], arg=arg))
    assert outcome["result"] in ("created", "configured"), outcome
    mine = [
        r["change"]
        for r in history(lab, node, name)
        if r["manager"] == "user" and r["change"].startswith(f"{node}:")
    ]
    return str(max(mine, key=lambda c: int(c.rpartition(":")[2])))


def side_writes(lab: Lab, side: list[str], prefix: str, rng: random.Random) -> dict[str, str]:
    """Creations and edits on random nodes of `side`: change id -> object name."""
    acknowledged: dict[str, str] = {}
    for i in range(WRITES_PER_SIDE):
        name = f"{prefix}-{i % (WRITES_PER_SIDE // 2)}"  # each object written twice
        acknowledged[write(lab, rng.choice(side), name, str(i))] = name
    return acknowledged


def sees_dead(lab: Lab, viewer: str, others: list[str]) -> bool:
    return not alive_seen_by(lab, viewer) & set(others)


def test_a_2_3_partition_with_writes_on_both_sides_heals_to_identical_state() -> None:
    rng = random.Random(SEED)
    with named_lab("fp") as lab:
        lab.up(len(NODES))
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh to form")
        acknowledged = {write(lab, "n1", "contested", "0"): "contested"}
        waited(lambda: converged(lab, NODES), timeout=30, what="contested on every node")

        cut = time.monotonic()
        lab.partition([LEFT, RIGHT])
        dead_s = waited(
            lambda: sees_dead(lab, "n1", RIGHT) and sees_dead(lab, "n3", LEFT),
            timeout=60,
            what="each side to hold the other dead",
        )
        acknowledged |= side_writes(lab, LEFT, "left", rng)
        acknowledged |= side_writes(lab, RIGHT, "right", rng)
        acknowledged[write(lab, "n2", "contested", "left")] = "contested"
        acknowledged[write(lab, "n5", "contested", "right")] = "contested"
        written = time.monotonic()
        waited(
            lambda: converged(lab, LEFT) and converged(lab, RIGHT),
            timeout=30,
            what="each side to converge on its own",
        )
        side_converged_s = time.monotonic() - written
        assert get(lab, "n1", "pinneddeployment", "right-0") is None
        assert get(lab, "n4", "pinneddeployment", "left-0") is None
        assert not converged(lab, NODES)

        lab.heal()
        healed = time.monotonic()
        heal_alive_s = waited(
            lambda: all_see_all(lab, NODES), timeout=60, what="all five alive after the heal"
        )
        waited(lambda: converged(lab, NODES), timeout=60, what="identical state after the heal")
        heal_converged_s = time.monotonic() - healed

        marked: dict[str, tuple[list[str], list[str]]] = {}
        for node in NODES:
            held: set[str] = set()
            for name in sorted(set(acknowledged.values())):
                held |= {r["change"] for r in history(lab, node, name)}
            lost = sorted(set(acknowledged) - held)
            assert not lost, f"{node} lacks acknowledged changes {lost}"
            contested = history(lab, node, "contested")
            marked[node] = (
                [r["change"] for r in contested if r["conflicts"]],
                [r["change"] for r in contested if r["overwritten"]],
            )
        winners, losers = marked["n1"]
        assert len(winners) == 1 and len(losers) == 1, marked["n1"]
        assert all(m == marked["n1"] for m in marked.values()), marked
        doc = get(lab, "n3", "pinneddeployment", "contested")
        assert doc is not None
        side = doc["spec"]["versions"]["v1"]["template"]["spec"]["containers"]["c"]["command"][1]
        assert side in ("left", "right")
        assert winners[0].partition(":")[0] == ("n2" if side == "left" else "n5")
        report(
            "partition",
            nodes=len(NODES),
            sides=[LEFT, RIGHT],
            dead_s=round(dead_s, 2),
            writes=len(acknowledged) - 1,
            side_converged_s=round(side_converged_s, 2),
            partition_s=round(healed - cut, 1),
            heal_alive_s=round(heal_alive_s, 2),
            heal_converged_s=round(heal_converged_s, 2),
            acknowledged_present=len(acknowledged),
            conflicts=len(winners) + len(losers),
            winner=winners[0],
            loser=losers[0],
        )
