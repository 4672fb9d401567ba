"""Leaderless placement at 100 nodes, each with its own view and store (`edgenode._placement_sim`).

Every scenario drives 100 nodes and 1000 pods of mixed node-loss rules (`mixed_cluster`): each
node runs the real `place` over its own copy of the assignments and its own membership view,
and writes only its own share. A scenario runs once (a module fixture) and records who runs
each pod at the end of every tick; each test asserts one property of a recording. Every
assertion message carries the seed, so a failing run replays exactly.

Bounds are in ticks of `SimConfig.tick_s` (1 s). ``HOP`` is the most a batch of writes takes
to reach a connected node (`SimConfig.propagate_ticks`). A duplicate is gone within two hops
of the event that ends it: the news reaches the node that gives way (it stops its copy, or,
with ``keep-original``, writes the move home at once), and that move reaches the replacement.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from edgenode._placement import Assignment, NodeState, PodWants
from edgenode._placement_sim import PlacementSim, SimConfig, Written, mixed_cluster

CONFIG = SimConfig()
HOP = CONFIG.propagate_ticks[1]
SETTLE_S = 60.0
Runners = dict[str, list[str]]
Views = dict[str, dict[str, tuple[NodeState, float]]]


@dataclass
class Run:
    """One scenario's simulation and what it recorded."""

    sim: PlacementSim
    pods: dict[str, PodWants]
    start: dict[str, str | None]
    """Each pod's node before the scenario."""
    ran: list[tuple[float, Runners]] = field(default_factory=list)
    """At the end of each tick: its time and who ran each pod."""
    marks: dict[str, float] = field(default_factory=dict)
    """When each step of the scenario happened."""
    held: dict[str, dict[str, Assignment | None]] = field(default_factory=dict)
    """At each mark, the assignments as the first live node's store holds them."""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """Named nodes of the scenario (the crashed, the minority, the observers that suspected)."""
    views: dict[str, Views] = field(default_factory=dict)
    """Every node's membership view, at some marks."""

    def record(self) -> None:
        self.ran.append((self.sim.now, self.sim.runners()))

    def mark(self, name: str) -> None:
        self.marks[name] = self.sim.now
        live = next(n for n in self.sim.names if self.sim.nodes[n].up)
        self.held[name] = self.sim.assignments(live)

    def settle(self, name: str) -> None:
        def done() -> bool:
            if self.ran[-1][0] != self.sim.now:
                self.record()
            return self.sim.settled()

        ok = self.sim.run_until(done, limit_s=SETTLE_S)
        assert ok, f"seed={self.sim.seed}: not settled {SETTLE_S} s after {self.marks}"
        self.mark(name)

    def between(self, start: str, end: str) -> list[tuple[float, Runners]]:
        return [(t, r) for t, r in self.ran if self.marks[start] < t <= self.marks[end]]

    def writes(self, start: str, end: str) -> list[Written]:
        return [w for w in self.sim.trace if self.marks[start] < w.at <= self.marks[end]]


def begin(
    seed: int, config: SimConfig = CONFIG, lost_after: tuple[float, ...] = (5.0, 10.0)
) -> Run:
    nodes, pods = mixed_cluster(100, 1000, seed=seed, lost_after=lost_after)
    sim = PlacementSim(pods, nodes, seed=seed, config=config)
    start = {p: a.node if a else None for p, a in sim.assignments(sim.names[0]).items()}
    assert all(start.values()), f"seed={seed}: the cluster does not hold every pod"
    run = Run(sim, {p.name: p for p in pods}, start)
    run.mark("begin")
    run.record()
    return run


def movable(run: Run, pod: str) -> bool:
    """Whether a node loss moves the pod (``reschedule`` and not pinned)."""
    return run.pods[pod].policy == "reschedule" and run.pods[pod].pinned is None


def pods_of(run: Run, nodes: Iterable[str], *, moving: bool | None = None) -> list[str]:
    """The pods on `nodes` before the scenario; `moving`: only those a loss moves, or not."""
    on = set(nodes)
    return [p for p, n in run.start.items() if n in on and moving in (None, movable(run, p))]


def assert_one_runner_each_and_within_capacity(run: Run, pods: Iterable[str]) -> None:
    sim, seed = run.sim, run.sim.seed
    runners = sim.runners()
    wrong = {p: r for p in pods if len(r := runners[p]) != 1}
    assert not wrong, f"seed={seed}: pods not run exactly once: {sorted(wrong.items())[:5]}"
    live = next(n for n in sim.names if sim.nodes[n].up)
    for node, (cpu, memory) in sim.loads(live).items():
        cap_cpu, cap_memory = sim.capacity[node]
        assert cap_cpu is None or cpu <= cap_cpu, f"seed={seed}: {node} cpu {cpu} > {cap_cpu}"
        assert cap_memory is None or memory <= cap_memory, f"seed={seed}: {node} memory"


