"""The simulator drives real membership cores: joins, failures, loss, partitions, restarts.

Every scenario runs `gossip.sim.Simulation` (virtual time, seeded network) and every assertion
message carries the seed, so a failing run can be replayed exactly. Bounds in virtual seconds:

- ``CONVERGE_S``: 50 nodes joining at once through 3 seeds all see each other alive (observed
  2–4 s with the default config; 10 s leaves room for other seeds).
- ``MERGE_S``: a healed partition, whose halves hold each other dead, merges again.
- The detection bound is docs/membership.md's: suspected within ``(2n − 3) × probe_interval_s
  × (1 + lhm)``, dead at most the maximum suspicion timeout later.
"""

from __future__ import annotations

import math
import random

import pytest

from gossip._membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MembershipConfig,
    MemberState,
    MemberSuspected,
    NodeId,
)
from gossip.sim import MEMBERSHIP, Simulation, node_ids

CONVERGE_S = 10.0
SEEDS = 3
MERGE_S = 60.0
"""A healed partition merges within this: one push-pull interval at 25 live members (30 s),
the gossip to the dead window (30 s) and the refutations spreading (observed 9–29 s)."""


def booted(n: int, *, seed: int, loss: float = 0.0) -> Simulation:
    """``n`` nodes joined through the first three and converged (asserted)."""
    sim = Simulation(n, seed=seed, loss=loss)
    everyone = set(sim.nodes)
    sim.join_all(list(sim.nodes)[:SEEDS])
    ok = sim.run_until_true(lambda: sim.converged(everyone), limit_s=CONVERGE_S, step_s=0.25)
    assert ok, f"seed={seed}: {n} nodes did not converge within {CONVERGE_S} s: {sim.summary()}"
    return sim


def detection_bound_s(config: MembershipConfig, n: int, lhm: int) -> float:
    """docs/membership.md, "Detection bound"."""
    low = config.suspicion_mult * max(1.0, math.log10(n)) * config.probe_interval_s
    high = config.suspicion_max_timeout_mult * low
    wait = config.probe_timeout_s if config.reliable_fallback else 0.0
    return ((2 * n - 3) * config.probe_interval_s + wait) * (1 + lhm) + high


def max_local_health(sim: Simulation) -> int:
    return max(s.membership.local_health for s in sim.nodes.values() if s.up)


# -- joining -------------------------------------------------------------------------------


def test_fifty_nodes_joining_through_three_seeds_converge_within_ten_virtual_seconds() -> None:
    sim = booted(50, seed=11)
    assert sim.now <= CONVERGE_S
    for viewer, view in sim.views().items():
        assert len(view) == 50, f"seed={sim.seed}: {viewer} knows {len(view)} members"
    joined = sim.events_of(MemberJoined)
    assert len(joined) == 50 * 49, f"seed={sim.seed}: one join event per viewer and member"
    assert not sim.events_of(MemberSuspected), f"seed={sim.seed}: suspicion on a clean net"
    c = sim.counters
    assert c.sent >= c.delivered > 0 and c.bytes_sent >= c.bytes_delivered > 0
    assert c.dropped == 0


def test_same_seed_gives_identical_counters_and_event_sequences() -> None:
    def scenario(seed: int) -> Simulation:
        sim = Simulation(30, seed=seed, loss=0.05, latency_s=(0.001, 0.02))
        ids = list(sim.nodes)
        sim.join_all(ids[:2], over_s=2.0)
        sim.run_for(8.0)
        sim.kill(ids[7])
        sim.partition([set(ids[:10])])
        sim.run_for(10.0)
        sim.heal()
        sim.revive(ids[7])
        sim.run_for(10.0)
        return sim

    first, second, other = scenario(5), scenario(5), scenario(6)
    assert first.summary() == second.summary(), "seed=5: counters differ between two runs"
    assert first.events == second.events, "seed=5: event sequences differ between two runs"
    assert first.counters.dropped_loss > 0 and first.counters.dropped_partition > 0
    assert other.summary() != first.summary(), "seeds 5 and 6 gave identical runs"


# -- failure detection ---------------------------------------------------------------------


