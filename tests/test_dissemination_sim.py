"""Dissemination cores driven by the simulator: spread under loss, partitions that heal,
a node that is killed and revived catching up on the delta only.

Each node runs a real `Dissemination` core over a `MemoryLog` on the simulator's
``dissemination`` channel. Its peers are the simulator's live nodes (set by `Mesh.set_live`),
so these tests do not depend on membership converging; one test takes the peers from each
node's real membership core instead. Every assertion message carries the seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from gossip._dissemination import Dissemination, DisseminationConfig
from gossip._membership import Membership, MemberState
from gossip._membership_wire import NodeId
from gossip.logs import MemoryLog
from gossip.sim import Core, Simulation, node_ids

DISSEMINATION = "dissemination"


class Mesh:
    """A simulation whose nodes each run a dissemination core over a `MemoryLog`; a node's
    log outlives its cores (it is the node's disk), so a revived node keeps what it held."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        loss: float = 0.0,
        config: DisseminationConfig | None = None,
        peers_from_membership: bool = False,
    ) -> None:
        self.config = config or DisseminationConfig()
        self.logs: dict[NodeId, MemoryLog] = {}
        self.cores: dict[NodeId, Dissemination] = {}
        self.published: list[bytes] = []
        everyone = node_ids(n)

        def factory(node: NodeId, membership: Membership, rng: random.Random) -> Mapping[str, Core]:
            log = self.logs.setdefault(node, MemoryLog(node))
            kind = FollowsMembership if peers_from_membership else Dissemination
            core = kind(me=node, log=log, config=self.config, rng=rng)
            if isinstance(core, FollowsMembership):
                core.membership = membership
            else:
                core.set_peers(everyone)
            self.cores[node] = core
            return {DISSEMINATION: core}

        self.sim = Simulation(n, seed=seed, loss=loss, extra_cores=factory, record_events=False)

    def start(self, seeds: int = 0) -> None:
        """Start every node (membership joins through the first ``seeds`` nodes, or alone)."""
        self.sim.join_all(list(self.sim.nodes)[:seeds])
        self.sim.run_for(0.0)

    def set_live(self) -> None:
        live = self.sim.live()
        for node in live:
            self.cores[node].set_peers(live)

    def publish(self, node: NodeId, payload: bytes) -> bytes:
        envelope = self.logs[node].append_local(payload)
        self.cores[node].publish([envelope], now=self.sim.now)
        self.sim._pump(self.sim.nodes[node])  # what a shell does after a command
        self.published.append(envelope)
        return envelope

    def holders(self, envelope: bytes) -> int:
        return sum(1 for node in self.sim.live() if self.logs[node].holds(envelope))

    def identical(self) -> bool:
        live = self.sim.live()
        first = self.logs[live[0]].state_hash()
        return all(self.logs[node].state_hash() == first for node in live)


class FollowsMembership(Dissemination):
    """Takes its peers from the node's membership core (alive members) at every tick."""

    membership: Membership

    def handle_timer(self, *, now: float) -> None:
        self.set_peers(
            n for n, m in self.membership.members().items() if m.state is MemberState.ALIVE
        )
        super().handle_timer(now=now)


def test_a_change_reaches_every_node_of_a_hundred_within_eight_rounds_at_one_percent_loss() -> None:
    seed = 21
    mesh = Mesh(100, seed=seed, loss=0.01)
    mesh.start()
    mesh.sim.run_for(2.0)
    start = mesh.sim.now
    envelope = mesh.publish(NodeId("n0042"), b"spec")
    ok = mesh.sim.run_until_true(lambda: mesh.holders(envelope) == 100, limit_s=1.6, step_s=0.05)
    assert ok, f"seed={seed}: {mesh.holders(envelope)}/100 hold it after 1.6 s"
    rounds = (mesh.sim.now - start) / mesh.config.push_interval_s
    assert rounds <= 8, f"seed={seed}: took {rounds} rounds"


def test_after_a_healed_partition_with_writes_on_both_sides_all_nodes_hold_the_same_state() -> None:
    seed = 5
    mesh = Mesh(60, seed=seed, loss=0.01)
    mesh.start()
    mesh.sim.run_for(1.0)
    ids = list(mesh.sim.nodes)
    left, right = set(ids[:30]), set(ids[30:])
    mesh.sim.partition([left, right])
    rng = random.Random(seed)
    for i in range(40):
        side = ids[:30] if i % 2 else ids[30:]
        mesh.publish(rng.choice(side), b"write %d" % i)
        mesh.sim.run_for(0.05)
    mesh.sim.run_for(3.0)
    assert not mesh.identical(), f"seed={seed}: the partition did not separate the writes"
    mesh.sim.heal()
    ok = mesh.sim.run_until_true(mesh.identical, limit_s=20.0, step_s=0.5)
    assert ok, f"seed={seed}: not identical 20 s after healing"
    vectors = {tuple(sorted(mesh.logs[n].version_vector().items())) for n in ids}
    assert len(vectors) == 1, f"seed={seed}: version vectors differ"
    lost = [e for e in mesh.published if mesh.holders(e) != 60]
    assert not lost, f"seed={seed}: {len(lost)} published changes not everywhere"