def duplicate_ticks(run: Run, start: str, end: str) -> list[float]:
    return [t for t, r in run.between(start, end) if any(len(v) > 1 for v in r.values())]


# -- ten nodes crash, detected at staggered times; two more fail one by one; all return ----

CRASH_CONFIG = SimConfig(dead_s=(3.0, 9.0))
"""Observers hold a crashed node dead 3 to 9 s after the crash: they disagree for 6 s."""


@pytest.fixture(scope="module")
def crash() -> Run:
    run = begin(7, CRASH_CONFIG)
    sim = run.sim
    victims = run.groups["victims"] = list(sim.names[5::10])
    run.mark("crash")
    sim.crash(*victims)
    run.settle("replaced")
    # A rolling failure, detected as usual: twice, the live node holding most of the first
    # victim's pods fails.
    sim.config = CONFIG
    chain = run.groups["chain"] = [victims[0]]
    for i in range(2):
        held = run.held["replaced" if i == 0 else "rolled0"]
        holders = Counter(a.node for p, a in held.items() if a and run.start[p] == chain[0])
        chain.append(max((n for n in holders if sim.nodes[n].up), key=lambda n: (holders[n], n)))
        run.mark(f"roll{i}")
        sim.crash(chain[-1])
        run.settle(f"rolled{i}")
    run.mark("restart")
    sim.restart(*victims, *chain[1:])
    run.settle("returned")
    return run


def test_after_ten_crashes_each_reschedule_pod_runs_once_on_a_live_node_after_lost_after(
    crash: Run,
) -> None:
    seed, moved = crash.sim.seed, pods_of(crash, crash.groups["victims"], moving=True)
    assert len(moved) > 50, f"seed={seed}: the crashed nodes held too few pods to show anything"
    # Its taker holds the node dead by then, plus a hop if another taker's moves had to reach
    # it first (until they do, a node it prefers may look full to it).
    late = CRASH_CONFIG.dead_s[1] + HOP
    for t, runners in crash.between("crash", "replaced"):
        for p in moved:
            if t >= crash.marks["crash"] + late + crash.pods[p].lost_after:
                assert len(runners[p]) == 1, f"seed={seed}: at {t} {p} runs on {runners[p]}"
    assert_one_runner_each_and_within_capacity(crash, moved)


def test_after_ten_crashes_no_pod_moves_before_its_lost_after_from_the_first_detection(
    crash: Run,
) -> None:
    earliest = crash.marks["crash"] + math.floor(CRASH_CONFIG.dead_s[0])
    moves = [w for w in crash.writes("crash", "replaced") if w.cause == "node-lost"]
    assert moves, f"seed={crash.sim.seed}: nothing moved"
    for w in moves:
        assert w.at >= earliest + crash.pods[w.pod].lost_after, f"seed={crash.sim.seed}: {w}"
        assert w.writer == w.node, f"seed={crash.sim.seed}: only the taker writes a move: {w}"


def test_after_ten_crashes_best_effort_and_pinned_pods_of_the_dead_never_run_elsewhere(
    crash: Run,
) -> None:
    stay = pods_of(crash, crash.groups["victims"], moving=False)
    assert any(crash.pods[p].policy == "best-effort" for p in stay), f"seed={crash.sim.seed}"
    for t, runners in crash.between("crash", "restart"):
        ran = {p: runners[p] for p in stay if runners[p]}
        assert not ran, f"seed={crash.sim.seed}: at {t}: {ran}"


def test_after_ten_crashes_the_pods_of_surviving_nodes_never_move_or_run_twice(
    crash: Run,
) -> None:
    survivors = set(crash.sim.names) - set(crash.groups["victims"])
    kept = set(pods_of(crash, survivors))
    written = [w for w in crash.writes("crash", "replaced") if w.pod in kept]
    assert not written, f"seed={crash.sim.seed}: {written[:3]}"
    for t, runners in crash.between("crash", "replaced"):
        wrong = [p for p in kept if runners[p] != [crash.start[p]]]
        assert not wrong, f"seed={crash.sim.seed}: at {t}: {wrong[:3]}"