def test_two_killed_of_fifty_are_declared_dead_by_all_others_within_the_documented_bound() -> None:
    n = 50
    sim = booted(n, seed=21)
    ids = list(sim.nodes)
    victims = [ids[10], ids[33]]
    survivors = [i for i in ids if i not in victims]
    killed_at = sim.now
    for victim in victims:
        sim.kill(victim)
    bound = detection_bound_s(sim.config, n, lhm=sim.config.max_local_health)
    ok = sim.run_until_true(
        lambda: sim.all_see(victims, MemberState.DEAD, among=survivors),
        limit_s=bound,
        step_s=0.25,
    )
    took = sim.now - killed_at
    assert ok, f"seed={sim.seed}: not all survivors declared {victims} dead in {bound:.1f} s"
    # With lhm as it was (0 on a clean network) the bound is much tighter still.
    tight = detection_bound_s(sim.config, n, lhm=max_local_health(sim))
    assert took <= tight, f"seed={sim.seed}: detection took {took:.2f} s > {tight:.1f} s"
    dead_by = {viewer for _, viewer, e in sim.events_of(MemberDead, about=victims)}
    assert dead_by == set(survivors), f"seed={sim.seed}"
    assert not sim.events_of(MemberDead, about=survivors), f"seed={sim.seed}: false death"
    assert not sim.events_of(MemberSuspected, about=survivors), f"seed={sim.seed}: false suspicion"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_five_percent_loss_causes_no_false_deaths_in_sixty_virtual_seconds(seed: int) -> None:
    sim = booted(50, seed=seed, loss=0.05)
    sim.run_for(60.0)
    assert sim.counters.dropped_loss > 0
    deaths = sim.events_of(MemberDead)
    assert not deaths, f"seed={seed}: false deaths under 5% loss: {deaths[:5]}"
    # Suspicions may happen under loss; each must have been refuted everywhere.
    assert sim.converged(set(sim.nodes)), f"seed={seed}: not all alive after 60 s of loss"
    for _, _, suspected in sim.events_of(MemberSuspected):
        alive = sim.nodes[suspected.node].membership.incarnation
        assert alive > suspected.incarnation, f"seed={seed}: {suspected} was never refuted"


def lossy_hundred(seed: int, *, fallback: bool) -> Simulation:
    """100 nodes joined under 10 % loss, then two virtual minutes more (~5 s of CPU)."""
    config = MembershipConfig(reliable_fallback=fallback)
    sim = Simulation(100, seed=seed, loss=0.10, config=config, record_events=False)
    everyone = list(sim.nodes)
    sim.join_all(everyone[:SEEDS])
    ok = sim.run_until_true(
        lambda: sim.all_see(everyone, MemberState.ALIVE, among=everyone[:1]),
        limit_s=30.0,
        step_s=1.0,
    )
    assert ok, f"seed={seed}: 100 nodes did not join under 10% loss in 30 s"
    sim.run_for(120.0)
    for viewer in everyone:
        for node, member in sim.nodes[viewer].membership.members().items():
            assert member.state in (MemberState.ALIVE, MemberState.SUSPECT), f"seed={seed}"
            assert node in sim.nodes
    return sim


def test_ten_percent_loss_among_a_hundred_nodes_suspects_no_one_with_the_reliable_fallback() -> (
    None
):
    # A probe whose direct ping and three helpers all fail (~0.75 % at 10 % loss) is still
    # answered over the reliable channel, which loses nothing but time (one rto_s per loss).
    # `bench/membership.py --lossy` runs the full ten minutes.
    seed = 7
    sim = lossy_hundred(seed, fallback=True)
    counts = sim.event_counts
    assert counts["MemberSuspected"] == 0, f"seed={seed}: suspicions: {dict(counts)}"
    assert counts["MemberDead"] == 0, f"seed={seed}: live nodes declared dead: {dict(counts)}"
    traffic = sim.traffic()
    assert traffic["reliable_sent"] > 0 and sim.counters.retransmits > 0, f"seed={seed}"
    assert traffic["reliable_bytes_sent"] < traffic["bytes_sent"] / 5, f"seed={seed}"