def test_a_revived_node_catches_up_receiving_only_the_delta() -> None:
    seed = 8
    mesh = Mesh(30, seed=seed, loss=0.01)
    mesh.start()
    ids = list(mesh.sim.nodes)
    rng = random.Random(seed)
    for i in range(200):
        mesh.publish(rng.choice(ids), b"%05d" % i + bytes(150))
    mesh.sim.run_for(5.0)
    assert mesh.identical(), f"seed={seed}: not converged before the kill"
    victim = ids[7]
    held_before = len(mesh.logs[victim])
    mesh.sim.kill(victim)
    mesh.set_live()
    missed: list[bytes] = []
    for i in range(300):
        missed.append(mesh.publish(rng.choice(ids[8:]), b"%05d" % i + bytes(150)))
        if i % 20 == 0:
            mesh.sim.run_for(0.05)
    mesh.sim.run_for(5.0)  # every change has cooled: the victim gets nothing by push
    mesh.sim.revive(victim)
    mesh.set_live()
    ok = mesh.sim.run_until_true(mesh.identical, limit_s=20.0, step_s=0.25)
    assert ok, f"seed={seed}: the revived node did not catch up within 20 s"
    assert len(mesh.logs[victim]) == held_before + len(missed)
    raw = sum(len(e) for e in missed)
    stats = mesh.cores[victim].stats
    data = stats.bytes_received_by_kind.get("chunk", 0) + stats.bytes_received_by_kind.get(
        "push", 0
    )
    assert raw <= data <= 1.3 * raw, f"seed={seed}: received {data} bytes for {raw} missed"
    assert stats.bytes_received <= 1.3 * raw, f"seed={seed}: {stats}"


def test_peers_taken_from_real_membership_spread_a_change_to_every_node() -> None:
    seed = 3
    mesh = Mesh(40, seed=seed, peers_from_membership=True)
    mesh.start(seeds=3)
    everyone = set(mesh.sim.nodes)
    assert mesh.sim.run_until_true(
        lambda: mesh.sim.converged(everyone), limit_s=10.0, step_s=0.25
    ), f"seed={seed}: membership did not converge"
    mesh.sim.run_for(1.0)  # every core has ticked and learned its peers
    envelope = mesh.publish(NodeId("n0011"), b"x")
    ok = mesh.sim.run_until_true(lambda: mesh.holders(envelope) == 40, limit_s=2.0, step_s=0.1)
    assert ok, f"seed={seed}: {mesh.holders(envelope)}/40 after 2 s"


def test_a_thousand_nodes_split_with_writes_and_deaths_converge_after_heal_losing_nothing() -> None:
    seed = 11
    n = 1000
    mesh = Mesh(n, seed=seed, loss=0.01)
    mesh.start()
    mesh.sim.run_for(1.0)
    ids = list(mesh.sim.nodes)
    half = n // 2
    mesh.sim.partition([set(ids[:half]), set(ids[half:])])
    rng = random.Random(seed)
    acknowledged: list[bytes] = []
    for i in range(100):
        side = ids[:half] if i % 2 else ids[half:]
        acknowledged.append(mesh.publish(rng.choice(side), b"write %d" % i))
        mesh.sim.run_for(0.02)
        if i == 50:  # ten nodes die mid-partition (their own writes were acknowledged)
            for victim in rng.sample(ids, 10):
                mesh.sim.kill(victim)
            mesh.set_live()
    mesh.sim.run_for(2.0)
    assert not mesh.identical(), f"seed={seed}: the partition did not separate the writes"
    mesh.sim.heal()
    ok = mesh.sim.run_until_true(mesh.identical, limit_s=30.0, step_s=0.5)
    assert ok, f"seed={seed}: live nodes not identical 30 s after healing"
    live = mesh.sim.live()
    assert len(live) == n - 10
    vectors = {tuple(sorted(mesh.logs[node].version_vector().items())) for node in live}
    assert len(vectors) == 1, f"seed={seed}: version vectors differ"
    # No acknowledged change is lost: every one is on every live node, even those whose
    # origin died before the partition healed (its other side got them from its peers).
    lost = [e for e in acknowledged if mesh.holders(e) != len(live)]
    assert not lost, f"seed={seed}: {len(lost)} acknowledged changes missing on live nodes"
