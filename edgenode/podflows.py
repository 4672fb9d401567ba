"""Pod lifecycles as workflows: start, update, restart, delete.

Each is a small DAG (`edgenode._workflow`), run by the engine (`edgenode.workflows`) and
recorded per pod, so `edgenode workflow pod/NAME` draws the last one and `why` names its
failing step:

    pod.start    image.ensure -> sandbox.create -> network.attach -> containers.start
                   -> health.wait -> status.publish
    pod.update   image.ensure -> containers.update -> health.wait -> status.publish
    pod.restart  containers.restart -> status.publish
    pod.delete   containers.stop -> network.detach -> sandbox.delete

``health.wait`` waits until every container is ready (`edgenode.probes.Probes.wait_ready`),
and fails, with the check's reason, once a container stops or its check has failed
`failureThreshold` times in a row, or after `edgenode._probe.wait_bound`. Such a run has
applied its change: the pod runs as asked, only not ready, so the daemon does not retry it
(`applied`); its checks go on, and the pod's status says when it becomes ready.

A pod's spec may insert its own steps (``spec.workflow``), and the node's administrator steps
for every pod (``<state>/hooks/workflow.yaml``, the same shape): executables from the node's
hooks directory (``<state>/hooks``), run before or after a named step with a JSON context on
stdin; one may veto the run or add annotations (see docs/workflows.md). Only executables the
node's administrator put there can run: a pod spec chooses among them, it cannot name any
program.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import yaml

from edgenode._probe import wait_bound
from edgenode._reconcile import Desired
from edgenode._workflow import (
    RunRecord,
    Step,
    UserStep,
    build,
    to_dot,
    to_mermaid,
    to_text,
)
from edgenode.objects import PodWorkflow
from edgenode.objects._checks import POD_STEPS
from edgenode.workflows import Engine, Recorder, StepContext, StepError
from sandbox._spec import PodDef

if TYPE_CHECKING:
    from edgenode.daemon import Daemon

log = structlog.get_logger("edgenode.podflows")

LOG_TAIL = 5
NODE_STEPS = "workflow.yaml"
"""The node's own workflow steps, in its hooks directory."""
HEALTH = "health.wait"
HEALTH_SLACK_S = 10.0
"""The health.wait step's timeout is its own bound (`wait_bound`) plus this (seconds): the
step ends itself with the checks' reason, the timeout is the engine's last resort."""
START = (
    Step("image.ensure", timeout_s=600.0),
    Step("sandbox.create", after=("image.ensure",), timeout_s=60.0),
    Step("network.attach", after=("sandbox.create",), timeout_s=30.0),
    Step("containers.start", after=("network.attach",), timeout_s=180.0),
    Step(HEALTH, after=("containers.start",)),
    Step("status.publish", after=(HEALTH,), timeout_s=30.0, on_failure="continue"),
)
UPDATE = (
    Step("image.ensure", timeout_s=600.0),
    Step("containers.update", after=("image.ensure",), timeout_s=300.0),
    Step(HEALTH, after=("containers.update",)),
    Step("status.publish", after=(HEALTH,), timeout_s=30.0, on_failure="continue"),
)
RESTART = (
    Step("containers.restart", timeout_s=300.0),
    Step("status.publish", after=("containers.restart",), timeout_s=30.0, on_failure="continue"),
)
DELETE = (
    Step("containers.stop", timeout_s=300.0),
    Step("network.detach", after=("containers.stop",), timeout_s=30.0),
    Step("sandbox.delete", after=("network.detach",), timeout_s=60.0),
)