def test_after_crashes_a_pod_runs_twice_only_where_two_takers_raced(crash: Run) -> None:
    # Two takers race when each moves the pod before the other's move could reach it.
    moves: dict[str, list[Written]] = {}
    for w in crash.writes("crash", "restart"):
        if w.kind == "move":
            moves.setdefault(w.pod, []).append(w)
    raced = {
        p
        for p, ms in moves.items()
        if any(b.writer != a.writer and b.at - a.at <= HOP for a, b in itertools.pairwise(ms))
    }
    for t, runners in crash.between("crash", "restart"):
        twice = {p for p, r in runners.items() if len(r) > 1}
        assert twice <= raced, f"seed={crash.sim.seed}: at {t}: {sorted(twice - raced)}"


def test_a_rolling_failure_moves_pods_on_and_keeps_their_first_original(crash: Run) -> None:
    seed, chain = crash.sim.seed, crash.groups["chain"]
    first, later = chain[0], chain[1:]
    before, after = crash.held["roll0"], crash.held["rolled1"]
    moved_on = [
        p
        for p, a in before.items()
        if crash.start[p] == first and a is not None and a.node in later and movable(crash, p)
    ]
    assert moved_on, f"seed={seed}: no pod of {first} was on a node that failed next"
    for p in moved_on:
        a = after[p]
        assert a is not None and a.node not in chain, f"seed={seed}: {p}: {a}"
        assert a.previous == first, f"seed={seed}: {p} forgot its first original: {a}"
    assert_one_runner_each_and_within_capacity(crash, pods_of(crash, later, moving=True))
    for i, node in enumerate(later):
        stay = pods_of(crash, [node], moving=False)
        for t, runners in crash.between(f"roll{i}", "restart"):
            ran = {p: runners[p] for p in stay if runners[p]}
            assert not ran, f"seed={seed}: at {t}, after {node} failed: {ran}"


def test_returned_nodes_take_back_keep_original_pods_and_keep_replacement_pods_stay(
    crash: Run,
) -> None:
    seed, now = crash.sim.seed, crash.held["returned"]
    lost = [*crash.groups["victims"], *crash.groups["chain"][1:]]
    for p in pods_of(crash, lost):
        a, wants = now[p], crash.pods[p]
        assert a is not None and a.previous is None, f"seed={seed}: {p}: {a}"
        home = a.node == crash.start[p]
        assert home == (not movable(crash, p) or wants.on_return == "keep-original"), (
            f"seed={seed}: {p} ({wants.policy}, {wants.on_return}) on {a.node}"
        )
    assert_one_runner_each_and_within_capacity(crash, crash.pods)


def test_a_returned_node_runs_stale_pods_only_until_its_store_catches_up(crash: Run) -> None:
    ticks = duplicate_ticks(crash, "restart", "returned")
    assert ticks, f"seed={crash.sim.seed}: a restarted node's stale store ran nothing twice"
    assert max(ticks) < crash.marks["restart"] + 2 * HOP, f"seed={crash.sim.seed}: {ticks}"


# -- a 40/60 partition past lostAfter, then the heal ----------------------------------------

SPLIT_S = 20.0
"""Longer than detection (6.5 s) and lostAfter (5 s), with room for the moves."""


@pytest.fixture(scope="module")
def split() -> Run:
    run = begin(5, lost_after=(5.0,))
    minority = run.groups["minority"] = [n for i, n in enumerate(run.sim.names) if i % 5 < 2]
    run.mark("split")
    run.sim.partition(minority)
    run.sim.run_for(SPLIT_S, run.record)
    run.mark("heal")
    run.sim.heal()
    run.settle("healed")
    return run


def test_in_a_40_60_split_the_minority_keeps_running_its_pods_and_takes_none(split: Run) -> None:
    seed, minority = split.sim.seed, set(split.groups["minority"])
    theirs = pods_of(split, minority)
    for t, runners in split.between("split", "heal"):
        stopped = [p for p in theirs if split.start[p] not in runners[p]]
        assert not stopped, f"seed={seed}: at {t}: {stopped[:3]}"
    wrote = [w for w in split.writes("split", "heal") if w.writer in minority]
    assert not wrote, f"seed={seed}: the minority wrote {wrote[:3]}"


def test_in_a_40_60_split_the_majority_replaces_exactly_the_minoritys_movable_pods(
    split: Run,
) -> None:
    seed, minority = split.sim.seed, set(split.groups["minority"])
    moving = set(pods_of(split, minority, moving=True))
    _, runners = split.between("split", "heal")[-1]
    twice = {p for p, r in runners.items() if len(r) > 1}
    assert twice == moving, f"seed={seed}: {sorted(twice ^ moving)[:5]}"
    for p in moving:
        assert len(set(runners[p]) - minority) == 1, f"seed={seed}: {p} on {runners[p]}"


