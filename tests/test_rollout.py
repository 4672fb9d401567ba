"""Rollouts and deployment plans as data (`edgenode._rollout`, `edgenode._deployments`).

Each step is asserted on; the properties: a rollout driven to its end from any counts reaches
every replica on the target, never runs fewer replicas than it began with, and moves at most
`step` at a time.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgenode._deployments import is_writer, orphans, plan_deployment, ready
from edgenode._expand import expand
from edgenode._placement import pair_score
from edgenode._rollout import TRANSITIONS, RolloutSpec, begin, next_step, rollout_spec, state_of


def spec(to: str = "v2", step: int = 1, **start: int) -> RolloutSpec:
    return RolloutSpec(to=to, step=step, start=start or {"v1": 3, "v2": 0})


def test_a_balanced_rollout_surges_the_target_by_one_step() -> None:
    step = next_step({"v1": 3, "v2": 0}, spec(step=2), available=0)
    assert (step.kind, step.state, step.counts) == ("surge", "balanced", {"v1": 3, "v2": 2})
    assert step.message == "v2: 0 -> 2 replicas (step of 2)"


def test_a_surged_rollout_waits_for_the_new_replicas_then_drains_as_many() -> None:
    counts = {"v1": 3, "v2": 2}
    waiting = next_step(counts, spec(step=2), available=1)
    assert (waiting.kind, waiting.counts) == ("wait", None)
    assert waiting.message == "waiting for v2: 1 of 2 replicas running"
    drained = next_step(counts, spec(step=2), available=2)
    assert (drained.kind, drained.counts) == ("drain", {"v1": 1, "v2": 2})


def test_waiting_for_readiness_says_ready() -> None:
    wait_ready = RolloutSpec("v2", 1, wait_ready=True, start={"v1": 1, "v2": 0})
    assert "replicas ready" in next_step({"v1": 1, "v2": 1}, wait_ready, available=0).message


def test_the_last_step_is_the_rest_and_then_the_rollout_is_complete() -> None:
    assert next_step({"v1": 1, "v2": 2}, spec(step=2), 2).counts == {"v1": 1, "v2": 3}
    assert next_step({"v1": 1, "v2": 3}, spec(step=2), 3).counts == {"v1": 0, "v2": 3}
    done = next_step({"v1": 0, "v2": 3}, spec(step=2), 3)
    assert (done.kind, done.counts) == ("complete", None)


def test_a_paused_rollout_takes_no_step_but_a_finished_one_still_completes() -> None:
    paused = RolloutSpec("v2", 1, paused=True, start={"v1": 2, "v2": 0})
    assert next_step({"v1": 2, "v2": 0}, paused, 0).kind == "paused"
    assert next_step({"v1": 0, "v2": 2}, paused, 2).kind == "complete"


def test_drain_takes_from_the_version_with_most_replicas_first() -> None:
    three = RolloutSpec("v3", 1, start={"v1": 2, "v2": 2, "v3": 0})
    assert next_step({"v1": 2, "v2": 2, "v3": 1}, three, 1).counts == {"v1": 1, "v2": 2, "v3": 1}
    assert next_step({"v1": 1, "v2": 2, "v3": 2}, three, 2).counts == {"v1": 1, "v2": 1, "v3": 2}


def test_every_state_has_a_step_and_a_sentence() -> None:
    assert set(TRANSITIONS) == {"paused", "surged", "balanced", "done"}
    assert state_of({"v1": 0, "v2": 3}, spec()) == "done"


def test_begin_records_the_counts_to_go_back_to_and_reads_back_the_same() -> None:
    raw = begin({"v2": 1, "v1": 2}, to="v2", step=1, wait_ready=True)
    assert raw["start"] == {"v1": 2, "v2": 1}
    assert rollout_spec(raw) == RolloutSpec("v2", 1, True, False, {"v1": 2, "v2": 1})


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["v1", "v2", "v3"]), st.integers(0, 6), min_size=2),
    st.integers(1, 4),
    st.data(),
)
def test_a_rollout_driven_to_its_end_keeps_capacity_and_moves_at_most_a_step(
    start: dict[str, int], step: int, data: st.DataObject
) -> None:
    to = data.draw(st.sampled_from(sorted(start)))
    rollout = RolloutSpec(to, step, start=start)
    counts = dict(start)
    total = sum(start.values())
    for _ in range(100):
        s = next_step(counts, rollout, available=counts.get(to, 0))
        if s.kind == "complete":
            break
        assert s.counts is not None
        assert sum(s.counts.values()) >= total  # never fewer replicas than it began with
        assert abs(s.counts[to] - counts[to]) <= step
        counts = dict(s.counts)
    else:
        raise AssertionError(f"no end from {start} to {to}")
    assert counts[to] == total and sum(counts.values()) == total


# -- deployment plans -----------------------------------------------------------------------


def deployment(v1: int = 2, v2: int = 1, **spec_extra: Any) -> dict[str, Any]:
    template = {"spec": {"containers": {"c": {"image": "busybox"}}}}
    return {
        "kind": "PinnedDeployment",
        "metadata": {"name": "web", "revision": 3},
        "spec": {
            "versions": {
                "v1": {"replicas": v1, "template": template},
                "v2": {"replicas": v2, "template": template},
            },
            **spec_extra,
        },
    }


def with_status(pods: dict[str, Any], phase: str, **status: Any) -> dict[str, Any]:
    return {n: {**p, "status": {"phase": phase, **status}} for n, p in pods.items()}


def test_a_new_deployment_plans_its_pods_and_a_status_of_nothing_running() -> None:
    plan = plan_deployment(deployment(), {})
    assert list(plan.pods.create) == ["web-v1-0", "web-v1-1", "web-v2-0"]
    assert plan.status["versions"]["v1"] == {"replicas": 2, "running": 0, "ready": 0}
    assert plan.step is None and plan.foreign == ()


def test_pods_in_step_and_counted_leave_the_plan_idle() -> None:
    doc = deployment()
    pods = with_status(expand(doc), "Running")
    plan = plan_deployment(doc, pods)
    assert plan.pods.is_empty()
    assert plan.status["versions"] == {
        "v1": {"replicas": 2, "running": 2, "ready": 2},
        "v2": {"replicas": 1, "running": 1, "ready": 1},
    }
    assert plan.is_idle(plan.status) and not plan.is_idle({})


def test_a_pod_of_another_owner_is_never_overwritten_but_reported() -> None:
    doc = deployment(v1=1, v2=0)
    stranger = {"web-v1-0": {"kind": "Pod", "metadata": {"name": "web-v1-0"}, "spec": {}}}
    plan = plan_deployment(doc, stranger)
    assert plan.pods.is_empty() and plan.foreign == ("web-v1-0",)
    assert plan.status["conflicts"] == ["web-v1-0"]


def test_a_rollout_counts_only_available_target_pods() -> None:
    doc = deployment(
        v1=2, v2=1, rollout=begin({"v1": 2, "v2": 0}, to="v2", step=1, wait_ready=True)
    )
    pods = with_status(expand(doc), "Running", ready=False)
    plan = plan_deployment(doc, pods)
    assert plan.step is not None and plan.step.kind == "wait"
    assert plan.status["rollout"]["state"] == "surged"
    pods["web-v2-0"]["status"]["ready"] = True
    plan = plan_deployment(doc, pods)
    assert plan.step is not None and plan.step.counts == {"v1": 1, "v2": 1}


def test_a_pod_reporting_no_readiness_is_ready_when_it_runs() -> None:
    assert ready({"status": {"phase": "Running"}})
    assert not ready({"status": {"phase": "Running", "ready": False}})
    assert not ready({"status": {"phase": "Pending", "ready": True}})


def test_pods_of_a_deleted_deployment_are_orphans_by_its_name() -> None:
    pods = expand(deployment())
    assert orphans(pods, ["web"]) == {}
    assert orphans(pods, []) == {"web": ["web-v1-0", "web-v1-1", "web-v2-0"]}


def test_the_writer_is_the_last_editor_while_alive_else_the_preferred_alive_node() -> None:
    assert is_writer("web", "n2", ["n1", "n2"], "n2")
    assert not is_writer("web", "n2", ["n1", "n2"], "n1")
    preferred = min(["n1", "n3"], key=lambda n: (pair_score("web", n), n))
    for me in ("n1", "n3"):
        assert is_writer("web", "n2", ["n1", "n3"], me) == (me == preferred)
