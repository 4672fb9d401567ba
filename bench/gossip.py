"""Benchmark of change dissemination (and membership under loss) through the simulator.

Run ``python -m bench.gossip`` for a table (takes a few minutes), ``--json`` for one JSON
object on stdout, ``--quick`` for a smoke run (small meshes, short runs: seconds).

Figures (the JSON keys), in virtual time unless they say wall. Dissemination cores run over
`gossip.logs.MemoryLog`; where membership is not the subject, a node's peers are the
simulator's live nodes.

- ``sim_1000_rounds_all``: the worst, over several changes published by different nodes, of
  the push rounds (``push_interval_s`` = 200 ms) until all 1000 live nodes hold the change,
  at 1% loss. Reference ``sim_1000_rounds_p50``. ``sim_1000_seconds_all``: the same in
  virtual seconds; reference ``sim_1000_wall_s``, the wall seconds of that phase.
- ``sim_false_suspicions_10pct_loss``: MemberSuspected events among 100 live nodes over 10
  virtual minutes at 10% loss (none is dead), counted after a 60 s join phase; reference
  ``sim_false_deaths_10pct_loss``: MemberDead events over the same span.
  ``sim_distinct_false_suspicions_10pct_loss``: the same suspicions counted once each (a
  member at one incarnation); ``sim_reliable_bytes_per_node_s_10pct_loss``: what the
  fallback probes over the reliable channel cost, beside
  ``sim_membership_bytes_per_node_s_10pct_loss``, all membership bytes.
- ``idle_bytes_per_s_100_objects`` / ``idle_bytes_per_s_10k_objects``: bytes sent per node
  per virtual second, all channels (membership and dissemination, peers from membership), in
  a converged 5-node mesh whose nodes hold 100 or 10,000 changes.
- ``catchup_bytes_ratio``: bytes a revived node received (all dissemination messages) until
  it held everything ÷ the encoded size of the envelopes it missed.
- ``mesh_visible_ms_p50`` / ``mesh_visible_ms_p99``: a real lab of 5 nodes (one daemon per
  network namespace, QUIC between them; `bench._meshlab`): an object applied on a random node
  until every node returns it; reference ``apply_local_ms_p50``, the apply's own round trip.
  ``--no-lab`` leaves them null (a machine without root or runc).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path as FsPath

_HERE = FsPath(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if FsPath(p or ".").resolve() != _HERE]

from rich.console import Console  # noqa: E402

from bench._report import Report, emit  # noqa: E402
from gossip._dissemination import Dissemination, DisseminationConfig  # noqa: E402
from gossip._membership import Membership, MemberState  # noqa: E402
from gossip._membership_wire import NodeId  # noqa: E402
from gossip.logs import MemoryLog  # noqa: E402
from gossip.sim import Core, Simulation, node_ids  # noqa: E402

CHANNEL = "dissemination"
PENDING = ("mesh_visible_ms_p50", "mesh_visible_ms_p99")


class _FromMembership(Dissemination):
    membership: Membership

    def handle_timer(self, *, now: float) -> None:
        members = self.membership.members().items()
        self.set_peers(n for n, m in members if m.state is MemberState.ALIVE)
        super().handle_timer(now=now)


class Mesh:
    """``n`` simulated nodes, each with a dissemination core over its own `MemoryLog`."""

    def __init__(
        self, n: int, *, seed: int, loss: float = 0.0, peers_from_membership: bool = False
    ) -> None:
        self.config = DisseminationConfig()
        self.logs: dict[NodeId, MemoryLog] = {}
        self.cores: dict[NodeId, Dissemination] = {}
        everyone = node_ids(n)

        def factory(node: NodeId, membership: Membership, rng: random.Random) -> Mapping[str, Core]:
            log = self.logs.setdefault(node, MemoryLog(node))
            if peers_from_membership:
                follower = _FromMembership(me=node, log=log, config=self.config, rng=rng)
                follower.membership = membership
                core: Dissemination = follower
            else:
                core = Dissemination(me=node, log=log, config=self.config, rng=rng)
                core.set_peers(everyone)
            self.cores[node] = core
            return {CHANNEL: core}

        self.sim = Simulation(n, seed=seed, loss=loss, extra_cores=factory, record_events=False)

    def publish(self, node: NodeId, payload: bytes) -> bytes:
        envelope = self.logs[node].append_local(payload)
        self.cores[node].publish([envelope], now=self.sim.now)
        self.sim._pump(self.sim.nodes[node])  # what a shell does after a command
        return envelope

    def holders(self, envelope: bytes) -> int:
        return sum(1 for node in self.sim.live() if self.logs[node].holds(envelope))

    def identical(self) -> bool:
        live = self.sim.live()
        first = self.logs[live[0]].state_hash()
        return all(self.logs[node].state_hash() == first for node in live)


def spread(report: Report, nodes: int, seed: int, changes: int) -> None:
    mesh = Mesh(nodes, seed=seed, loss=0.01)
    mesh.sim.join_all([])  # membership idle: peers are the live nodes
    mesh.sim.run_for(2.0)
    rng = random.Random(seed)
    ids = list(mesh.sim.nodes)
    seconds: list[float] = []
    t0 = time.perf_counter()
    for _ in range(changes):
        start = mesh.sim.now
        envelope = mesh.publish(rng.choice(ids), bytes(200))

        def everywhere(e: bytes = envelope) -> bool:
            return mesh.holders(e) == nodes

        if not mesh.sim.run_until_true(everywhere, limit_s=30.0, step_s=0.01):
            raise RuntimeError(f"seed={seed}: a change did not reach all {nodes} nodes in 30 s")
        seconds.append(mesh.sim.now - start)
        mesh.sim.run_for(2.0)  # let it cool before the next one
    wall = time.perf_counter() - t0
    push = mesh.config.push_interval_s
    rounds = [s / push for s in seconds]
    report.add(
        f"sim_{nodes}_rounds_all",
        max(rounds),
        "rounds",
        target="≤ 8",
        met=max(rounds) <= 8,
        reference=(f"sim_{nodes}_rounds_p50", statistics.median(rounds)),
    )
    report.add(
        f"sim_{nodes}_seconds_all",
        max(seconds),
        "virtual s",
        target="≤ 1.6",
        met=max(seconds) <= 1.6,
        reference=(f"sim_{nodes}_wall_s", wall),
    )


def suspicions(report: Report, nodes: int, seed: int, minutes: float) -> None:
    # Membership alone (its reliable fallback ping on, as by default): suspicions counted as
    # MemberSuspected events over all viewers, and as distinct ones (a member at one
    # incarnation, counted once), after a 60 s join phase.
    from gossip._membership import MemberSuspected

    sim = Simulation(nodes, seed=seed, loss=0.10)
    sim.join_all(list(sim.nodes)[:3])
    sim.run_until_true(lambda: sim.converged(set(sim.nodes)), limit_s=60.0, step_s=1.0)
    before = dict(sim.event_counts)
    start, joined = sim.now, sim.traffic()
    sim.run_for(minutes * 60.0)
    suspected = sim.event_counts["MemberSuspected"] - before.get("MemberSuspected", 0)
    dead = sim.event_counts["MemberDead"] - before.get("MemberDead", 0)
    distinct = {(e.node, e.incarnation) for _, _, e in sim.events_of(MemberSuspected, since=start)}
    traffic = sim.traffic(since=joined)
    report.add(
        "sim_false_suspicions_10pct_loss",
        suspected,
        "events",
        target="0",
        met=suspected == 0,
        reference=("sim_false_deaths_10pct_loss", dead),
    )
    report.add(
        "sim_distinct_false_suspicions_10pct_loss",
        len(distinct),
        "suspicions",
        target="0",
        met=not distinct,
    )
    report.add(
        "sim_reliable_bytes_per_node_s_10pct_loss",
        traffic["reliable_bytes_per_node_s"],
        "B/node/s",
        reference=("sim_membership_bytes_per_node_s_10pct_loss", traffic["bytes_per_node_s"]),
    )


def idle(objects: int, seed: int, seconds: float) -> float:
    nodes = 5
    mesh = Mesh(nodes, seed=seed, peers_from_membership=True)
    ids = list(mesh.sim.nodes)
    for i in range(objects):
        origin = mesh.logs[ids[i % nodes]]
        envelope = origin.append_local(b"object %06d " % i + bytes(150))
        for node in ids:
            if mesh.logs[node] is not origin:
                mesh.logs[node].apply([envelope], [])
    mesh.sim.join_all(ids[:2])
    mesh.sim.run_for(15.0)
    if not (mesh.sim.converged(set(ids)) and mesh.identical()):
        raise RuntimeError(f"seed={seed}: the {nodes}-node idle mesh did not settle")
    sent = mesh.sim.counters.bytes_sent
    mesh.sim.run_for(seconds)
    return (mesh.sim.counters.bytes_sent - sent) / (nodes * seconds)


def catchup(report: Report, nodes: int, seed: int, missed_count: int) -> None:
    mesh = Mesh(nodes, seed=seed, loss=0.01)
    mesh.sim.join_all([])
    ids = list(mesh.sim.nodes)
    rng = random.Random(seed)
    for i in range(100):
        mesh.publish(rng.choice(ids), b"%06d" % i + bytes(200))
    mesh.sim.run_for(5.0)
    victim = ids[1]
    mesh.sim.kill(victim)
    live = mesh.sim.live()
    for node in live:
        mesh.cores[node].set_peers(live)
    missed: list[bytes] = []
    for i in range(missed_count):
        missed.append(mesh.publish(rng.choice(live), b"%06d" % i + bytes(200)))
        if i % 50 == 0:
            mesh.sim.run_for(0.05)
    mesh.sim.run_for(10.0)
    mesh.sim.revive(victim)
    for node in mesh.sim.live():
        mesh.cores[node].set_peers(mesh.sim.live())
    start = mesh.sim.now
    if not mesh.sim.run_until_true(mesh.identical, limit_s=120.0, step_s=0.1):
        raise RuntimeError(f"seed={seed}: the revived node did not catch up in 120 s")
    raw = sum(len(e) for e in missed)
    received = mesh.cores[victim].stats.bytes_received
    report.add(
        "catchup_bytes_ratio",
        received / raw,
        "× raw",
        target="≤ 1.3",
        met=received / raw <= 1.3,
        reference=("catchup_virtual_s", mesh.sim.now - start),
    )
    report.sizes.update(catchup_missed=missed_count, catchup_raw_bytes=raw)


def run(*, quick: bool, nodes: int, seed: int, lab: bool = True) -> Report:
    report = Report()
    spread(report, nodes, seed, changes=3 if quick else 5)
    suspicions(report, 30 if quick else 100, seed, minutes=0.5 if quick else 10.0)
    seconds = 10.0 if quick else 60.0
    small = idle(100, seed, seconds)
    large = idle(10_000, seed, seconds)
    report.add("idle_bytes_per_s_100_objects", small, "B/node/s")
    report.add(
        "idle_bytes_per_s_10k_objects",
        large,
        "B/node/s",
        target="≤ 1.2 × 100",
        met=large <= 1.2 * small,
        reference=("idle_bytes_per_s_100_objects", small),
    )
    catchup(report, 10 if quick else 20, seed, 500 if quick else 5000)
    report.sizes.update(nodes=nodes, seed=seed)
    if lab:
        from bench._meshlab import mesh_visible

        mesh_visible(report, nodes=5, samples=10 if quick else 40, seed=seed)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small meshes, short runs")
    parser.add_argument("--nodes", type=int, help="nodes of the spread figure (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--no-lab", action="store_true", help="skip the real-lab figures (they need root)"
    )
    args = parser.parse_args(argv)
    nodes = args.nodes or (100 if args.quick else 1000)
    t0 = time.perf_counter()
    if args.json:
        report = run(quick=args.quick, nodes=nodes, seed=args.seed, lab=not args.no_lab)
    else:
        with Console(stderr=True).status("simulating…"):
            report = run(quick=args.quick, nodes=nodes, seed=args.seed, lab=not args.no_lab)
    elapsed = time.perf_counter() - t0
    where = "not measured (--no-lab)" if args.no_lab else "a real lab of 5 nodes on this machine"
    emit(
        report,
        title="edgenode dissemination simulation",
        elapsed=elapsed,
        quick=args.quick,
        as_json=args.json,
        notes=[f"{', '.join(PENDING)}: {where}"],
        extra={name: report.values.get(name) for name in PENDING},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
