"""Benchmark of the placement function (`edgenode._placement.place`), pure and in-process.

Run ``python bench/placement.py`` for a table, ``--json`` for one JSON object on stdout,
``--quick`` for small sizes (a smoke run: its numbers are not meaningful).

The cluster: nodes of 4000 millicores and 8 GiB, labelled with one of three zones; pods of
100 to 500 millicores and 64 to 512 MiB (about 75% of the cluster's cpu in all), one in three
selecting a zone, one in a hundred pinned to a node. Each figure is the median wall time of
several calls, each with cold caches (the hash points of each node and the ring of the view
are computed again; a daemon calling `place` with an unchanged view skips that).

- ``place_1000_nodes_10k_pods_ms``: a cold start: 10,000 unassigned pods over 1000 alive
  nodes, every pod needs a node (the worst case). Reference ``place_100_nodes_1k_pods_ms``,
  the same at a tenth of the size (a linear cost gives about 10×).
- ``place_1000_nodes_10k_pods_steady_ms``: the placed cluster a minute after 20 of its nodes
  died (their ``reschedule`` pods move; the rest stay). Reference ``sort_10k_pods_ms``: sorting
  the same 10,000 pod records by name, the least any order-independent decision costs.
- ``max_pods_per_node_ratio``: after the cold start, the most pods on one node ÷ the mean (1.0
  is a perfect spread; placing each pod on a uniformly random node gives about 2 at this size).

The simulator (`edgenode._placement_sim`: 100 nodes, ``--quick`` 30, 10 pods a node, each node
placing on its own membership view and its own copy of the store) splits the cluster 40/60 for
20 s, past detection and ``lostAfter`` (5 s), then heals it: ``sim_split_duplicates``, the pods
running on both sides when it heals (reference: the pods on the minority side, ``best-effort``
and pinned ones included, which do not move); ``sim_split_duplicate_pod_s``, pods running
twice summed over the split's seconds; ``sim_heal_converge_s``, from the heal until every pod
runs exactly once (reference: the longest hop of a change between two nodes).

With root (and runc, ip, nft), a real lab of ``--lab-nodes`` daemons (5) adds
``detect_dead_s``, ``detect_dead_all_s`` and ``replacement_start_s`` with their references, and
what a partition shows while views disagree: ``split_duplicates`` and ``split_duplicate_s``
(`bench/_placementlab.py`); ``--no-lab`` leaves them out, ``--quick`` takes one sample and a
3-node partition.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path as FsPath

_HERE = FsPath(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if FsPath(p or ".").resolve() != _HERE]

from rich.console import Console  # noqa: E402

from bench._report import Report, emit  # noqa: E402
from edgenode._placement import NodeView, PodWants, apply, place  # noqa: E402
from edgenode._placement_ring import members_ring, node_points, whole_ring  # noqa: E402
from edgenode._placement_sim import PlacementSim, mixed_cluster  # noqa: E402

ZONES = ("a", "b", "c")
MIB = 1 << 20


def cluster(nodes: int, pods: int, seed: int) -> tuple[list[NodeView], list[PodWants]]:
    rng = random.Random(seed)
    view = [
        NodeView(f"node-{i:05d}", labels={"zone": ZONES[i % 3]}, cpu=4000, memory=8192 * MIB)
        for i in range(nodes)
    ]
    wants: list[PodWants] = []
    for i in range(pods):
        kind = rng.random()
        wants.append(
            PodWants(
                f"pod-{i:06d}",
                cpu=rng.randrange(100, 501, 50),
                memory=rng.randrange(64, 513, 64) * MIB,
                selector={"zone": rng.choice(ZONES)} if kind < 1 / 3 else {},
                pinned=view[rng.randrange(nodes)].name if kind > 0.99 else None,
                lost_after=30.0,
            )
        )
    return view, wants


def count(n: int) -> str:
    """10000 -> "10k", 100 -> "100": as the figure names spell sizes."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def timed(call: Callable[[], object], repeat: int) -> float:
    """Median wall milliseconds of `repeat` calls, each with the ring caches emptied first."""
    samples = []
    for _ in range(repeat):
        node_points.cache_clear()
        whole_ring.cache_clear()
        members_ring.cache_clear()
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def run(*, quick: bool, seed: int) -> Report:
    report = Report()
    scale = 10 if quick else 1
    big_nodes, big_pods = 1000 // scale, 10_000 // scale
    small_nodes, small_pods = big_nodes // 10, big_pods // 10
    repeat = 3 if quick else 5

    view, pods = cluster(big_nodes, big_pods, seed)
    small_view, small_pods_list = cluster(small_nodes, small_pods, seed)
    cold = timed(lambda: place(pods, view, now=0.0), repeat)
    small = timed(lambda: place(small_pods_list, small_view, now=0.0), repeat)
    report.add(
        f"place_{big_nodes}_nodes_{count(big_pods)}_pods_ms",
        cold,
        "ms",
        target="≤ 2000",
        met=cold <= 2000,
        reference=(f"place_{small_nodes}_nodes_{count(small_pods)}_pods_ms", small),
    )

    plan = place(pods, view, now=0.0)
    placed = apply(pods, plan)
    per_node = Counter(p.assignment.node for p in placed if p.assignment is not None)
    ratio = max(per_node.values()) / (sum(per_node.values()) / len(view))

    dead = set(random.Random(seed).sample([n.name for n in view], max(1, big_nodes // 50)))
    later = [
        NodeView(n.name, "dead", 10.0, n.labels, n.cpu, n.memory) if n.name in dead else n
        for n in view
    ]
    steady = timed(lambda: place(placed, later, now=70.0), repeat)
    moved = len(place(placed, later, now=70.0).move)
    sort = timed(lambda: sorted(placed, key=lambda p: p.name), repeat)
    report.add(
        f"place_{big_nodes}_nodes_{count(big_pods)}_pods_steady_ms",
        steady,
        "ms",
        reference=(f"sort_{count(big_pods)}_pods_ms", sort),
    )
    report.add("max_pods_per_node_ratio", ratio, "× mean", target="≤ 2", met=ratio <= 2)
    report.sizes.update(
        nodes=big_nodes,
        pods=big_pods,
        placed=sum(per_node.values()),
        dead_nodes=len(dead),
        moved_after_loss=moved,
        seed=seed,
    )
    return report


SPLIT_S = 20.0
"""How long the simulated split lasts: past detection (4.5–6.5 s) and lostAfter (5 s)."""


def simulated_split(report: Report, *, quick: bool, seed: int) -> None:
    """The simulator's 40/60 partition (`edgenode._placement_sim`): 100 nodes (quick: 30) with
    10 pods each, every node placing on its own view and store; the split lasts `SPLIT_S`."""
    size = 30 if quick else 100
    nodes, pods = mixed_cluster(size, 10 * size, seed=seed, lost_after=(5.0,))
    sim = PlacementSim(pods, nodes, seed=seed)
    tick = sim.config.tick_s
    minority = [n for i, n in enumerate(sim.names) if i % 5 < 2]
    on_minority = sum(1 for a in sim.assignments(sim.names[0]).values() if a and a.node in minority)
    sim.partition(minority)
    sim.run_for(SPLIT_S)
    twice, pod_s, healed_at = sim.duplicates[-1], sum(sim.duplicates) * tick, sim.tick
    sim.heal()
    sim.run_until(lambda: all(len(r) == 1 for r in sim.runners().values()), limit_s=60.0)
    report.add(
        "sim_split_duplicates",
        twice,
        "pods",
        reference=("sim_split_minority_pods", on_minority),
    )
    report.add("sim_split_duplicate_pod_s", pod_s, "pod·s", reference=("sim_split_s", SPLIT_S))
    report.add(
        "sim_heal_converge_s",
        (sim.tick - healed_at) * tick,
        "s",
        reference=("sim_hop_s", sim.config.propagate_ticks[1] * tick),
    )
    report.sizes.update(sim_nodes=size, sim_pods=len(pods), sim_rounds=sim.rounds())


def _quiet() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--seed", type=int, default=1, help="cluster seed (default 1)")
    parser.add_argument("--no-lab", action="store_true", help="leave out the real-lab figures")
    parser.add_argument("--lab-nodes", type=int, default=5, help="daemons in the lab (5)")
    parser.add_argument("--lab-samples", type=int, default=None, help="node losses (5; quick 1)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with Console(stderr=True).status("placing…") if not args.json else _quiet():
        report = run(quick=args.quick, seed=args.seed)
        simulated_split(report, quick=args.quick, seed=args.seed)
        if not args.no_lab and os.geteuid() == 0:
            from bench._placementlab import node_loss, split_views

            samples = args.lab_samples or (1 if args.quick else 5)
            node_loss(report, nodes=args.lab_nodes, samples=samples)
            split_views(report, nodes=3 if args.quick else args.lab_nodes)
    elapsed = time.perf_counter() - t0
    emit(report, title="edgenode placement", elapsed=elapsed, quick=args.quick, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