def test_ten_percent_loss_among_a_hundred_nodes_on_datagrams_alone_suspects_but_kills_no_one() -> (
    None
):
    # Without the fallback a probe fails ~0.75 % of the time: suspicions happen, and each must
    # be refuted before its timeout.
    seed = 7
    sim = lossy_hundred(seed, fallback=False)
    counts = sim.event_counts
    assert counts["MemberSuspected"] > 0, f"seed={seed}: no suspicion at all under 10% loss"
    assert counts["MemberDead"] == 0, f"seed={seed}: live nodes declared dead: {dict(counts)}"
    assert sim.traffic()["reliable_sent"] == 0, f"seed={seed}"


def test_a_lossy_link_is_bridged_by_helpers_without_suspicion() -> None:
    sim = booted(20, seed=4)
    a, b = NodeId("n0005"), NodeId("n0006")
    sim.set_link(a, b, loss=1.0)
    sim.run_for(30.0)
    assert not sim.events_of(MemberSuspected), f"seed={sim.seed}: a cut link caused suspicion"
    assert sim.converged(set(sim.nodes)), f"seed={sim.seed}"


# -- partitions and restarts ---------------------------------------------------------------


def split(sim: Simulation) -> tuple[list[NodeId], list[NodeId]]:
    ids = list(sim.nodes)
    half = len(ids) // 2
    return ids[:half], ids[half:]


def test_each_half_of_a_partition_declares_the_other_half_dead() -> None:
    sim = booted(50, seed=31)
    left, right = split(sim)
    sim.partition([set(left), set(right)])
    started = sim.now
    bound = detection_bound_s(sim.config, 50, lhm=sim.config.max_local_health)
    ok = sim.run_until_true(
        lambda: (
            sim.all_see(right, MemberState.DEAD, among=left)
            and sim.all_see(left, MemberState.DEAD, among=right)
        ),
        limit_s=bound,
        step_s=0.5,
    )
    assert ok, f"seed={sim.seed}: halves did not declare each other dead in {bound:.0f} s"
    assert sim.now - started < bound
    assert sim.all_see(left, MemberState.ALIVE, among=left), f"seed={sim.seed}"
    assert sim.all_see(right, MemberState.ALIVE, among=right), f"seed={sim.seed}"
    assert sim.counters.dropped_partition > 0


def split_until_each_side_holds_the_other_dead(sim: Simulation) -> tuple[list[NodeId], ...]:
    left, right = split(sim)
    sim.partition([set(left), set(right)])
    ok = sim.run_until_true(
        lambda: (
            sim.all_see(right, MemberState.DEAD, among=left)
            and sim.all_see(left, MemberState.DEAD, among=right)
        ),
        limit_s=150.0,
        step_s=0.5,
    )
    assert ok, f"seed={sim.seed}: the halves did not declare each other dead"
    return left, right


@pytest.mark.parametrize(("seed", "apart_s"), [(41, 0.0), (42, 0.0), (43, 120.0), (44, 120.0)])
def test_healed_partition_merges_by_itself_within_a_push_pull_interval(
    seed: int, apart_s: float
) -> None:
    # Healed at once, gossip to the recently dead bridges the halves; healed after that
    # window, a push-pull with a dead member does, within one (scaled) push-pull interval.
    sim = booted(50, seed=seed)
    left, right = split_until_each_side_holds_the_other_dead(sim)
    sim.run_for(apart_s)
    sim.heal()
    bound = MERGE_S
    ok = sim.run_until_true(lambda: sim.converged(set(sim.nodes)), limit_s=bound, step_s=0.5)
    assert ok, f"seed={seed}: not merged {bound} s after healing: {sim.summary()}"
    back = {(viewer, e.node) for _, viewer, e in sim.events_of(MemberJoined) if e.incarnation}
    assert (left[0], right[0]) in back and (right[0], left[0]) in back, f"seed={seed}"
    assert all(sim.nodes[n].membership.incarnation >= 1 for n in sim.nodes), f"seed={seed}"


