"""The local reconciler: desired and observed pods in, a plan of named buckets out.

Pure tests: time is stepped by hand through ``now``; nothing runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from edgenode._reconcile import (
    CRASH_LOOP_RESTARTS,
    Desired,
    Observed,
    ObservedContainer,
    Plan,
    Waiting,
    reconcile,
)
from sandbox._spec import ContainerDef, PodDef, RestartPolicy

RUNNING = ObservedContainer("running")


def pod(
    name: str = "web",
    *,
    policy: RestartPolicy = "always",
    runtime_class: str = "runc",
    relaxations: frozenset[str] = frozenset(),
    **containers: ContainerDef,
) -> PodDef:
    return PodDef(
        name,
        containers or {"web": ContainerDef("busybox", memory_bytes=64 << 20)},
        restart_policy=policy,
        runtime_class=runtime_class,
        relaxations=relaxations,
    )


def want(p: PodDef, revision: int = 1) -> dict[str, Desired]:
    return {p.name: Desired(p.name, revision, p)}


def have(
    p: PodDef,
    revision: int | None = 1,
    *,
    busy: bool = False,
    **states: ObservedContainer,
) -> dict[str, Observed]:
    containers = {n: states.get(n, RUNNING) for n in p.containers}
    return {p.name: Observed(p.name, revision, p, containers, busy=busy)}


def backoff(until: float, *, restarts: int = 0, exit_code: int | None = 1) -> ObservedContainer:
    return ObservedContainer(
        "backoff", exit_code, restarts, next_start_at=until, finished_at=until - 10.0
    )


# -- pod-level buckets --------------------------------------------------------------------------


def test_new_pod_is_started() -> None:
    plan = reconcile(want(pod()), {}, now=0.0)
    assert plan == Plan(start=("web",))
    assert plan.pods() == {"web": "start"}


def test_same_revision_and_definition_needs_nothing() -> None:
    p = pod()
    plan = reconcile(want(p), have(p), now=0.0)
    assert plan == Plan(nothing=("web",))
    assert plan.next_wake is None


def test_env_change_updates_in_place_recreating_the_changed_container() -> None:
    old = pod(
        web=ContainerDef("busybox", env={"A": "1"}),
        sidecar=ContainerDef("busybox"),
    )
    new = replace(
        old, containers={**old.containers, "web": ContainerDef("busybox", env={"A": "2"})}
    )
    plan = reconcile(want(new, 2), have(old, 1), now=0.0)
    assert plan.update == {"web": {"sidecar": "keep", "web": "recreate"}}
    assert plan.pods() == {"web": "update"}


def test_resources_only_change_resizes_live_where_the_runtime_can() -> None:
    old = pod()
    new = pod(web=ContainerDef("busybox", memory_bytes=128 << 20))
    plan = reconcile(want(new, 2), have(old, 1), now=0.0, live_resize=lambda cls: True)
    assert plan.update == {"web": {"web": "resize"}}


def test_resources_only_change_recreates_where_the_runtime_cannot_resize() -> None:
    old = pod()
    new = pod(web=ContainerDef("busybox", memory_bytes=128 << 20))
    plan = reconcile(want(new, 2), have(old, 1), now=0.0, live_resize=lambda cls: False)
    assert plan.update == {"web": {"web": "recreate"}}


def test_gvisor_is_not_resized_live_by_default() -> None:
    old = pod(runtime_class="gvisor")
    new = pod(runtime_class="gvisor", web=ContainerDef("busybox", memory_bytes=128 << 20))
    assert reconcile(want(new, 2), have(old, 1), now=0.0).update == {"web": {"web": "recreate"}}
    old, new = replace(old, runtime_class="runc"), replace(new, runtime_class="runc")
    assert reconcile(want(new, 2), have(old, 1), now=0.0).update == {"web": {"web": "resize"}}


def test_a_change_of_runtime_class_recreates_even_where_both_resize_live() -> None:
    old = pod(runtime_class="runc")
    new = pod(runtime_class="crun", web=ContainerDef("busybox", memory_bytes=128 << 20))
    plan = reconcile(want(new, 2), have(old, 1), now=0.0, live_resize=lambda cls: True)
    assert plan.update == {"web": {"web": "recreate"}}


def test_new_revision_with_the_same_definition_is_an_update_that_keeps_everything() -> None:
    p = pod()
    plan = reconcile(want(p, 5), have(p, 4), now=0.0)
    assert plan.update == {"web": {"web": "keep"}}
    assert plan.nothing == ()


def test_unrecorded_revision_is_recorded_through_an_update() -> None:
    p = pod()
    assert reconcile(want(p, 1), have(p, None), now=0.0).update == {"web": {"web": "keep"}}


def test_removed_pod_is_deleted() -> None:
    plan = reconcile({}, have(pod()), now=0.0)
    assert plan == Plan(delete=("web",))


def test_pod_whose_sandbox_record_lost_its_definition_is_recreated() -> None:
    p = pod()
    broken = {"web": Observed("web", 1, None, {})}
    assert reconcile(want(p), broken, now=0.0) == Plan(recreate=("web",))
    # Not desired any more: simply deleted.
    assert reconcile({}, broken, now=0.0) == Plan(delete=("web",))


def test_turning_host_network_on_recreates_the_pod_instead_of_updating_it() -> None:
    old = pod()
    new = pod(relaxations=frozenset({"host-network"}))
    assert reconcile(want(new, 2), have(old, 1), now=0.0) == Plan(recreate=("web",))
    # Other pod-wide relaxations are an in-place update (every container recreated).
    other = pod(relaxations=frozenset({"privileged"}))
    assert reconcile(want(other, 2), have(old, 1), now=0.0).update == {"web": {"web": "recreate"}}


def test_busy_pod_is_left_alone_whatever_it_needs() -> None:
    p = pod()
    due = backoff(5.0)
    # Needs an update, and a container is due: still only busy.
    plan = reconcile(want(p, 2), have(p, 1, busy=True, web=due), now=10.0)
    assert plan == Plan(busy=("web",))
    # Not desired any more: not deleted while its workflow runs.
    assert reconcile({}, have(p, busy=True), now=0.0) == Plan(busy=("web",))


def test_buckets_are_sorted_by_name_whatever_the_input_order() -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    desired = {n: Desired(n, 1, pod(n)) for n in reversed(names)}
    plan = reconcile(desired, {}, now=0.0)
    assert plan.start == ("alpha", "beta", "mid", "zeta")
    observed = {n: have(pod(n))[n] for n in names}
    plan = reconcile({}, observed, now=0.0)
    assert plan.delete == ("alpha", "beta", "mid", "zeta")
    two = pod("p", b=ContainerDef("busybox"), a=ContainerDef("busybox"), c=ContainerDef("x"))
    plan = reconcile(want(two), have(two, c=backoff(1.0), a=backoff(1.0), b=backoff(1.0)), now=2.0)
    assert plan.restart == {"p": ("a", "b", "c")}


# -- containers: restarts, backoff, crash loops ------------------------------------------------


def test_container_whose_backoff_is_over_is_restarted() -> None:
    p = pod()
    plan = reconcile(want(p), have(p, web=backoff(8.0)), now=8.0)
    assert plan.restart == {"web": ("web",)}
    assert plan.nothing == ("web",)
    assert plan.waiting == {}
    assert plan.next_wake is None


def test_container_in_backoff_waits_until_its_time_and_wakes_the_daemon_then() -> None:
    p = pod(web=ContainerDef("busybox"), log=ContainerDef("busybox"))
    plan = reconcile(want(p), have(p, web=backoff(8.0, restarts=1), log=backoff(20.0)), now=0.5)
    assert plan.restart == {}
    wait = plan.waiting["web"]["web"]
    assert (wait.reason, wait.until, wait.restarts, wait.exit_code) == ("backoff", 8.0, 1, 1)
    assert wait.message == "restarting in 7.5 s (exited 1; restarted 1 time before)"
    assert wait.since == -2.0
    assert plan.next_wake == 8.0
    # Stepping the clock to the wake-up time makes it due; the other keeps waiting.
    later = reconcile(want(p), have(p, web=backoff(8.0, restarts=1), log=backoff(20.0)), now=8.0)
    assert later.restart == {"web": ("web",)}
    assert list(later.waiting["web"]) == ["log"]
    assert later.next_wake == 20.0


def test_crash_loop_is_named_in_the_waiting_message() -> None:
    p = pod()
    looping = backoff(40.0, restarts=5, exit_code=1)
    wait = reconcile(want(p), have(p, web=looping), now=0.0).waiting["web"]["web"]
    assert wait.reason == "crash-loop"
    assert wait.message == "restarting in 40.0 s (crash loop: exited 1 after 5 restarts)"
    below = backoff(40.0, restarts=CRASH_LOOP_RESTARTS - 1)
    assert reconcile(want(p), have(p, web=below), now=0.0).waiting["web"]["web"].reason == (
        "backoff"
    )
    stricter = reconcile(want(p), have(p, web=below), now=0.0, crash_loop_after=1)
    assert stricter.waiting["web"]["web"].reason == "crash-loop"


def test_failed_start_waits_with_the_sandboxs_reason() -> None:
    p = pod()
    failed = ObservedContainer("backoff", None, 0, 10.0, "exec: no such file", 0.0)
    wait = reconcile(want(p), have(p, web=failed), now=0.0).waiting["web"]["web"]
    assert wait == Waiting(
        "failed-to-start",
        10.0,
        0,
        None,
        "restarting in 10.0 s (failed to start: exec: no such file)",
        0.0,
    )


def test_lost_run_is_due_at_once() -> None:
    p = pod()
    lost = ObservedContainer("backoff", None, 2, 100.0, "its monitor ended", 100.0)
    assert reconcile(want(p), have(p, web=lost), now=100.0).restart == {"web": ("web",)}


def test_backoff_without_a_time_is_restarted_rather_than_stuck() -> None:
    p = pod()
    odd = ObservedContainer("backoff", 1, 0, None)
    assert reconcile(want(p), have(p, web=odd), now=0.0).restart == {"web": ("web",)}


def test_containers_never_started_or_left_stopped_are_started() -> None:
    p = pod(
        a=ContainerDef("busybox"),
        b=ContainerDef("busybox"),
        c=ContainerDef("busybox"),
        d=ContainerDef("busybox"),
    )
    states = {"a": ObservedContainer("created"), "b": ObservedContainer("stopped")}
    states["c"] = ObservedContainer("starting")
    observed = {"web": Observed("web", 1, p, states)}  # d has no state at all
    assert reconcile(want(p), observed, now=0.0).restart == {"web": ("a", "b", "c", "d")}


def test_stopping_and_restarting_containers_are_left_to_finish() -> None:
    p = pod(a=ContainerDef("busybox"), b=ContainerDef("busybox"))
    observed = have(p, a=ObservedContainer("stopping"), b=ObservedContainer("restarting"))
    assert reconcile(want(p), observed, now=0.0) == Plan(nothing=("web",))


def test_completed_container_under_on_failure_is_reported_not_restarted() -> None:
    p = pod(policy="on-failure")
    done = ObservedContainer("exited", 0, 0, finished_at=3.0)
    plan = reconcile(want(p), have(p, web=done), now=10.0)
    assert plan.restart == {}
    assert plan.nothing == ("web",)
    assert plan.waiting["web"]["web"] == Waiting(
        "completed",
        None,
        0,
        0,
        "completed (exit code 0); restart policy on-failure does not start it again",
        3.0,
    )
    assert plan.next_wake is None


def test_failed_container_under_never_is_reported_with_its_exit_code() -> None:
    p = pod(policy="never")
    wait = reconcile(want(p), have(p, web=ObservedContainer("exited", 2)), now=0.0)
    assert wait.waiting["web"]["web"].reason == "exited"
    assert wait.waiting["web"]["web"].message == (
        "exited with code 2; restart policy never does not start it again"
    )
    gave_up = ObservedContainer("exited", None, 0, None, "image not found")
    message = reconcile(want(p), have(p, web=gave_up), now=0.0).waiting["web"]["web"].message
    assert message == "not running (image not found); restart policy never does not start it again"


def test_the_desired_restart_policy_has_the_last_word() -> None:
    old = pod(policy="never")
    new = pod(policy="always")
    exited = ObservedContainer("exited", 1)
    # Policy changed to always: the exited container starts again, along with the update.
    plan = reconcile(want(new, 2), have(old, 1, web=exited), now=0.0)
    assert plan.update == {"web": {"web": "reconfigure"}}
    assert plan.restart == {"web": ("web",)}
    # Policy changed to never: a pending backoff restart is dropped and reported.
    plan = reconcile(want(old, 3), have(new, 2, web=backoff(5.0)), now=10.0)
    assert plan.restart == {}
    assert plan.waiting["web"]["web"].reason == "exited"


def test_containers_the_update_recreates_are_not_also_restarted() -> None:
    old = pod(web=ContainerDef("busybox"), keep=ContainerDef("busybox"))
    new = replace(
        old, containers={**old.containers, "web": ContainerDef("busybox", env={"A": "1"})}
    )
    plan = reconcile(want(new, 2), have(old, 1, web=backoff(1.0), keep=backoff(1.0)), now=5.0)
    assert plan.update == {"web": {"keep": "keep", "web": "recreate"}}
    assert plan.restart == {"web": ("keep",)}


# -- properties ---------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])
CONTAINER_NAMES = st.sampled_from(["x", "y", "z"])
STATES = st.sampled_from(
    ["created", "starting", "running", "backoff", "restarting", "stopping", "exited", "stopped"]
)
TIMES = st.none() | st.integers(0, 20).map(float)


@st.composite
def pod_defs(draw: st.DrawFn, name: str) -> PodDef:
    names = draw(st.lists(CONTAINER_NAMES, min_size=1, max_size=3, unique=True))
    containers = {
        n: ContainerDef(
            draw(st.sampled_from(["busybox", "alpine"])),
            memory_bytes=draw(st.sampled_from([None, 64 << 20])),
        )
        for n in names
    }
    return PodDef(
        name,
        containers,
        restart_policy=draw(st.sampled_from(["always", "on-failure", "never"])),
        runtime_class=draw(st.sampled_from(["runc", "gvisor"])),
        relaxations=draw(st.sampled_from([frozenset(), frozenset({"host-network"})])),
    )


observed_containers = st.builds(
    ObservedContainer,
    STATES,
    st.none() | st.integers(0, 2),
    st.integers(0, 6),
    TIMES,
    st.none() | st.just("could not start"),
    TIMES,
)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict[str, Desired], dict[str, Observed], float]:
    desired: dict[str, Desired] = {}
    for n in draw(st.lists(NAMES, unique=True)):
        desired[n] = Desired(n, draw(st.integers(1, 3)), draw(pod_defs(n)))
    observed: dict[str, Observed] = {}
    for n in draw(st.lists(NAMES, unique=True)):
        if n in desired and draw(st.booleans()):
            definition: PodDef | None = desired[n].pod  # often the same definition
        else:
            definition = draw(st.none() | pod_defs(n))
        names = draw(st.lists(CONTAINER_NAMES, unique=True, max_size=3))
        states = {c: draw(observed_containers) for c in names}
        revision = draw(st.none() | st.integers(1, 3))
        observed[n] = Observed(n, revision, definition, states, busy=draw(st.booleans()))
    return desired, observed, float(draw(st.integers(0, 20)))


@given(worlds())
def test_every_pod_lands_in_exactly_one_pod_bucket(
    world: tuple[dict[str, Desired], dict[str, Observed], float],
) -> None:
    desired, observed, now = world
    plan = reconcile(desired, observed, now=now)
    buckets: list[tuple[str, ...]] = [
        plan.start,
        tuple(plan.update),
        plan.recreate,
        plan.delete,
        plan.nothing,
        plan.busy,
    ]
    listed = [n for b in buckets for n in b]
    assert sorted(listed) == sorted(desired.keys() | observed.keys())
    assert len(listed) == len(set(listed))
    for bucket in buckets:
        assert list(bucket) == sorted(bucket)
    # Container verdicts only for pods that are observed, desired, and kept in place.
    judged = set(plan.update) | set(plan.nothing)
    assert set(plan.restart) <= judged and set(plan.waiting) <= judged
    for name in judged:
        definition = desired[name].pod.containers
        due = plan.restart.get(name, ())
        held = plan.waiting.get(name, {})
        assert list(due) == sorted(due) and list(held) == sorted(held)
        assert not set(due) & set(held)
        assert set(due) | set(held) <= set(definition)
        assert all(plan.update.get(name, {}).get(c, "keep") != "recreate" for c in due)
    untils = [w.until for h in plan.waiting.values() for w in h.values() if w.until is not None]
    assert plan.next_wake == min(untils, default=None)
    assert plan.next_wake is None or plan.next_wake > now


@given(worlds())
def test_reconcile_is_deterministic(
    world: tuple[dict[str, Desired], dict[str, Observed], float],
) -> None:
    desired, observed, now = world
    first = reconcile(desired, observed, now=now)
    again = reconcile(dict(reversed(desired.items())), dict(reversed(observed.items())), now=now)
    assert first == again
    assert _ordered(first) == _ordered(again)


def _ordered(plan: Plan) -> list[object]:
    def items(m: Mapping[str, object]) -> list[tuple[str, object]]:
        return [(k, items(v) if isinstance(v, Mapping) else v) for k, v in m.items()]

    return [items(plan.update), items(plan.restart), items(plan.waiting)]
