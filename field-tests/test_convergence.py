"""Convergence latency: 100 changes, each applied on a node picked at random (seeded), each
timed from the apply's answer until every one of the five nodes returns it.

The changes create ten objects and then edit them (a field of each, again and again, from
whichever node comes up), one at a time, so each latency is that of one change alone. At the
end every node holds the same changes and the same state digest.

Figures: latency `p50_ms`, `p90_ms`, `p99_ms`, `max_ms` over the 100; `apply_p50_ms`, the
apply's own round trip on the node taking it (the reference); `total_s` for all 100.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from fieldkit import (
    Lab,
    all_see_all,
    apply_text,
    converged,
    deployments,
    get,
    named_lab,
    percentile,
    report,
    waited,
)

NODES = ["n1", "n2", "n3", "n4", "n5"]
CHANGES = 100
OBJECTS = 10
SEED = 1


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with named_lab("fc") as lab:
        lab.up(len(NODES))
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh to form")
        yield lab


def holds(lab: Lab, node: str, name: str, arg: str) -> bool:
    """Whether `node` holds deployment `name` with its container's sleep at `arg`."""
    doc = get(lab, node, "pinneddeployment", name)
    if doc is None:
        return False
    container = doc["spec"]["versions"]["v1"]["template"]["spec"]["containers"]["c"]
    return bool(container["command"][1] == arg)


def visible_everywhere(lab: Lab, name: str, arg: str, *, what: str) -> float:
    """Seconds until every node holds `name` at `arg` (each node asked until it does)."""
    waiting = set(NODES)

    def everywhere() -> bool:
        for n in sorted(waiting):
            if holds(lab, n, name, arg):
                waiting.discard(n)
        return not waiting

    return waited(everywhere, timeout=30, interval=0.01, what=what)


def test_each_of_100_changes_on_random_nodes_reaches_all_five_within_a_second(lab: Lab) -> None:
    rng = random.Random(SEED)
    latencies: list[float] = []
    applies: list[float] = []
    started = time.monotonic()
    for i in range(CHANGES):
        node = rng.choice(NODES)
        name, arg = f"conv-{i % OBJECTS}", str(i)
        t0 = time.monotonic()
        [outcome] = apply_text(lab, node, deployments([name], arg=arg))
        assert outcome["result"] in ("created", "configured"), outcome
        t1 = time.monotonic()
        applies.append(t1 - t0)
        latencies.append(visible_everywhere(lab, name, arg, what=f"change {i} on every node"))
    total = time.monotonic() - started
    waited(lambda: converged(lab, NODES), timeout=30, what="identical state on all five")
    ms = [x * 1000 for x in latencies]
    figures = report(
        "convergence",
        nodes=len(NODES),
        changes=CHANGES,
        p50_ms=round(percentile(ms, 0.5), 1),
        p90_ms=round(percentile(ms, 0.9), 1),
        p99_ms=round(percentile(ms, 0.99), 1),
        max_ms=round(max(ms), 1),
        apply_p50_ms=round(percentile([x * 1000 for x in applies], 0.5), 1),
        total_s=round(total, 1),
    )
    assert figures["p99_ms"] < 1000, figures
