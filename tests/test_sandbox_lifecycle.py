"""The container lifecycle table, the restart policy's backoff, and the in-place update plan."""

from __future__ import annotations

import pytest

from sandbox._lifecycle import TRANSITIONS, Backoff, Lifecycle, LifecycleError, wants_restart
from sandbox._spec import ContainerDef, PodDef
from sandbox._update import plan_update

FAST = Backoff(initial_s=1.0, max_s=8.0, reset_s=60.0)


def running(policy: str = "always", *, now: float = 0.0) -> Lifecycle:
    life = Lifecycle(policy=policy, backoff=FAST)  # type: ignore[arg-type]
    life.start(now=now)
    life.started(now=now)
    return life


def test_backoff_doubles_from_initial_up_to_the_cap() -> None:
    assert [FAST.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_restart_policy_decides_by_exit_code() -> None:
    assert wants_restart("always", 0) and wants_restart("always", 1)
    assert wants_restart("on-failure", 1) and not wants_restart("on-failure", 0)
    assert not wants_restart("never", 1)


def test_crash_loop_waits_longer_each_time_and_counts_restarts() -> None:
    life = running("on-failure")
    waits = []
    now = 0.0
    for _ in range(5):
        now += 0.5
        life.exited(now=now, exit_code=1)
        assert life.state == "backoff"
        assert life.next_start_at is not None
        waits.append(life.next_start_at - now)
        assert not life.due(now=life.next_start_at - 0.01)
        now = life.next_start_at
        assert life.due(now=now)
        life.started(now=now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert life.restarts == 5


def test_a_long_run_resets_the_backoff() -> None:
    life = running()
    for t in (1.0, 3.0, 7.0):
        life.exited(now=t, exit_code=1)
        assert life.next_start_at is not None
        assert life.due(now=life.next_start_at)
        life.started(now=life.next_start_at)
    life.exited(now=life.started_at + 61.0, exit_code=1)  # type: ignore[operator]
    assert life.next_start_at == life.finished_at + FAST.initial_s  # type: ignore[operator]


def test_success_under_on_failure_finishes_with_its_exit_code() -> None:
    life = running("on-failure")
    life.exited(now=1.0, exit_code=0)
    assert (life.state, life.exit_code, life.final) == ("exited", 0, True)


def test_stop_while_running_signals_then_ends_stopped() -> None:
    life = running()
    assert life.stop(now=1.0) is True
    assert life.state == "stopping"
    life.exited(now=2.0, exit_code=143)
    assert (life.state, life.exit_code) == ("stopped", 143)


def test_stop_during_backoff_needs_no_signal() -> None:
    life = running()
    life.exited(now=1.0, exit_code=1)
    assert life.stop(now=1.1) is False
    assert life.state == "stopped" and life.next_start_at is None


def test_recycle_restarts_in_place_without_backoff() -> None:
    life = running()
    assert life.recycle(now=5.0) is True
    life.exited(now=5.5, exit_code=143)
    assert life.state == "starting"
    life.started(now=5.6)
    assert (life.state, life.restarts) == ("running", 1)


def test_start_failure_retries_unless_policy_is_never() -> None:
    retried = Lifecycle(policy="always", backoff=FAST)
    retried.start(now=0.0)
    retried.failed(now=0.0, message="no such file")
    assert retried.state == "backoff" and retried.next_start_at == 1.0
    given_up = Lifecycle(policy="never", backoff=FAST)
    given_up.start(now=0.0)
    given_up.failed(now=0.0, message="no such file")
    assert given_up.state == "exited" and given_up.message == "no such file"


def test_events_a_state_does_not_list_are_refused() -> None:
    life = Lifecycle(policy="always", backoff=FAST)
    with pytest.raises(LifecycleError, match="'started' is not valid in state 'created'"):
        life.started(now=0.0)


def test_every_transition_leads_to_a_known_state() -> None:
    for targets in TRANSITIONS.values():
        assert set(targets.values()) <= set(TRANSITIONS)


def pod(**containers: ContainerDef) -> PodDef:
    return PodDef(name="p", containers=containers)


WEB = ContainerDef(image="busybox", command=("httpd",), memory_bytes=1 << 26)
SIDE = ContainerDef(image="busybox", command=("sleep", "1000"))


def test_update_plan_restarts_only_the_changed_container() -> None:
    new_web = ContainerDef(image="busybox", command=("httpd", "-v"), memory_bytes=1 << 26)
    plan = plan_update(pod(web=WEB, side=SIDE), pod(web=new_web, side=SIDE), live_resize=True)
    assert plan == {"side": "keep", "web": "recreate"}


def test_update_plan_resizes_live_when_only_resources_change() -> None:
    bigger = ContainerDef(image="busybox", command=("httpd",), memory_bytes=1 << 27)
    old, new = pod(web=WEB, side=SIDE), pod(web=bigger, side=SIDE)
    assert plan_update(old, new, live_resize=True) == {"side": "keep", "web": "resize"}
    assert plan_update(old, new, live_resize=False) == {"side": "keep", "web": "recreate"}


def test_update_plan_adds_and_removes_containers() -> None:
    plan = plan_update(pod(web=WEB), pod(side=SIDE), live_resize=True)
    assert plan == {"side": "create", "web": "remove"}


def test_update_plan_recreates_every_container_when_the_host_port_names_change() -> None:
    def ported(*names: str) -> PodDef:
        relax = frozenset({"host-network"})
        containers = {"web": WEB, "side": SIDE}
        return PodDef(name="p", containers=containers, relaxations=relax, host_ports=names)

    every = {"side": "recreate", "web": "recreate"}
    assert plan_update(ported("http"), ported("admin", "http"), live_resize=True) == every
    assert plan_update(ported("http"), ported("http"), live_resize=True) == {
        "side": "keep",
        "web": "keep",
    }


def test_update_plan_reconfigures_on_policy_change_and_recreates_on_runtime_change() -> None:
    old = pod(web=WEB)
    policy = PodDef(name="p", containers={"web": WEB}, restart_policy="never")
    assert plan_update(old, policy, live_resize=True) == {"web": "reconfigure"}
    gvisor = PodDef(name="p", containers={"web": WEB}, runtime_class="gvisor")
    assert plan_update(old, gvisor, live_resize=True) == {"web": "recreate"}


def test_a_lost_run_is_due_again_at_once_unless_the_policy_is_never() -> None:
    life = running("always")
    life.lost(now=3.0, message="monitor gone")
    assert (life.state, life.next_start_at, life.exit_code) == ("backoff", 3.0, None)
    assert life.due(now=3.0)
    never = running("never")
    never.lost(now=3.0, message="monitor gone")
    assert never.state == "exited" and never.message == "monitor gone"
