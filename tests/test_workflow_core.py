"""The workflow core: graph checks, user step insertion, a run's state table, the critical chain
and drawing. Pure: time is stepped by hand (`now=0.0`, then `0.2`), nothing sleeps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edgenode._workflow import (
    FINAL,
    TRANSITIONS,
    Run,
    RunRecord,
    RunStateError,
    Step,
    StepRecord,
    UserStep,
    Workflow,
    WorkflowError,
    abandoned,
    build,
    critical_chain,
)
from edgenode._workflow_draw import explain, format_duration, to_dot, to_mermaid, to_text

POD_START = [
    Step("image.ensure"),
    Step("volumes.prepare"),
    Step("network.attach", after=("image.ensure", "volumes.prepare")),
    Step("sandbox.create", after=("network.attach",)),
    Step("process.start", after=("sandbox.create",)),
    Step("health.wait", after=("process.start",)),
    Step("status.publish", after=("health.wait",)),
]


def pod_start(*user: UserStep, **changes: Step) -> Workflow:
    steps = [changes.get(s.name.replace(".", "_"), s) for s in POD_START]
    return build("pod.start", steps, user)


def succeed(run: Run, *steps: str, now: float) -> None:
    """Run `steps` one after the other, 0.1 s each, from `now`."""
    for step in steps:
        run.started(step, now=now)
        now += 0.1
        run.succeeded(step, now=now)


# --- building ----------------------------------------------------------------------------------


def test_build_orders_steps_topologically_and_stably() -> None:
    shuffled = [POD_START[i] for i in (6, 5, 4, 3, 2, 1, 0)]
    assert list(build("pod.start", shuffled).steps) == [
        "volumes.prepare",
        "image.ensure",
        "network.attach",
        "sandbox.create",
        "process.start",
        "health.wait",
        "status.publish",
    ]


def test_build_names_the_cycle() -> None:
    steps = [Step("a", after=("c",)), Step("b", after=("a",)), Step("c", after=("b",))]
    with pytest.raises(WorkflowError, match=r"workflow w: .*cycle: a → c → b → a"):
        build("w", steps)


def test_a_step_that_waits_for_itself_is_a_cycle() -> None:
    with pytest.raises(WorkflowError, match=r"cycle: a → a"):
        build("w", [Step("a", after=("a",))])


def test_build_refuses_an_unknown_dependency_naming_both_steps() -> None:
    steps = [Step("image.ensure"), Step("network.attach", after=("image.ensur",))]
    with pytest.raises(WorkflowError) as err:
        build("pod.start", steps)
    assert str(err.value) == (
        "workflow pod.start: step 'network.attach' runs after 'image.ensur', which is not a step"
        " of this workflow (its steps: image.ensure, network.attach)"
    )


def test_build_refuses_duplicate_step_names() -> None:
    with pytest.raises(WorkflowError, match=r"two steps are named 'a'"):
        build("w", [Step("a"), Step("a")])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Step("Bad Name"), "step name 'Bad Name' is not valid"),
        (lambda: Step("a", timeout_s=0), "timeout_s must be a finite number > 0"),
        (lambda: Step("a", retries=-1), "retries must be an integer >= 0"),
        (lambda: Step("a", after="b"), "after must be a tuple"),  # type: ignore[arg-type]
        (lambda: Step("a", on_failure="x"), "on_failure must be 'fail' or"),  # type: ignore[arg-type]
        (lambda: UserStep("u", run="hook.sh", before="a"), "must be an absolute path"),
        (lambda: UserStep("u", run="/bin/true"), "exactly one of before or after"),
        (lambda: UserStep("u", run="/bin/true", before="a", after="b"), "exactly one of"),
        (lambda: UserStep("u", run="/bin/true", after="a", timeout_s=-1), "timeout_s must be"),
    ],
)
def test_bad_steps_are_refused_when_made(make: Callable[[], object], message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        make()


def test_a_user_step_at_an_unknown_point_is_refused_with_the_points() -> None:
    user = UserStep("audit", run="/bin/true", before="network.atach")
    with pytest.raises(WorkflowError, match=r"user step 'audit' is to run before 'network.atach'"):
        pod_start(user)


def test_a_user_step_may_not_take_a_built_in_name() -> None:
    with pytest.raises(WorkflowError, match=r"user step 'image.ensure' has the name of a step"):
        pod_start(UserStep("image.ensure", run="/bin/true", after="health.wait"))


def test_user_step_before_takes_the_points_dependencies_and_precedes_it() -> None:
    wf = pod_start(UserStep("audit", run="/usr/bin/audit", before="network.attach", timeout_s=5))
    assert wf.steps["audit"].after == ("image.ensure", "volumes.prepare")
    assert wf.steps["network.attach"].after == ("image.ensure", "volumes.prepare", "audit")
    assert wf.steps["audit"].user == "/usr/bin/audit"
    assert wf.steps["audit"].timeout_s == 5
    assert list(wf.steps).index("audit") == list(wf.steps).index("network.attach") - 1


def test_user_step_after_follows_the_point_and_precedes_its_dependents() -> None:
    wf = pod_start(UserStep("notify", run="/usr/bin/notify", after="network.attach"))
    assert wf.steps["notify"].after == ("network.attach",)
    assert wf.steps["sandbox.create"].after == ("network.attach", "notify")
    assert ("notify", "sandbox.create") in wf.edges()


def test_user_steps_at_the_same_point_run_concurrently() -> None:
    wf = pod_start(
        UserStep("a", run="/bin/a", before="sandbox.create"),
        UserStep("b", run="/bin/b", before="sandbox.create"),
        UserStep("c", run="/bin/c", after="health.wait"),
        UserStep("d", run="/bin/d", after="health.wait"),
    )
    assert wf.steps["a"].after == wf.steps["b"].after == ("network.attach",)
    assert wf.steps["sandbox.create"].after == ("network.attach", "a", "b")
    assert wf.steps["c"].after == wf.steps["d"].after == ("health.wait",)
    assert wf.steps["status.publish"].after == ("health.wait", "c", "d")


def test_a_user_step_may_be_placed_relative_to_another_user_step() -> None:
    wf = pod_start(
        UserStep("late", run="/bin/late", before="network.attach"),
        UserStep("early", run="/bin/early", before="late"),
    )
    assert wf.ancestors("network.attach") >= {"late", "early"}
    assert "early" in wf.steps["late"].after


# --- running -----------------------------------------------------------------------------------


def test_every_state_the_table_lists_reaches_a_final_state() -> None:
    assert set(TRANSITIONS) == set(FINAL) | {"pending", "running", "retrying"}
    for state in ("pending", "running", "retrying"):
        assert "cancel" in TRANSITIONS[state]


def test_independent_steps_are_ready_together_and_dependents_wait_for_all() -> None:
    run = Run(pod_start(), "r1", now=0.0)
    assert run.ready(now=0.0) == ["image.ensure", "volumes.prepare"]
    run.started("image.ensure", now=0.0)
    run.started("volumes.prepare", now=0.0)
    assert run.ready(now=0.0) == []
    run.succeeded("image.ensure", now=0.2)
    assert run.ready(now=0.2) == []
    with pytest.raises(RunStateError, match=r"it waits for volumes.prepare"):
        run.started("network.attach", now=0.2)
    run.succeeded("volumes.prepare", now=0.3)
    assert run.ready(now=0.3) == ["network.attach"]


def test_a_run_whose_steps_all_succeed_succeeds_with_merged_annotations() -> None:
    run = Run(pod_start(), "r1", now=0.0, target="Pod/web")
    now = 0.0
    while not run.done:
        for step in run.ready(now=now):
            run.started(step, now=now)
            run.succeeded(step, now=now + 0.1, annotations={"last": step, step: "ok"})
        now += 0.1
    record = run.record()
    assert (record.outcome, record.failed_step, record.error) == ("succeeded", None, None)
    assert record.annotations["last"] == "status.publish"
    assert record.annotations["image.ensure"] == "ok"
    assert record.ended_at == pytest.approx(0.6)


def test_a_failure_skips_dependents_and_fails_the_run_naming_the_step() -> None:
    run = Run(pod_start(), "r1", now=0.0)
    succeed(run, "image.ensure", "volumes.prepare", "network.attach", "sandbox.create", now=0.0)
    run.started("process.start", now=1.0)
    run.failed("process.start", now=1.5, error="exec: not found")
    assert run.done and run.outcome == "failed"
    assert run.failed_step == ("process.start", "exec: not found")
    record = run.record()
    assert record.steps["health.wait"].state == "skipped"
    assert record.steps["health.wait"].error == "process.start failed"
    assert record.steps["status.publish"].state == "skipped"
    assert (record.failed_step, record.error, record.ended_at) == (
        "process.start",
        "exec: not found",
        1.5,
    )


def test_after_a_failure_running_steps_finish_and_nothing_new_starts() -> None:
    run = Run(pod_start(), "r1", now=0.0)
    run.started("image.ensure", now=0.0)
    run.started("volumes.prepare", now=0.0)
    run.failed("image.ensure", now=0.1, error="pull: 404")
    assert not run.done and run.outcome == "running"
    assert run.failed_step == ("image.ensure", "pull: 404")
    assert run.ready(now=0.1) == []
    assert run.state("network.attach") == "skipped"
    run.succeeded("volumes.prepare", now=0.4)
    assert run.done and run.outcome == "failed"
    assert run.record().steps["volumes.prepare"].state == "succeeded"


def test_a_step_unrelated_to_the_failure_is_skipped_saying_where_the_run_failed() -> None:
    wf = build("w", [Step("a"), Step("b"), Step("c", after=("b",))])
    run = Run(wf, "r1", now=0.0)
    run.started("a", now=0.0)
    run.failed("a", now=0.1, error="boom")
    assert run.record().steps["b"].error == "the run failed at a"


def test_on_failure_continue_lets_dependents_run_and_the_run_succeed() -> None:
    run = Run(pod_start(volumes_prepare=Step("volumes.prepare", on_failure="continue")), "r", now=0)
    run.started("image.ensure", now=0.0)
    run.started("volumes.prepare", now=0.0)
    run.succeeded("image.ensure", now=0.1)
    run.failed("volumes.prepare", now=0.1, error="disk full")
    assert run.ready(now=0.1) == ["network.attach"]
    for step in ("network.attach", "sandbox.create", "process.start", "health.wait"):
        succeed(run, step, now=0.2)
    succeed(run, "status.publish", now=0.3)
    assert run.outcome == "succeeded" and run.failed_step is None
    assert run.record().steps["volumes.prepare"].state == "failed"


def test_a_failed_attempt_is_retried_after_its_delay() -> None:
    wf = build("w", [Step("pull", retries=2, retry_delay_s=0.5), Step("run", after=("pull",))])
    run = Run(wf, "r1", now=0.0)
    run.started("pull", now=0.0)
    assert run.get_timer() is None
    run.failed("pull", now=1.0, error="503")
    assert run.state("pull") == "retrying"
    assert run.get_timer() == 1.5
    assert run.ready(now=1.4) == []
    with pytest.raises(RunStateError, match=r"retry is due at 1.5"):
        run.started("pull", now=1.4)
    assert run.ready(now=1.5) == ["pull"]
    run.started("pull", now=1.5)
    assert run.get_timer() is None
    run.succeeded("pull", now=2.0)
    record = run.record().steps["pull"]
    assert (record.state, record.attempts, record.started_at, record.error) == (
        "succeeded",
        2,
        0.0,
        None,
    )


def test_a_step_that_keeps_failing_fails_after_its_last_retry() -> None:
    wf = build("w", [Step("pull", retries=1, retry_delay_s=0.0)])
    run = Run(wf, "r1", now=0.0)
    run.started("pull", now=0.0)
    run.failed("pull", now=0.1, error="first")
    run.started("pull", now=0.1)
    run.failed("pull", now=0.2, error="second")
    assert run.outcome == "failed" and run.failed_step == ("pull", "second")
    assert run.attempts("pull") == 2


def test_a_timeout_is_retried_then_ends_timed_out() -> None:
    wf = build("w", [Step("health.wait", retries=1, retry_delay_s=0.0, timeout_s=1)])
    run = Run(wf, "r1", now=0.0)
    run.started("health.wait", now=0.0)
    run.failed("health.wait", now=1.0, error="timed out after 1s", timed_out=True)
    assert run.state("health.wait") == "retrying"
    run.started("health.wait", now=1.0)
    run.failed("health.wait", now=2.0, error="timed out after 1s", timed_out=True)
    assert run.state("health.wait") == "timed-out"
    assert run.outcome == "failed"


def test_a_failure_no_retry_can_mend_is_not_retried() -> None:
    run = Run(build("w", [Step("a", retries=3)]), "r1", now=0.0)
    run.started("a", now=0.0)
    run.failed("a", now=0.1, error="no runner for step a", retry=False)
    assert run.state("a") == "failed" and run.done


def test_a_step_waiting_to_retry_gives_up_when_the_run_fails() -> None:
    wf = build("w", [Step("a", retries=3, retry_delay_s=5), Step("b")])
    run = Run(wf, "r1", now=0.0)
    run.started("a", now=0.0)
    run.started("b", now=0.0)
    run.failed("a", now=0.1, error="flaky")
    run.failed("b", now=0.2, error="broken")
    assert run.state("a") == "failed" and run.get_timer() is None
    assert run.done and run.failed_step == ("b", "broken")


def test_a_veto_fails_the_run_at_once_whatever_the_policy_and_retries() -> None:
    wf = pod_start(
        UserStep("policy", run="/bin/policy", before="image.ensure", on_failure="continue")
    )
    run = Run(wf, "r1", now=0.0)
    assert run.ready(now=0.0) == ["policy", "volumes.prepare"]
    run.started("policy", now=0.0)
    run.vetoed("policy", now=0.1, reason="image not signed")
    assert run.done and run.outcome == "failed"
    assert run.failed_step == ("policy", "vetoed: image not signed")
    assert run.record().steps["image.ensure"].error == "policy was vetoed"


def test_cancelling_cancels_every_unfinished_step() -> None:
    run = Run(pod_start(), "r1", now=0.0)
    succeed(run, "image.ensure", now=0.0)
    run.started("volumes.prepare", now=0.1)
    run.cancelled(now=0.5)
    record = run.record()
    assert record.outcome == "cancelled" and record.error == "the run was cancelled"
    assert record.steps["image.ensure"].state == "succeeded"
    assert {record.steps[s].state for s in ("volumes.prepare", "status.publish")} == {"cancelled"}
    with pytest.raises(RunStateError, match=r"already cancelled"):
        run.cancelled(now=0.6)


def test_events_the_table_does_not_allow_are_refused_without_change() -> None:
    run = Run(pod_start(), "r1", now=0.0)
    with pytest.raises(RunStateError, match=r"step 'image.ensure' is pending; it cannot succeed"):
        run.succeeded("image.ensure", now=0.0)
    with pytest.raises(RunStateError, match=r"has no step 'nope'"):
        run.started("nope", now=0.0)
    assert run.state("image.ensure") == "pending"


def test_an_empty_workflow_succeeds_at_once() -> None:
    run = Run(build("noop", []), "r1", now=3.0)
    assert run.done and run.outcome == "succeeded" and run.record().ended_at == 3.0


# --- records -----------------------------------------------------------------------------------


def record_of(*steps: StepRecord, outcome: str = "succeeded", **fields: object) -> RunRecord:
    ended = max((s.ended_at or 0.0) for s in steps)
    base: dict[str, object] = {
        "run_id": "abc123",
        "workflow": "pod.start",
        "target": "Pod/web",
        "started_at": 100.0,
        "ended_at": ended,
        "outcome": outcome,
        "steps": {s.name: s for s in steps},
    }
    return RunRecord(**{**base, **fields})  # type: ignore[arg-type]


def ok(name: str, start: float, end: float, *after: str) -> StepRecord:
    return StepRecord(name, after, "succeeded", started_at=100 + start, ended_at=100 + end)


HAND_BUILT = record_of(
    ok("image.ensure", 0.0, 1.2),
    ok("volumes.prepare", 0.0, 0.3),
    ok("network.attach", 1.2, 1.5, "image.ensure", "volumes.prepare"),
    ok("dns.register", 1.5, 1.6, "network.attach"),
    ok("process.start", 1.5, 2.0, "network.attach"),
    ok("status.publish", 2.0, 2.1, "process.start", "dns.register"),
)


def test_critical_chain_follows_the_dependency_that_ended_last() -> None:
    chain = critical_chain(HAND_BUILT)
    assert [name for name, _, _ in chain] == [
        "image.ensure",
        "network.attach",
        "process.start",
        "status.publish",
    ]
    name, at, took = chain[1]
    assert (name, round(at, 6), round(took, 6)) == ("network.attach", 1.2, 0.3)


def test_critical_chain_leaves_out_steps_that_never_ran() -> None:
    record = record_of(
        ok("a", 0.0, 1.0),
        StepRecord("b", ("a",), "failed", started_at=101.0, ended_at=101.5, error="x"),
        StepRecord("c", ("b",), "skipped", ended_at=101.5, error="b failed"),
        outcome="failed",
    )
    assert [name for name, _, _ in critical_chain(record)] == ["a", "b"]


def test_a_record_survives_json_unchanged() -> None:
    run = Run(pod_start(UserStep("u", run="/bin/u", after="image.ensure")), "r1", now=0.0)
    succeed(run, "image.ensure", now=0.0)
    run.started("u", now=0.2)
    run.succeeded("u", now=0.3, annotations={"k": "v"})
    record = run.record()
    assert RunRecord.from_json(record.to_json()) == record
    assert record.steps["u"].user and record.annotations == {"k": "v"}


def test_a_malformed_stored_record_is_refused() -> None:
    with pytest.raises(WorkflowError, match=r"not a stored workflow run record"):
        RunRecord.from_json({"format": 1, "run_id": "x"})


def test_an_abandoned_running_record_is_closed_as_cancelled() -> None:
    run = Run(pod_start(), "r1", now=0.0)
    succeed(run, "image.ensure", now=0.0)
    run.started("volumes.prepare", now=0.1)
    closed = abandoned(run.record(), now=9.0, reason="the node stopped during the run")
    assert closed.outcome == "cancelled" and closed.ended_at == 9.0
    assert closed.steps["image.ensure"].state == "succeeded"
    assert closed.steps["volumes.prepare"].state == "cancelled"
    assert closed.steps["volumes.prepare"].error == "the node stopped during the run"


# --- drawing -----------------------------------------------------------------------------------


def failed_run() -> RunRecord:
    wf = pod_start(UserStep("audit", run="/bin/audit", before="network.attach"))
    run = Run(wf, "abc123", now=0.0, target="Pod/web")
    run.started("image.ensure", now=0.0)
    run.started("volumes.prepare", now=0.0)
    run.succeeded("image.ensure", now=0.012)
    run.succeeded("volumes.prepare", now=0.003)
    succeed(run, "audit", now=0.012)
    succeed(run, "network.attach", now=0.112)
    succeed(run, "sandbox.create", now=0.212)
    run.started("process.start", now=0.312)
    run.failed("process.start", now=0.32, error="exec: not found")
    return run.record()


def test_durations_read_like_a_person_would_write_them() -> None:
    assert [format_duration(s) for s in (0.0123, 1.234, 125, 3725)] == [
        "12ms",
        "1.23s",
        "2m05s",
        "1h02m",
    ]


def test_text_marks_each_step_and_ends_with_the_critical_chain() -> None:
    lines = to_text(failed_run()).splitlines()
    assert lines[0] == "pod.start Pod/web run abc123: failed after 320ms at process.start:" + (
        " exec: not found"
    )
    assert "  ✓ image.ensure 12ms" in lines
    assert "  ✓ audit 100ms (user step)" in lines
    assert "  ✗ process.start: exec: not found (8ms)" in lines
    assert "  - health.wait skipped: process.start failed" in lines
    chain = lines[lines.index("critical chain:") + 1 :]
    assert chain[0] == "  image.ensure @0ms +12ms"
    assert chain[-1] == "  process.start @312ms +8ms"


def test_text_shows_a_live_run_with_running_steps_and_retries() -> None:
    wf = build("w", [Step("pull", retries=2), Step("volumes")])
    run = Run(wf, "r9", now=0.0)
    run.started("pull", now=0.0)
    run.started("volumes", now=0.0)
    run.failed("pull", now=0.5, error="503")
    text = to_text(run.record(), now=1.0)
    assert "w run r9: running for 1.00s" in text
    assert "  ↻ pull retrying after: 503 (attempt 1 of 3)" in text
    assert "  ▸ volumes running 1.00s" in text


def test_explain_points_at_the_failing_step_and_what_it_blocked() -> None:
    assert explain(failed_run()) == (
        "Pod/web: pod.start run abc123 failed at step process.start: exec: not found."
        " Not run because of it: health.wait, status.publish."
    )


def test_dot_draws_states_edges_user_steps_and_the_critical_chain() -> None:
    dot = to_dot(failed_run()).splitlines()
    assert dot[0] == 'digraph "pod.start" {'
    assert (
        '  "process.start" [label="✗ process.start\\n8ms: exec: not found",'
        ' fillcolor="#ffcdd2", color="#c62828"];'
    ) in dot
    assert any(line.startswith('  "audit" [') and "dashed" in line for line in dot)
    assert '  "sandbox.create" -> "process.start" [penwidth=2.5];' in dot
    assert '  "process.start" -> "health.wait";' in dot
    assert dot[-1] == "}"


def test_mermaid_draws_a_workflow_and_a_run() -> None:
    plain = to_mermaid(pod_start()).splitlines()
    assert plain[0] == "flowchart LR"
    assert '  image_ensure["image.ensure"]' in plain
    assert "  network_attach --> sandbox_create" in plain
    run = to_mermaid(failed_run()).splitlines()
    assert '  audit(["✓ audit<br/>100ms"])' in run
    assert "  sandbox_create ==> process_start" in run
    assert "  classDef failed fill:#ffcdd2,stroke:#c62828" in run
    assert "  class process_start failed" in run
    assert "  class health_wait,status_publish skipped" in run


def test_mermaid_ids_stay_unique_and_avoid_keywords() -> None:
    wf = build("w", [Step("a.b"), Step("a_b"), Step("end")])
    lines = to_mermaid(wf).splitlines()
    assert '  a_b["a.b"]' in lines and '  a_b_2["a_b"]' in lines and '  end_["end"]' in lines