def test_after_the_heal_duplicates_end_within_two_hops_and_no_pod_goes_unrun(split: Run) -> None:
    seed = split.sim.seed
    ticks = duplicate_ticks(split, "heal", "healed")
    assert ticks and max(ticks) < split.marks["heal"] + 2 * HOP, f"seed={seed}: {ticks}"
    for t, runners in split.between("heal", "healed"):
        idle = [p for p, r in runners.items() if not r]
        assert not idle, f"seed={seed}: at {t} nobody runs {idle[:3]}"


def test_after_the_heal_keep_original_pods_go_home_and_keep_replacement_pods_stay(
    split: Run,
) -> None:
    seed, now = split.sim.seed, split.held["healed"]
    for p in pods_of(split, split.groups["minority"], moving=True):
        a, wants = now[p], split.pods[p]
        assert a is not None and a.previous is None, f"seed={seed}: {p}: {a}"
        home = a.node == split.start[p]
        assert home == (wants.on_return == "keep-original"), f"seed={seed}: {p} on {a.node}"
    assert_one_runner_each_and_within_capacity(split, split.pods)


def test_after_the_heal_only_originals_move_pods_home_and_nothing_else_moves(split: Run) -> None:
    seed = split.sim.seed
    after = split.writes("heal", "healed")
    kinds = Counter(w.kind for w in after)
    assert kinds["settle"] > 0 and kinds["move"] > 0, f"seed={seed}: {kinds}"
    for w in after:
        assert w.kind in ("move", "settle"), f"seed={seed}: {w}"
        if w.kind == "move":
            assert w.cause == "original-returned" and w.node == w.writer, f"seed={seed}: {w}"
            assert split.start[w.pod] == w.writer, f"seed={seed}: {w}"


# -- a flapping node; the same seed, the same run ------------------------------------------

FLAPPER, CRASHED = "n042", "n077"


def flap_then_crash(seed: int, *, flaps: int = 2, crash_s: float = 12.0) -> Run:
    """`FLAPPER` is cut off for 3 s (suspected, never held dead) `flaps` times, 5 s apart;
    then `CRASHED` crashes and the run goes on for `crash_s` (its pods' lostAfter is 5 s)."""
    run = begin(seed, lost_after=(5.0,))
    sim, suspected = run.sim, set[str]()

    def watch() -> None:
        run.record()
        suspected.update(o for o in sim.names if sim.view(o).get(FLAPPER, ("",))[0] == "suspect")

    for i in range(flaps):
        sim.partition([FLAPPER])
        sim.run_for(3.0, watch)
        sim.heal()
        sim.run_for(5.0, watch)
        run.views[f"flap{i}"] = {o: sim.view(o) for o in sim.names}
    run.mark("flapped")
    run.groups["suspected"] = sorted(suspected)
    sim.crash(CRASHED)
    sim.run_for(crash_s, run.record)
    run.mark("end")
    return run


@pytest.fixture(scope="module")
def flap() -> Run:
    return flap_then_crash(3)


def test_a_flapping_node_is_suspected_but_no_pod_moves_or_is_written(flap: Run) -> None:
    seed, suspected = flap.sim.seed, flap.groups["suspected"]
    assert len(suspected) > 50, f"seed={seed}: only {len(suspected)} observers suspected"
    written = flap.writes("begin", "flapped")
    assert written == [], f"seed={seed}: {written[:3]}"
    for t, runners in flap.between("begin", "flapped"):
        moved = [p for p, r in runners.items() if r != [flap.start[p]]]
        assert not moved, f"seed={seed}: at {t}: {moved[:3]}"


def digest(run: Run) -> tuple[object, ...]:
    sim = run.sim
    views: Views = {o: sim.view(o) for o in sim.names}
    return sim.trace, sim.duplicates, sim.rounds(), views, run.ran, run.groups, run.views


def test_the_same_seed_gives_the_same_run_and_another_seed_another(flap: Run) -> None:
    assert [w for w in flap.sim.trace if w.cause == "node-lost"], "the run moved nothing"
    assert digest(flap_then_crash(flap.sim.seed)) == digest(flap)
    other = flap_then_crash(flap.sim.seed + 1, flaps=1, crash_s=0.0)
    assert other.views["flap0"] != flap.views["flap0"]  # when each observer believed what
