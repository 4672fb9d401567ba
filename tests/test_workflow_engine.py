"""The workflow engine with injected step runners and real user step scripts, and the LMDB
recorder. Concurrency is shown with event handshakes, not timings."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edgenode.workflows import (
    Engine,
    OnFailure,
    Recorder,
    RecorderError,
    Run,
    RunRecord,
    Step,
    StepContext,
    StepError,
    StepFn,
    StepVetoError,
    UserStep,
    Workflow,
    WorkflowError,
    build,
)


@pytest.fixture
def recorder(tmp_path: Path) -> Any:
    with Recorder(tmp_path / "workflows") as rec:
        yield rec


async def ok(ctx: StepContext) -> None:
    return None


def run(
    recorder: Recorder,
    workflow: Workflow,
    runners: Mapping[str, StepFn],
    context: Mapping[str, Any] | None = None,
    target: str = "Pod/web",
) -> RunRecord:
    return asyncio.run(Engine(recorder).run(workflow, target, runners, context or {}))


def states(record: RunRecord) -> dict[str, str]:
    return {name: step.state for name, step in record.steps.items()}


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


# --- built-in steps --------------------------------------------------------------------------


def test_independent_steps_run_concurrently(recorder: Recorder) -> None:
    wf = build(
        "pod.start",
        [
            Step("image.ensure", timeout_s=5),
            Step("volumes.prepare", timeout_s=5),
            Step("network.attach", after=("image.ensure", "volumes.prepare")),
        ],
    )
    began = {"image.ensure": asyncio.Event(), "volumes.prepare": asyncio.Event()}
    seen: list[str] = []

    def waits_for(other: str) -> StepFn:
        async def runner(ctx: StepContext) -> None:
            began[ctx.step].set()
            await began[other].wait()  # deadlocks (then times out) unless both run at once
            seen.append(ctx.step)

        return runner

    async def attach(ctx: StepContext) -> None:
        seen.append(ctx.step)

    async def main() -> RunRecord:
        runners = {
            "image.ensure": waits_for("volumes.prepare"),
            "volumes.prepare": waits_for("image.ensure"),
            "network.attach": attach,
        }
        return await Engine(recorder).run(wf, "Pod/web", runners, {})

    record = asyncio.run(main())
    assert record.outcome == "succeeded", record.error
    assert sorted(seen[:2]) == ["image.ensure", "volumes.prepare"]
    assert seen[2] == "network.attach"


def test_a_step_past_its_timeout_is_cancelled_and_timed_out(recorder: Recorder) -> None:
    wf = build(
        "w", [Step("health.wait", timeout_s=0.05), Step("status.publish", after=("health.wait",))]
    )
    cancelled = []

    async def forever(ctx: StepContext) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.step)
            raise

    record = run(recorder, wf, {"health.wait": forever, "status.publish": ok})
    assert states(record) == {"health.wait": "timed-out", "status.publish": "skipped"}
    assert (record.failed_step, record.error) == ("health.wait", "timed out after 0.05s")
    assert cancelled == ["health.wait"]


def test_a_runners_own_timeout_error_is_a_failure_not_a_timeout(recorder: Recorder) -> None:
    async def raises(ctx: StepContext) -> None:
        raise TimeoutError("registry did not answer")

    record = run(recorder, build("w", [Step("image.ensure")]), {"image.ensure": raises})
    assert states(record) == {"image.ensure": "failed"}
    assert record.error == "TimeoutError: registry did not answer"


def test_a_step_is_retried_and_succeeds_on_the_second_attempt(recorder: Recorder) -> None:
    attempts: list[int] = []

    async def flaky(ctx: StepContext) -> Mapping[str, str]:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise StepError("registry 503")
        return {"image.digest": "sha256:abc"}

    wf = build("w", [Step("image.ensure", retries=2, retry_delay_s=0.01)])
    record = run(recorder, wf, {"image.ensure": flaky})
    assert attempts == [1, 2]
    assert record.outcome == "succeeded"
    assert record.steps["image.ensure"].attempts == 2
    assert record.annotations == {"image.digest": "sha256:abc"}


def test_a_failure_skips_dependents_and_names_the_step(recorder: Recorder) -> None:
    wf = build(
        "pod.start",
        [
            Step("sandbox.create"),
            Step("process.start", after=("sandbox.create",)),
            Step("health.wait", after=("process.start",)),
        ],
    )

    async def fails(ctx: StepContext) -> None:
        raise StepError("exec: not found")

    record = run(recorder, wf, {"sandbox.create": ok, "process.start": fails, "health.wait": ok})
    assert states(record) == {
        "sandbox.create": "succeeded",
        "process.start": "failed",
        "health.wait": "skipped",
    }
    assert (record.outcome, record.failed_step, record.error) == (
        "failed",
        "process.start",
        "exec: not found",
    )
    assert recorder.latest("Pod/web") == record


def test_a_crashing_runner_and_a_missing_runner_fail_their_steps(recorder: Recorder) -> None:
    async def crashes(ctx: StepContext) -> None:
        raise KeyError("image")

    wf = build(
        "w", [Step("a", on_failure="continue", retries=3, retry_delay_s=0), Step("b", after=("a",))]
    )
    with capture_logs() as logs:
        record = run(recorder, wf, {"a": crashes})
    assert record.steps["a"].error == "KeyError: 'image'"
    assert record.steps["a"].attempts == 4
    assert record.steps["b"].error == "no runner for step b (a bug in the caller)"
    assert record.steps["b"].attempts == 1
    assert {"workflow_step_crashed", "workflow_step_has_no_runner"} <= {e["event"] for e in logs}


def test_a_runner_can_veto_the_run(recorder: Recorder) -> None:
    async def veto(ctx: StepContext) -> None:
        raise StepVetoError("quota exceeded")

    wf = build("w", [Step("quota.check", retries=3, on_failure="continue"), Step("b")])
    record = run(recorder, wf, {"quota.check": veto, "b": ok})
    assert states(record)["quota.check"] == "vetoed"
    assert record.error == "vetoed: quota exceeded"
    assert record.steps["quota.check"].attempts == 1


def test_steps_see_the_context_and_earlier_annotations(recorder: Recorder) -> None:
    seen: list[StepContext] = []

    async def first(ctx: StepContext) -> Mapping[str, str]:
        return {"ip": "10.0.0.7"}

    async def second(ctx: StepContext) -> None:
        seen.append(ctx)

    wf = build("w", [Step("a"), Step("b", after=("a",))])
    record = run(recorder, wf, {"a": first, "b": second}, context={"pod": "web", "n": [1]})
    (ctx,) = seen
    assert (ctx.run_id, ctx.workflow, ctx.target, ctx.step, ctx.attempt) == (
        record.run_id,
        "w",
        "Pod/web",
        "b",
        1,
    )
    assert ctx.context == {"pod": "web", "n": [1]} and ctx.annotations == {"ip": "10.0.0.7"}


def test_a_context_that_is_not_json_is_refused_before_anything_runs(recorder: Recorder) -> None:
    with pytest.raises(WorkflowError, match=r"context is not JSON-serialisable.*nothing was run"):
        run(recorder, build("w", [Step("a")]), {"a": ok}, context={"when": object()})
    assert recorder.runs("Pod/web") == []


def test_steps_and_runs_are_logged_under_one_run_id(recorder: Recorder) -> None:
    with capture_logs() as logs:
        record = run(recorder, build("w", [Step("a"), Step("b", after=("a",))]), {"a": ok, "b": ok})
    events = [(e["event"], e.get("step")) for e in logs]
    assert events == [
        ("workflow_started", None),
        ("workflow_step_started", "a"),
        ("workflow_step_finished", "a"),
        ("workflow_step_started", "b"),
        ("workflow_step_finished", "b"),
        ("workflow_finished", None),
    ]
    assert {e["run_id"] for e in logs} == {record.run_id}
    assert logs[-1]["outcome"] == "succeeded"


def test_the_record_is_saved_live_while_the_run_goes_on(recorder: Recorder) -> None:
    live: list[RunRecord | None] = []

    async def looks(ctx: StepContext) -> None:
        live.append(recorder.get(ctx.run_id))

    record = run(recorder, build("w", [Step("a"), Step("b", after=("a",))]), {"a": ok, "b": looks})
    (seen,) = live
    assert seen is not None and seen.outcome == "running"
    assert states(seen) == {"a": "succeeded", "b": "running"}
    assert recorder.get(record.run_id) == record


def test_cancelling_a_run_cancels_its_steps_and_records_it(recorder: Recorder) -> None:
    async def main() -> RunRecord | None:
        started = asyncio.Event()

        async def hangs(ctx: StepContext) -> None:
            started.set()
            await asyncio.Event().wait()

        engine = Engine(recorder)
        task = asyncio.create_task(engine.run(build("w", [Step("a")]), "Pod/web", {"a": hangs}, {}))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return recorder.latest("Pod/web")

    record = asyncio.run(main())
    assert record is not None
    assert (record.outcome, record.error) == ("cancelled", "the run was cancelled")
    assert states(record) == {"a": "cancelled"}


# --- user steps ------------------------------------------------------------------------------


def user_flow(path: str, *, timeout_s: float = 5.0, on_failure: OnFailure = "fail") -> Workflow:
    hook = UserStep("hook", run=path, before="b", timeout_s=timeout_s, on_failure=on_failure)
    return build("w", [Step("a"), Step("b", after=("a",))], [hook])


def test_a_user_step_gets_the_json_context_and_adds_annotations(
    recorder: Recorder, tmp_path: Path
) -> None:
    body = (
        f"cat > {tmp_path}/stdin.json\n"
        + 'printf \'{"annotations": {"seen": "%s"}}\' "$EDGENODE_STEP"\n'
    )
    path = script(tmp_path, "annotate", body)
    record = run(recorder, user_flow(path), {"a": ok, "b": ok}, context={"pod": "web"})
    assert record.outcome == "succeeded", record.error
    assert record.annotations == {"seen": "hook"}
    assert record.steps["hook"].user
    given = json.loads((tmp_path / "stdin.json").read_text())
    assert given == {
        "run_id": record.run_id,
        "workflow": "w",
        "target": "Pod/web",
        "step": "hook",
        "attempt": 1,
        "context": {"pod": "web"},
        "annotations": {},
    }


def test_a_user_step_vetoes_the_run_through_stdout(recorder: Recorder, tmp_path: Path) -> None:
    path = script(tmp_path, "veto", 'echo \'{"veto": "image not signed"}\'\n')
    record = run(recorder, user_flow(path, on_failure="continue"), {"a": ok, "b": ok})
    assert states(record) == {"a": "succeeded", "hook": "vetoed", "b": "skipped"}
    assert (record.failed_step, record.error) == ("hook", "vetoed: image not signed")


def test_a_failing_user_step_reports_the_end_of_its_stderr(
    recorder: Recorder, tmp_path: Path
) -> None:
    path = script(tmp_path, "fails", "echo noise >&2\necho 'disk full' >&2\nexit 1\n")
    record = run(recorder, user_flow(path), {"a": ok, "b": ok})
    assert states(record)["hook"] == "failed"
    assert record.error == f"{path} exited with status 1: noise | disk full"


def test_a_user_step_printing_garbage_fails_saying_what_is_expected(
    recorder: Recorder, tmp_path: Path
) -> None:
    path = script(tmp_path, "chatty", "echo all good\n")
    record = run(recorder, user_flow(path, on_failure="continue"), {"a": ok, "b": ok})
    assert record.outcome == "succeeded"
    assert "stdout is not empty nor a JSON object" in (record.steps["hook"].error or "")


def test_a_user_step_past_its_timeout_is_killed_with_its_children(
    recorder: Recorder, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    path = script(tmp_path, "slow", f"sleep 30 &\necho $! > {pidfile}\nwait\n")
    record = run(recorder, user_flow(path, timeout_s=0.3), {"a": ok, "b": ok})
    assert states(record)["hook"] == "timed-out"
    assert record.error == "timed out after 0.3s"
    child = int(pidfile.read_text())
    assert not _alive(child)


def test_a_missing_user_executable_fails_its_step(recorder: Recorder, tmp_path: Path) -> None:
    record = run(recorder, user_flow(str(tmp_path / "absent")), {"a": ok, "b": ok})
    assert record.error == f"cannot run {tmp_path / 'absent'}: No such file or directory"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie awaiting its reaper counts as dead)."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.02)  # a killed process is reaped by init, a moment later
    return True


# --- the recorder ----------------------------------------------------------------------------


def finished(run_id: str, target: str, workflow: str = "pod.start") -> RunRecord:
    core = Run(build(workflow, [Step("a")]), run_id, now=float(len(run_id)), target=target)
    core.started("a", now=1.0)
    core.succeeded("a", now=2.0)
    return core.record()


def test_the_recorder_keeps_the_last_runs_of_each_target(tmp_path: Path) -> None:
    with Recorder(tmp_path / "wf", per_target=3, total=100) as rec:
        for i in range(5):
            rec.save(finished(f"web{i}", "Pod/web"))
        rec.save(finished("db0", "Pod/db"))
        assert [r.run_id for r in rec.runs("Pod/web")] == ["web2", "web3", "web4"]
        assert rec.get("web0") is None
        assert [r.run_id for r in rec.runs("Pod/db")] == ["db0"]
        assert rec.targets() == ["Pod/db", "Pod/web"]


def test_the_recorder_keeps_at_most_its_total_dropping_the_oldest(tmp_path: Path) -> None:
    with Recorder(tmp_path / "wf", per_target=10, total=4) as rec:
        for i in range(3):
            rec.save(finished(f"web{i}", "Pod/web"))
            rec.save(finished(f"db{i}", "Pod/db"))
        assert [r.run_id for r in rec.runs("Pod/web")] == ["web1", "web2"]
        assert [r.run_id for r in rec.runs("Pod/db")] == ["db1", "db2"]
        assert rec.get("web0") is None and rec.get("db0") is None


def test_saving_a_run_again_updates_it_in_place(tmp_path: Path) -> None:
    with Recorder(tmp_path / "wf", per_target=2) as rec:
        core = Run(build("pod.start", [Step("a")]), "live", now=0.0, target="Pod/web")
        rec.save(core.record())
        rec.save(finished("other", "Pod/web"))
        core.started("a", now=1.0)
        rec.save(core.record())
        assert [r.run_id for r in rec.runs("Pod/web")] == ["live", "other"]
        saved = rec.get("live")
        assert saved is not None and saved.steps["a"].state == "running"


def test_runs_survive_reopening_and_latest_filters_by_workflow(tmp_path: Path) -> None:
    with Recorder(tmp_path / "wf") as rec:
        rec.save(finished("s1", "Pod/web", "pod.start"))
        rec.save(finished("u1", "Pod/web", "pod.update"))
    with Recorder(tmp_path / "wf", readonly=True) as rec:
        assert rec.get("s1") == finished("s1", "Pod/web", "pod.start")
        latest = rec.latest("Pod/web")
        assert latest is not None and latest.run_id == "u1"
        start = rec.latest("Pod/web", "pod.start")
        assert start is not None and start.run_id == "s1"
        assert rec.latest("Pod/db") is None


def test_runs_left_running_by_a_stopped_node_are_closed_on_start(tmp_path: Path) -> None:
    with Recorder(tmp_path / "wf") as rec:
        core = Run(build("pod.start", [Step("a")]), "left", now=0.0, target="Pod/web")
        core.started("a", now=1.0)
        rec.save(core.record())
        rec.save(finished("done", "Pod/web"))
        assert rec.abandon_running(now=5.0, reason="the node stopped during the run") == ["left"]
        left = rec.get("left")
        assert left is not None and left.outcome == "cancelled"
        assert left.steps["a"].error == "the node stopped during the run"


def test_a_recorder_that_cannot_open_says_where(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match=rf"cannot open the workflow record at {tmp_path}/nope"):
        Recorder(tmp_path / "nope", readonly=True)
    assert not os.path.exists(tmp_path / "nope")
