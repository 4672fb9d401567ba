"""Benchmark of the membership core at scale, through the simulator (`gossip.sim`).

Run ``python bench/membership.py`` for a table (1000 nodes: a few minutes), ``--json`` for one
JSON object on stdout, ``--quick`` for 100 nodes (a smoke run), ``--nodes N`` to choose,
``--lossy`` for the loss run below instead.

Figures (the JSON keys), all in virtual time unless they say wall:

- ``converge_s``: nodes joining at once through 3 seeds until every node sees every node
  alive. Reference ``converge_rounds``: the same in protocol periods.
- ``join_wall_s``: wall seconds the simulator took for that. Reference ``wall_per_virtual_s``
  of the steady phase below. ``join_cpu_s`` / ``steady_cpu_s``: the same in process CPU
  seconds (on a shared machine the wall time also measures the neighbours).
- ``join_msgs_per_node_s`` / ``join_bytes_per_node_s``: traffic per node per virtual second
  while joining.
- ``steady_msgs_per_node_s`` / ``steady_bytes_per_node_s``: the same over ``steady_s`` virtual
  seconds after convergence (probes, acks, leftover gossip).
- ``detect_s``: two nodes killed until every survivor holds both dead. Reference
  ``detect_bound_s``: docs/membership.md's bound at the local health seen.
- ``false_deaths``: MemberDead events about live nodes over the whole run (target 0).

``--lossy``: 100 nodes (``--nodes``) lose 10 % of all messages for 600 virtual seconds
(``--steady``) after joining: ``lossy_false_deaths`` (target 0), ``lossy_suspicions`` (distinct
suspicions: events about a member at one incarnation, counted once; target 0) and
``lossy_suspected_events`` (MemberSuspected events over all viewers; target 0), and the
traffic: ``lossy_bytes_per_node_s`` over both channels, of which
``lossy_reliable_bytes_per_node_s`` went over the reliable one (fallback pings and acks; a
lost transmission costs the simulator's ``rto_s`` of delay, not bytes).

``--no-fallback`` runs either with ``reliable_fallback=False`` (datagrams only), to measure
what the reliable fallback ping costs and saves.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path as FsPath

_HERE = FsPath(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if FsPath(p or ".").resolve() != _HERE]

from rich.console import Console  # noqa: E402

from bench._report import Report, emit  # noqa: E402
from gossip._membership import (  # noqa: E402
    MemberDead,
    MembershipConfig,
    MemberState,
    MemberSuspected,
)
from gossip.sim import Simulation  # noqa: E402


def run_lossy(nodes: int, seed: int, lossy_s: float, config: MembershipConfig) -> Report:
    report = Report()
    sim = Simulation(nodes, seed=seed, loss=0.10, config=config)
    ids = list(sim.nodes)
    sim.join_all(ids[:3])
    c0 = time.process_time()
    if not sim.run_until_true(
        lambda: sim.all_see(ids, MemberState.ALIVE, among=ids[:1]), limit_s=60.0, step_s=1.0
    ):
        raise RuntimeError(f"seed={seed}: {nodes} nodes did not join under 10% loss")
    joined = sim.traffic()
    started = sim.now
    sim.run_for(lossy_s)
    suspected = sim.events_of(MemberSuspected, since=started)
    distinct = {(e.node, e.incarnation) for _, _, e in suspected}
    deaths = len(sim.events_of(MemberDead))
    report.add("lossy_false_deaths", deaths, "events", target="0", met=deaths == 0)
    report.add("lossy_suspicions", len(distinct), "suspicions", target="0", met=not distinct)
    report.add("lossy_suspected_events", len(suspected), "events", target="0", met=not suspected)
    after = sim.traffic(since=joined)
    report.add("lossy_msgs_per_node_s", after["msgs_per_node_s"], "msg/node/s")
    report.add("lossy_bytes_per_node_s", after["bytes_per_node_s"], "B/node/s")
    report.add("lossy_reliable_bytes_per_node_s", after["reliable_bytes_per_node_s"], "B/node/s")
    report.add("lossy_cpu_s", time.process_time() - c0, "CPU s")
    report.sizes.update(
        nodes=nodes,
        seed=seed,
        lossy_s=int(lossy_s),
        loss_percent=10,
        reliable_fallback=int(config.reliable_fallback),
    )
    return report


def run(nodes: int, seed: int, steady_s: float, config: MembershipConfig) -> Report:
    report = Report()
    sim = Simulation(nodes, seed=seed, record_events=False, config=config)
    everyone = set(sim.nodes)
    ids = list(sim.nodes)
    sim.join_all(ids[:3])
    t0 = time.perf_counter()
    c0 = time.process_time()
    if not sim.run_until_true(lambda: sim.converged(everyone), limit_s=300.0, step_s=0.5):
        raise RuntimeError(f"seed={seed}: {nodes} nodes did not converge in 300 virtual s")
    join_wall = time.perf_counter() - t0
    join_cpu = time.process_time() - c0
    converge_s = sim.now
    joined = sim.summary()
    per = nodes * converge_s
    report.add("converge_s", converge_s, "virtual s", reference=("converge_rounds", sim.rounds))
    report.add("join_msgs_per_node_s", joined["sent"] / per, "msg/node/s")
    report.add("join_bytes_per_node_s", joined["bytes_sent"] / per, "B/node/s")

    t1 = time.perf_counter()
    c1 = time.process_time()
    sim.run_for(steady_s)
    steady_wall = time.perf_counter() - t1
    steady_cpu = time.process_time() - c1
    after = sim.summary()
    per = nodes * steady_s
    report.add(
        "join_wall_s",
        join_wall,
        "wall s",
        reference=("wall_per_virtual_s", steady_wall / steady_s),
    )
    report.add("join_cpu_s", join_cpu, "CPU s")
    report.add("steady_cpu_s", steady_cpu, "CPU s", reference=("steady_virtual_s", steady_s))
    report.add("steady_msgs_per_node_s", (after["sent"] - joined["sent"]) / per, "msg/node/s")
    report.add(
        "steady_bytes_per_node_s", (after["bytes_sent"] - joined["bytes_sent"]) / per, "B/node/s"
    )

    victims = [ids[nodes // 3], ids[2 * nodes // 3]]
    survivors = [i for i in ids if i not in victims]
    for victim in victims:
        sim.kill(victim)
    killed_at = sim.now
    if not sim.run_until_true(
        lambda: sim.all_see(victims, MemberState.DEAD, among=survivors),
        limit_s=600.0,
        step_s=0.5,
    ):
        raise RuntimeError(f"seed={seed}: {victims} not declared dead in 600 virtual s")
    lhm = max(sim.nodes[n].membership.local_health for n in survivors)
    cfg = sim.config
    low = cfg.suspicion_mult * max(1.0, math.log10(nodes)) * cfg.probe_interval_s
    # docs/membership.md's bound; a fallback still in flight holds a suspicion back a little.
    wait = cfg.probe_timeout_s if cfg.reliable_fallback else 0.0
    bound = ((2 * nodes - 3) * cfg.probe_interval_s + wait) * (
        1 + lhm
    ) + cfg.suspicion_max_timeout_mult * low
    report.add("detect_s", sim.now - killed_at, "virtual s", reference=("detect_bound_s", bound))
    false_deaths = sum(
        1
        for n in survivors
        for m in sim.nodes[n].membership.members().values()
        if m.state is MemberState.DEAD and m.node not in victims
    )
    report.add("false_deaths", false_deaths, "members", target="0", met=false_deaths == 0)
    report.sizes.update(
        nodes=nodes,
        seed=seed,
        steady_s=int(steady_s),
        seeds=3,
        reliable_fallback=int(config.reliable_fallback),
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="100 nodes (a smoke run)")
    parser.add_argument("--nodes", type=int, help="how many nodes (default 1000)")
    parser.add_argument("--steady", type=float, help="steady virtual s (60; --lossy: 600)")
    parser.add_argument("--lossy", action="store_true", help="the 10%% loss run (100 nodes)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--no-fallback", action="store_true", help="datagrams only (reliable_fallback=False)"
    )
    args = parser.parse_args(argv)
    config = MembershipConfig(reliable_fallback=not args.no_fallback)
    nodes = args.nodes or (100 if args.quick or args.lossy else 1000)
    steady = args.steady if args.steady is not None else 600.0 if args.lossy else 60.0

    def go() -> Report:
        if args.lossy:
            return run_lossy(nodes, args.seed, steady, config)
        return run(nodes, args.seed, steady, config)

    t0 = time.perf_counter()
    if args.json:
        report = go()
    else:
        with Console(stderr=True).status(f"simulating {nodes} nodes…"):
            report = go()
    elapsed = time.perf_counter() - t0
    emit(
        report,
        title="edgenode membership simulation",
        elapsed=elapsed,
        quick=args.quick,
        as_json=args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