def test_killed_node_revived_is_seen_alive_again_with_a_higher_incarnation() -> None:
    sim = booted(20, seed=51)
    victim = NodeId("n0012")
    others = [i for i in sim.nodes if i != victim]
    sim.kill(victim)
    assert sim.run_until_true(
        lambda: sim.all_see([victim], MemberState.DEAD, among=others), limit_s=60.0, step_s=0.5
    ), f"seed={sim.seed}"
    sim.revive(victim)
    assert sim.nodes[victim].life == 1
    ok = sim.run_until_true(lambda: sim.converged(set(sim.nodes)), limit_s=10.0, step_s=0.25)
    assert ok, f"seed={sim.seed}: revived node not seen alive by all"
    for other in others:
        member = sim.nodes[other].membership.members()[victim]
        assert member.incarnation >= 1, f"seed={sim.seed}: {other} holds {member}"
    back = {viewer for _, viewer, e in sim.events_of(MemberJoined, about=[victim]) if e.incarnation}
    assert back == set(others), f"seed={sim.seed}"
    assert not sim.events_of(MemberAlive, about=others)


def test_messages_in_flight_to_a_killed_node_are_dropped() -> None:
    sim = Simulation(3, seed=61, latency_s=(0.5, 0.5))
    sim.join_all([NodeId("n0000")])
    sim.run_for(0.1)  # the joins are on the wire
    sim.kill(NodeId("n0000"))
    sim.run_for(1.0)
    assert sim.counters.dropped_dead == 2
    assert sim.counters.delivered == 0


# -- plugging in another core --------------------------------------------------------------


class EchoCore:
    """A stand-in for a later core: on a timer it greets every alive member; it counts
    greetings received. Proves a second core gets its own channel, timers and events."""

    def __init__(self, me: NodeId, membership: object, rng: random.Random) -> None:
        self.me = me
        self.membership = membership
        self.got: list[NodeId] = []
        self._out: list[tuple[NodeId, bytes]] = []
        self._timer: float | None = 5.0
        self._events: list[str] = []

    def receive(self, data: bytes, sender: NodeId, *, now: float) -> None:
        self.got.append(sender)
        self._events.append(f"hello from {sender}")

    def handle_timer(self, *, now: float) -> None:
        from gossip._membership import Membership

        assert isinstance(self.membership, Membership)
        for node, member in self.membership.members().items():
            if node != self.me and member.state is MemberState.ALIVE:
                self._out.append((node, b"hello"))
        self._timer = None

    def get_timer(self) -> float | None:
        return self._timer

    def messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> object | None:
        return self._events.pop(0) if self._events else None


def test_an_extra_core_gets_its_own_channel_timers_and_events() -> None:
    sim = Simulation(10, seed=71, extra_cores=lambda me, m, rng: {"echo": EchoCore(me, m, rng)})
    sim.join_all([NodeId("n0000")])
    sim.run_for(6.0)
    for node in sim.nodes.values():
        echo = node.cores["echo"]
        assert isinstance(echo, EchoCore)
        assert sorted(echo.got) == sorted(n for n in sim.nodes if n != node.id), "seed=71"
        assert sum(isinstance(e, str) for _, e in sim.events[node.id]) == 9
    assert set(sim.nodes[NodeId("n0000")].cores) == {MEMBERSHIP, "echo"}


# -- the reliable channel ------------------------------------------------------------------


class Blaster:
    """A core that, at 1 s, sends ``count`` messages to ``to`` over each channel (datagrams
    and reliable), and records what it receives and when."""

    def __init__(self, to: NodeId | None, count: int = 100) -> None:
        self.got: list[tuple[bytes, float]] = []
        self._to = to
        self._count = count
        self._timer: float | None = 1.0 if to is not None else None
        self._out: list[tuple[NodeId, bytes]] = []
        self._reliable: list[tuple[NodeId, bytes]] = []

    def receive(self, data: bytes, sender: NodeId, *, now: float) -> None:
        self.got.append((data, now))

    def handle_timer(self, *, now: float) -> None:
        if self._to is not None:
            self._out = [(self._to, b"d%d" % i) for i in range(self._count)]
            self._reliable = [(self._to, b"r%d" % i) for i in range(self._count)]
        self._timer = None

    def get_timer(self) -> float | None:
        return self._timer

    def messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]:
        out, self._out = self._out, []
        return out

    def reliable_messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]:
        out, self._reliable = self._reliable, []
        return out

    def next_event(self) -> object | None:
        return None


