"""The real-lab figures of bench/gossip.py: a change applied on one node until visible on all.

A lab of N nodes (one daemon per network namespace, the mesh over QUIC) is brought up under a
name of its own and removed afterwards. Each sample applies one new object on a random node
through its socket and then polls every node's socket until all of them return it; the time
is from the apply's answer to the last node's. The reference, measured in the same run, is
the apply's own round trip on the node that takes it.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from bench._report import Report, percentile
from edgenode._protocol import ApiError
from edgenode.client import Connection
from edgenode.lab import Lab

DOC = (
    "apiVersion: edgenode/v1\nkind: PinnedDeployment\nmetadata: {{name: {name}}}\n"
    "spec:\n  versions:\n    v1:\n      replicas: 0\n      template:\n        spec:\n"
    '          containers:\n            c: {{image: "busybox:latest", command: ["true"]}}\n'
)


def _call(sock: str, verb: str, **args: Any) -> Any:
    with Connection(sock) as conn:
        return conn.call(verb, **args)


def _mesh_formed(lab: Lab, nodes: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = [
            {
                r["name"]
                for r in _call(lab.socket(n), "nodes")
                if str(r["state"]).startswith("alive")
            }
            for n in nodes
        ]
        if all(s >= set(nodes) for s in seen):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the lab's {len(nodes)} nodes did not all see each other in {timeout} s")


def _visible(lab: Lab, nodes: list[str], name: str, timeout: float) -> float:
    """Seconds until every node returns `name` (polling all, each once per pass)."""
    start = time.perf_counter()
    waiting = set(nodes)
    while waiting:
        for node in sorted(waiting):
            try:
                _call(lab.socket(node), "get", kind="pinneddeployment", name=name)
            except ApiError:
                continue  # not there yet
            waiting.discard(node)
        if waiting and time.perf_counter() - start > timeout:
            raise RuntimeError(f"{name} not visible on {sorted(waiting)} after {timeout} s")
    return time.perf_counter() - start


def mesh_visible(report: Report, *, nodes: int, samples: int, seed: int) -> None:
    rng = random.Random(seed)
    lab = Lab(f"bench{os.getpid() % 10000}")
    lab.down()
    try:
        lab.up(nodes)
        names = lab.nodes()
        _mesh_formed(lab, names, timeout=60)
        visible, local = [], []
        for i in range(samples):
            node = rng.choice(names)
            name = f"visible-{i}"
            t0 = time.perf_counter()
            _call(
                lab.socket(node), "apply", files=[{"name": "bench", "text": DOC.format(name=name)}]
            )
            local.append(time.perf_counter() - t0)
            visible.append(_visible(lab, names, name, timeout=30))
    finally:
        lab.down()
    visible.sort()
    local.sort()
    p99 = percentile(visible, 0.99) * 1000
    report.add(
        "mesh_visible_ms_p50",
        percentile(visible, 0.5) * 1000,
        "ms",
        reference=("apply_local_ms_p50", percentile(local, 0.5) * 1000),
    )
    report.add("mesh_visible_ms_p99", p99, "ms", target="≤ 1000", met=p99 <= 1000)
    report.sizes.update(lab_nodes=nodes, lab_samples=samples)