class PodFlows:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.recorder = Recorder(daemon.state_dir / "workflows")
        abandoned = self.recorder.abandon_running(
            now=time.time(), reason="the daemon stopped during this run"
        )
        if abandoned:
            log.info("workflow_runs_abandoned", runs=abandoned)
        self.engine = Engine(self.recorder)

    def close(self) -> None:
        self.recorder.close()

    # -- user steps ---------------------------------------------------------------------------

    def user_steps(self, name: str) -> list[UserStep]:
        """The node's own steps (hooks/workflow.yaml, for every pod), then the pod's."""
        doc = self.d.store.get("Pod", name) or {}
        pod_steps = ((doc.get("spec") or {}).get("workflow") or {}).get("steps") or {}
        return [
            *self._steps("node", self.node_steps()),
            *self._steps("user", pod_steps),
        ]

    def node_steps(self) -> Mapping[str, Any]:
        """Steps the node's administrator adds to every pod's workflows, from
        ``<hooks>/workflow.yaml`` (the same shape as a pod's ``spec.workflow``). A file that
        does not validate fails every pod workflow with the reason: a step meant to guard
        pods (a veto) is never skipped silently."""
        path = Path(self.d.hooks_dir) / NODE_STEPS
        if not path.exists():
            return {}
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            checked = PodWorkflow.model_validate(raw)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise StepError(f"the node's {path} is not valid: {exc}") from None
        steps: dict[str, Any] = checked.model_dump(by_alias=True, exclude_none=True)["steps"]
        for step_name, step in steps.items():
            point = step.get("before") or step.get("after")
            if point not in POD_STEPS or (step.get("before") and step.get("after")):
                raise StepError(
                    f"the node's {path}: step {step_name}: expected exactly one of before/after "
                    f"naming one of {', '.join(sorted(POD_STEPS))}, got {point!r}"
                )
        return steps

    def _steps(self, prefix: str, steps: Mapping[str, Any]) -> list[UserStep]:
        return [
            UserStep(
                name=f"{prefix}.{step_name}",
                run=os.path.join(self.d.hooks_dir, s["run"]),
                args=tuple(s.get("args") or ()),
                before=s.get("before"),
                after=s.get("after"),
                timeout_s=float(s.get("timeoutSeconds", 30)),
                on_failure=s.get("onFailure", "fail"),
            )
            for step_name, s in sorted(steps.items())
        ]

    # -- the workflows ------------------------------------------------------------------------

    def _context(self, d: Desired) -> dict[str, Any]:
        return {"node": self.d.name, "pod": d.name, "revision": d.revision}

    async def _run(
        self, flow: str, steps: Sequence[Step], d: Desired, runners: Mapping[str, Any]
    ) -> RunRecord:
        try:
            extra = self.user_steps(d.name)
        except StepError as exc:
            # Recorded as a failed run, so `why` shows it.
            failing = build(flow, [Step("workflow.config", timeout_s=5.0)])
            reason = str(exc)

            async def fail(ctx: StepContext) -> None:
                raise StepError(reason)

            return await self.engine.run(
                failing, f"Pod/{d.name}", {"workflow.config": fail}, self._context(d)
            )
        names = {s.name for s in steps}
        # A step placed at a point this workflow lacks (after containers.start, in pod.update)
        # belongs to the other workflows.
        here = [u for u in extra if u.point[1] in names]
        workflow = build(flow, steps, here)
        return await self.engine.run(workflow, f"Pod/{d.name}", runners, self._context(d))

    async def start(self, d: Desired) -> RunRecord:
        meta = {"revision": d.revision}

        async def create(ctx: StepContext) -> None:
            sandbox = self.d.sandbox
            if d.name in sandbox.pods():
                # Left by an earlier start that failed before its containers ran.
                if sandbox.definition(d.name) == d.pod:
                    return
                await asyncio.to_thread(sandbox.delete_pod, d.name, grace_s=0)
            await asyncio.to_thread(sandbox.create_pod, d.pod, meta=meta)

        async def start(ctx: StepContext) -> None:
            await asyncio.to_thread(self.d.sandbox.start_pod, d.name)
            self._check_started(d.name, d.pod)

        steps, health = self._health(d, START)
        return await self._run(
            "pod.start",
            steps,
            d,
            {
                "image.ensure": self._ensure_images(d.pod),
                "sandbox.create": create,
                "network.attach": self._attach(d),
                "containers.start": start,
                HEALTH: health,
                "status.publish": self._publish(d),
            },
        )

    async def update(self, d: Desired) -> RunRecord:
        async def update(ctx: StepContext) -> Mapping[str, str]:
            result = await asyncio.to_thread(
                self.d.sandbox.update_pod, d.pod, meta={"revision": d.revision}
            )
            changed = [c for c, a in result.actions.items() if a in ("create", "recreate")]
            self._check_started(d.name, d.pod, only=changed)
            return {f"container.{c}": a for c, a in result.actions.items()}

        steps, health = self._health(d, UPDATE)
        return await self._run(
            "pod.update",
            steps,
            d,
            {
                "image.ensure": self._ensure_images(d.pod),
                "containers.update": update,
                HEALTH: health,
                "status.publish": self._publish(d),
            },
        )

    async def restart(self, d: Desired, containers: Sequence[str], *, due: bool) -> RunRecord:
        """`due`: the restart policy's restart of exited containers; otherwise an explicit
        restart in place (the running containers are stopped first)."""

        async def restart(ctx: StepContext) -> Mapping[str, str]:
            if due:
                await asyncio.to_thread(self.d.sandbox.start_pod, d.name, containers)
            else:
                await asyncio.to_thread(self.d.sandbox.restart_pod, d.name, containers)
            self._check_started(d.name, d.pod, only=containers)
            return {"containers": ",".join(containers), "why": "policy" if due else "command"}

        return await self._run(
            "pod.restart",
            RESTART,
            d,
            {"containers.restart": restart, "status.publish": self._publish(d)},
        )

    async def delete(self, name: str) -> RunRecord:
        async def stop(ctx: StepContext) -> None:
            await asyncio.to_thread(self.d.sandbox.stop_pod, name)

        async def detach(ctx: StepContext) -> None:
            await asyncio.to_thread(self.d.network.detach, name)

        async def remove(ctx: StepContext) -> None:
            await asyncio.to_thread(self.d.sandbox.delete_pod, name, grace_s=0)

        d = Desired(name, 0, PodDef(name=name, containers={}))
        workflow = build("pod.delete", DELETE, ())
        return await self.engine.run(
            workflow,
            f"Pod/{name}",
            {"containers.stop": stop, "network.detach": detach, "sandbox.delete": remove},
            self._context(d),
        )

    async def recreate(self, d: Desired) -> RunRecord:
        """A pod whose sandbox record is unreadable: removed, then started afresh."""
        await self.delete(d.name)
        return await self.start(d)

    # -- steps --------------------------------------------------------------------------------

    def _ensure_images(self, pod: PodDef) -> Any:
        async def ensure(ctx: StepContext) -> Mapping[str, str]:
            found = {}
            for cname, c in sorted(pod.containers.items()):
                image = await asyncio.to_thread(self.d.images.resolve, c.image)
                found[f"image.{cname}"] = image.digest
            return found

        return ensure

    def _health(self, d: Desired, steps: Sequence[Step]) -> tuple[list[Step], Any]:
        """The workflow's steps with health.wait's timeout for this pod's checks, and the
        step's runner."""
        bound = wait_bound(self.d.probes.specs(d.name).values())
        timed = [
            dataclasses.replace(s, timeout_s=bound + HEALTH_SLACK_S) if s.name == HEALTH else s
            for s in steps
        ]

        async def health(ctx: StepContext) -> None:
            verdict = await self.d.probes.wait_ready(d.name, bound_s=bound)
            if verdict.outcome != "ready":
                raise StepError(verdict.reason or "not ready")

        return timed, health

    def _attach(self, d: Desired) -> Any:
        async def attach(ctx: StepContext) -> Mapping[str, str]:
            ns_path = self.d.sandbox.state(d.name).netns
            addresses = await asyncio.to_thread(self.d.network.attach, d.pod, ns_path)
            if addresses is None:
                return {"address": "none"}
            return {f"address.{family}": a for family, a in addresses.items()}

        return attach

    def _publish(self, d: Desired) -> Any:
        async def publish(ctx: StepContext) -> None:
            await asyncio.to_thread(self.d._publish_statuses, {d.name: d})

        return publish

    def _check_started(self, name: str, pod: PodDef, only: Sequence[str] | None = None) -> None:
        """Fail the step when a container did not start, with what its runtime said."""
        state = self.d.sandbox.state(name)
        for cname in only if only is not None else sorted(pod.containers):
            c = state.containers.get(cname)
            if c is None or c.state == "running" or c.message is None:
                continue
            said = [x.text for x in self.d.sandbox.logs(name, cname, tail=LOG_TAIL)]
            detail = f"; its runtime said: {' | '.join(said)}" if said else ""
            raise StepError(f"container {cname}: {c.message}{detail}")

    # -- reading the records ------------------------------------------------------------------

    @staticmethod
    def applied(record: RunRecord) -> bool:
        """The run failed only at health.wait: its change is applied and the pod runs, not
        ready; running it again would change nothing, so it is not retried."""
        return record.outcome == "failed" and record.failed_step == HEALTH

    def last_failure(self, name: str) -> str | None:
        """The last workflow's failure, for the pod's status; None for one that was applied
        (the status's readiness says, live, what health.wait said then)."""
        record = self.recorder.latest(f"Pod/{name}")
        if record is None or record.outcome != "failed" or self.applied(record):
            return None
        return f"{record.workflow} failed at {record.failed_step}: {record.error}"

    def render(self, target: str, fmt: str, run_id: str | None) -> str:
        record = self.recorder.get(run_id) if run_id else self.recorder.latest(target)
        if record is None:
            return f"no workflow has run for {target} yet"
        if fmt == "dot":
            return to_dot(record)
        if fmt == "mermaid":
            return to_mermaid(record)
        return to_text(record)  # with its critical chain