def blasting(seed: int, *, loss: float, rto_s: float = 0.2) -> tuple[Simulation, Blaster]:
    """Two nodes, n0000 blasting n0001 over a link of 10 ms; returns the receiver's core."""
    sender, receiver = NodeId("n0000"), NodeId("n0001")
    sim = Simulation(
        2,
        seed=seed,
        latency_s=(0.01, 0.01),
        loss=loss,
        rto_s=rto_s,
        extra_cores=lambda me, m, rng: {"blast": Blaster(receiver if me == sender else None)},
    )
    sim.join_all([])  # no seeds: the membership cores stay quiet
    core = sim.nodes[receiver].cores["blast"]
    assert isinstance(core, Blaster)
    return sim, core


def test_reliable_messages_are_never_lost_only_delayed_one_rto_per_lost_transmission() -> None:
    sim, receiver = blasting(91, loss=0.5, rto_s=1.0)
    sim.run_for(60.0)
    reliable = {data: at for data, at in receiver.got if data.startswith(b"r")}
    datagrams = [data for data, _ in receiver.got if data.startswith(b"d")]
    assert len(reliable) == 100, f"seed=91: {len(reliable)} of 100 reliable messages arrived"
    assert 20 <= len(datagrams) <= 80, f"seed=91: {len(datagrams)} of 100 datagrams arrived"
    rtos = [round(at - 1.0 - 0.01, 6) for at in reliable.values()]
    assert all(r == int(r) for r in rtos), f"seed=91: delays not whole rtos: {rtos}"
    assert sum(rtos) == sim.counters.retransmits > 0, "seed=91"
    traffic = sim.traffic("blast")
    assert (traffic["sent"], traffic["reliable_sent"]) == (200, 100)
    assert sim.summary()["reliable_sent:blast"] == 100


@pytest.mark.parametrize("cut", ["link losing everything", "partition"])
def test_reliable_messages_do_not_cross_a_dead_link_or_a_partition(cut: str) -> None:
    sim, receiver = blasting(92, loss=1.0 if cut == "link losing everything" else 0.0)
    if cut == "partition":
        sim.partition([{NodeId("n0000")}])
    sim.run_for(10.0)
    assert receiver.got == [], f"seed=92: {len(receiver.got)} messages crossed a {cut}"
    assert sim.counters.dropped == 200


# -- scale ---------------------------------------------------------------------------------

LARGE = 300
"""The large test's cluster. 1000 nodes take minutes of CPU here (the steady piggyback
traffic of a 1000-node join is ~20 million updates); `bench/membership.py` runs 1000."""


def test_three_hundred_nodes_join_and_one_killed_is_declared_dead_by_all() -> None:
    seed = 81
    sim = Simulation(LARGE, seed=seed, record_events=False)
    everyone = set(sim.nodes)
    sim.join_all(list(sim.nodes)[:SEEDS])
    ok = sim.run_until_true(lambda: sim.converged(everyone), limit_s=60.0, step_s=0.5)
    assert ok, f"seed={seed}: {LARGE} nodes did not all see all alive in 60 s: {sim.summary()}"
    joined = sim.traffic()
    assert joined["sent"] == sim.counters.sent and joined["bytes_per_node_s"] > 0
    victim = NodeId("n0150")
    survivors = [n for n in sim.nodes if n != victim]
    sim.kill(victim)
    bound = detection_bound_s(sim.config, LARGE, lhm=sim.config.max_local_health)
    ok = sim.run_until_true(
        lambda: sim.all_see([victim], MemberState.DEAD, among=survivors),
        limit_s=bound,
        step_s=1.0,
    )
    assert ok, f"seed={seed}: not every survivor declared {victim} dead within {bound:.0f} s"
    assert sim.event_counts["MemberDead"] == LARGE - 1, f"seed={seed}: a false death"
    later = sim.traffic(since=joined)
    assert 0 < later["bytes_per_node_s"] < joined["bytes_per_node_s"] * 10
    assert sim.config.max_message_bytes * later["sent"] >= later["bytes_sent"]


def test_node_ids_are_zero_padded_so_they_sort_by_number() -> None:
    assert node_ids(3) == ["n0000", "n0001", "n0002"]
    assert node_ids(10_001)[-1] == "n10000"
