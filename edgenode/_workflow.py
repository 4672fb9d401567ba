"""Lifecycle workflows as data: a DAG of named steps, and the state machine of one run.

Theory of operation. A lifecycle operation (``pod.start``, ``pod.stop``, ...) is a `Workflow`:
named steps, each naming the steps it runs after, like systemd units. `build` checks the graph
(unique names, known dependencies, no cycle), inserts the user's steps at their named points
and orders the steps topologically (stably: among steps free to go, the one declared first).

A `Run` is one execution of a workflow, fed what happened with an explicit ``now`` by the
asyncio shell (`edgenode.workflows.Engine`), which owns the clock, the tasks and the processes.
The shell asks `ready()` which steps may start, reports `started()`, then `succeeded()`,
`failed()` or `vetoed()` for each, and sleeps until the next input or `get_timer()` (the next
retry). Every step moves through `TRANSITIONS`:

    pending --start--> running --succeed--> succeeded
                          |-----fail------> failed       (no attempt left)
                          |---time-out----> timed-out    (no attempt left)
                          |-----retry-----> retrying --start (once retry_at is due)--> running
                          |-----veto------> vetoed       (a user step said no: never retried)
    pending --skip--> skipped                 (the run failed before the step could start)
    retrying --give-up--> failed              (the run failed while the step waited to retry)
    pending/running/retrying --cancel--> cancelled (the run was cancelled)

A step is ready when every step it runs after has succeeded, or failed with
``on_failure="continue"``. A step that fails for good with ``on_failure="fail"`` (or is vetoed,
whatever its policy) fails the run: nothing else starts, pending steps are skipped (each says
why), steps waiting to retry give up, and steps already running finish and are recorded. The
run is done when every step is in a final state; its outcome is then ``succeeded``, ``failed``
(with the first failing step and its error) or ``cancelled``.

`Run.record()` is plain data (`RunRecord`, JSON-able) that the shell stores after every change,
so a live run can be drawn with its live state. The critical chain and the drawings (text,
DOT, Mermaid, `explain`) are in `edgenode._workflow_draw`, re-exported here.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from edgenode._workflow_draw import (
    critical_chain,
    explain,
    format_duration,
    to_dot,
    to_mermaid,
    to_text,
)

__all__ = [
    "FAILED",
    "FINAL",
    "RECORD_FORMAT",
    "TRANSITIONS",
    "OnFailure",
    "Outcome",
    "Run",
    "RunRecord",
    "RunStateError",
    "Step",
    "StepEvent",
    "StepRecord",
    "StepState",
    "UserStep",
    "Workflow",
    "WorkflowError",
    "abandoned",
    "build",
    "critical_chain",
    "explain",
    "format_duration",
    "to_dot",
    "to_mermaid",
    "to_text",
]

StepState = Literal[
    "pending",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "timed-out",
    "vetoed",
    "skipped",
    "cancelled",
]
StepEvent = Literal[
    "start", "succeed", "fail", "time-out", "retry", "veto", "skip", "give-up", "cancel"
]
OnFailure = Literal["fail", "continue"]
Outcome = Literal["running", "succeeded", "failed", "cancelled"]

TRANSITIONS: Mapping[StepState, Mapping[StepEvent, StepState]] = {
    "pending": {"start": "running", "skip": "skipped", "cancel": "cancelled"},
    "running": {
        "succeed": "succeeded",
        "fail": "failed",
        "time-out": "timed-out",
        "retry": "retrying",
        "veto": "vetoed",
        "cancel": "cancelled",
    },
    "retrying": {"start": "running", "give-up": "failed", "cancel": "cancelled"},
    "succeeded": {},
    "failed": {},
    "timed-out": {},
    "vetoed": {},
    "skipped": {},
    "cancelled": {},
}
"""step state -> event -> next state: the whole machine. An event a state does not list is a
bug in the caller and raises `RunStateError`."""
FINAL: frozenset[StepState] = frozenset(s for s, events in TRANSITIONS.items() if not events)
FAILED: frozenset[StepState] = frozenset({"failed", "timed-out", "vetoed"})
"""Final states of a step that ran and did not succeed."""
RECORD_FORMAT = 1
"""Version of `RunRecord.to_json()`'s layout."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*")


class WorkflowError(ValueError):
    """Base of the workflow errors: the caller's mistake (a bad step, graph or user step, or a
    run fed an event its state does not allow). Nothing was run."""


class RunStateError(WorkflowError):
    """A `Run` was told something its state does not allow (a bug in the shell driving it);
    the run's state was not changed."""


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WorkflowError(
            f"{what} name {name!r} is not valid: use dotted words of letters, digits, '-' and"
            " '_' (e.g. 'image.ensure')"
        )
    return name


def _check_timeout(owner: str, field_name: str, value: object, *, zero_ok: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):  # type: ignore[operator]
        wanted = "a finite number >= 0" if zero_ok else "a finite number > 0"
        raise WorkflowError(f"{owner}: {field_name} must be {wanted} (seconds), got {value!r}")


def _check_policy(owner: str, value: object) -> None:
    if value not in ("fail", "continue"):
        raise WorkflowError(f"{owner}: on_failure must be 'fail' or 'continue', got {value!r}")


def _check_command(owner: str, run: object, args: object) -> None:
    if not isinstance(run, str) or not run.startswith("/"):
        raise WorkflowError(f"{owner}: the executable must be an absolute path, got {run!r}")
    if not isinstance(args, tuple) or not all(isinstance(a, str) for a in args):
        raise WorkflowError(f"{owner}: args must be a tuple of strings, got {args!r}")


@dataclass(frozen=True, slots=True)
class Step:
    """One named step of a workflow. Checked when made: a bad field raises `WorkflowError`."""

    name: str
    """Dotted name, e.g. ``image.ensure``; unique in its workflow."""
    after: tuple[str, ...] = ()
    """Names of the steps that must succeed (or fail with ``on_failure="continue"``) first."""
    timeout_s: float = 60.0
    """Longest one attempt may take, in seconds (> 0); a slower attempt is cancelled."""
    retries: int = 0
    """Extra attempts after a failure or timeout (>= 0); a veto is never retried."""
    retry_delay_s: float = 0.5
    """Wait between a failed attempt and the next, in seconds (>= 0)."""
    on_failure: OnFailure = "fail"
    """``fail``: a final failure fails the run; ``continue``: dependents run anyway."""
    user: str | None = None
    """Absolute path of the executable a user step runs; None for a built-in step."""
    args: tuple[str, ...] = ()
    """Arguments of a user step's executable."""

    def __post_init__(self) -> None:
        owner = f"step {self.name!r}"
        _check_name(self.name, "step")
        if isinstance(self.after, str) or not all(isinstance(d, str) for d in self.after):
            raise WorkflowError(f"{owner}: after must be a tuple of step names, got {self.after!r}")
        object.__setattr__(self, "after", tuple(dict.fromkeys(self.after)))
        _check_timeout(owner, "timeout_s", self.timeout_s)
        _check_timeout(owner, "retry_delay_s", self.retry_delay_s, zero_ok=True)
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise WorkflowError(f"{owner}: retries must be an integer >= 0, got {self.retries!r}")
        _check_policy(owner, self.on_failure)
        if self.user is not None:
            _check_command(owner, self.user, self.args)
        elif self.args:
            raise WorkflowError(f"{owner}: args are only for user steps (set user too)")


@dataclass(frozen=True, slots=True)
class UserStep:
    """A step the user inserts at a named point of a workflow (from a pod spec or the node's
    config): an executable given the run's JSON context on stdin (see docs/workflows.md)."""

    name: str
    run: str
    """Absolute path of the executable."""
    args: tuple[str, ...] = ()
    before: str | None = None
    """Run before this step (exactly one of `before` and `after`)."""
    after: str | None = None
    """Run after this step."""
    timeout_s: float = 30.0
    """Longest the executable may run, in seconds (> 0); it is killed after that."""
    on_failure: OnFailure = "fail"

    def __post_init__(self) -> None:
        owner = f"user step {self.name!r}"
        _check_name(self.name, "user step")
        _check_command(owner, self.run, self.args)
        if (self.before is None) == (self.after is None):
            raise WorkflowError(
                f"{owner} must name exactly one of before or after, got before={self.before!r}"
                f" and after={self.after!r}"
            )
        _check_timeout(owner, "timeout_s", self.timeout_s)
        _check_policy(owner, self.on_failure)

    @property
    def point(self) -> tuple[Literal["before", "after"], str]:
        if self.before is not None:
            return ("before", self.before)
        assert self.after is not None
        return ("after", self.after)


@dataclass(frozen=True, slots=True)
class Workflow:
    """A checked DAG of steps; build it with `build`."""

    name: str
    steps: Mapping[str, Step]
    """Every step by name, in a stable topological order."""

    def dependents(self, name: str) -> tuple[str, ...]:
        """The steps that run directly after `name`, in topological order."""
        return tuple(s.name for s in self.steps.values() if name in s.after)

    def ancestors(self, name: str) -> frozenset[str]:
        """Every step `name` waits for, directly or not."""
        seen: set[str] = set()
        todo = list(self.steps[name].after)
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.steps[dep].after)
        return frozenset(seen)

    def edges(self) -> list[tuple[str, str]]:
        """(dependency, step) pairs, in topological order of the step."""
        return [(dep, s.name) for s in self.steps.values() for dep in s.after]


def build(name: str, steps: Sequence[Step], user_steps: Sequence[UserStep] = ()) -> Workflow:
    """Check `steps`, insert `user_steps` and order the result; raise `WorkflowError` naming
    the step and the problem.

    ``before: X``: the user step runs after X's dependencies and X runs after it.
    ``after: X``: the user step runs after X and every step that ran after X runs after it too.
    User steps inserted at the same point run concurrently; a user step may name another
    (earlier) user step as its point.
    """
    _check_name(name, "workflow")
    graph: dict[str, Step] = {}
    for step in steps:
        if not isinstance(step, Step):
            raise WorkflowError(f"workflow {name}: {step!r} is not a Step")
        if step.name in graph:
            raise WorkflowError(f"workflow {name}: two steps are named {step.name!r}; rename one")
        graph[step.name] = step
    for step in graph.values():
        for dep in step.after:
            if dep not in graph:
                raise WorkflowError(
                    f"workflow {name}: step {step.name!r} runs after {dep!r}, which is not a step"
                    f" of this workflow (its steps: {', '.join(graph) or 'none'})"
                )
    _check_acyclic(name, graph)
    order = list(graph)
    placed: dict[str, tuple[str, str]] = {}
    for user in user_steps:
        _insert(name, graph, order, placed, user)
    _check_acyclic(name, graph)
    ordered = _topological(graph, order)
    return Workflow(name, MappingProxyType({n: graph[n] for n in ordered}))


def _insert(
    name: str,
    graph: dict[str, Step],
    order: list[str],
    placed: dict[str, tuple[str, str]],
    user: UserStep,
) -> None:
    if not isinstance(user, UserStep):
        raise WorkflowError(f"workflow {name}: {user!r} is not a UserStep")
    kind, point = user.point
    if user.name in graph:
        raise WorkflowError(
            f"workflow {name}: user step {user.name!r} has the name of a step already in the"
            " workflow; rename the user step"
        )
    if point not in graph:
        raise WorkflowError(
            f"workflow {name}: user step {user.name!r} is to run {kind} {point!r}, which is not"
            f" a step of this workflow (its steps: {', '.join(order)})"
        )

    def step(after: tuple[str, ...]) -> Step:
        return Step(
            user.name,
            after=after,
            timeout_s=user.timeout_s,
            on_failure=user.on_failure,
            user=user.run,
            args=user.args,
        )

    if kind == "before":
        target = graph[point]
        graph[user.name] = step(
            tuple(d for d in target.after if placed.get(d) != ("before", point))
        )
        graph[point] = replace(target, after=(*target.after, user.name))
        order.insert(order.index(point), user.name)
    else:
        for other in list(graph.values()):
            if point in other.after and placed.get(other.name) != ("after", point):
                graph[other.name] = replace(other, after=(*other.after, user.name))
        graph[user.name] = step((point,))
        at = order.index(point) + 1
        while at < len(order) and placed.get(order[at]) == ("after", point):
            at += 1
        order.insert(at, user.name)
    placed[user.name] = (kind, point)


def _check_acyclic(name: str, graph: Mapping[str, Step]) -> None:
    """Raise naming one cycle (``a → b → a``: a runs after b, which runs after a)."""
    colour: dict[str, int] = dict.fromkeys(graph, 0)  # 0 new, 1 on the path, 2 done
    for root in graph:
        if colour[root]:
            continue
        path = [root]
        stack: list[Iterator[str]] = [iter(graph[root].after)]
        colour[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour[dep] == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise WorkflowError(
                    f"workflow {name}: steps wait for each other in a cycle: {' → '.join(cycle)}"
                    " (each runs after the next); remove one of these dependencies"
                )
            elif colour[dep] == 0:
                colour[dep] = 1
                path.append(dep)
                stack.append(iter(graph[dep].after))


def _topological(graph: Mapping[str, Step], order: Sequence[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(order)}
    waiting = {n: len(s.after) for n, s in graph.items()}
    dependents: dict[str, list[str]] = {n: [] for n in graph}
    for s in graph.values():
        for dep in s.after:
            dependents[dep].append(s.name)
    free = [(rank[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(free)
    out: list[str] = []
    while free:
        _, n = heapq.heappop(free)
        out.append(n)
        for d in dependents[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(free, (rank[d], d))
    return out


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a run as stored and drawn. Times are the clock's seconds (wall time)."""

    name: str
    after: tuple[str, ...]
    state: StepState
    started_at: float | None = None
    """Start of the first attempt."""
    ended_at: float | None = None
    """End of the last attempt (or when the step was skipped or cancelled)."""
    attempts: int = 0
    error: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    user: bool = False
    on_failure: OnFailure = "fail"
    max_attempts: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "after": list(self.after),
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "attempts": self.attempts,
            "error": self.error,
            "annotations": dict(self.annotations),
            "user": self.user,
            "on_failure": self.on_failure,
            "max_attempts": self.max_attempts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        if data["state"] not in TRANSITIONS:
            raise WorkflowError(f"stored step {data['name']!r} has unknown state {data['state']!r}")
        return cls(
            name=str(data["name"]),
            after=tuple(data["after"]),
            state=data["state"],
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            attempts=int(data.get("attempts", 0)),
            error=data.get("error"),
            annotations=dict(data.get("annotations") or {}),
            user=bool(data.get("user", False)),
            on_failure=data.get("on_failure", "fail"),
            max_attempts=int(data.get("max_attempts", 1)),
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a workflow as stored and drawn; `steps` is in topological order."""

    run_id: str
    workflow: str
    target: str
    """What the run acts on, e.g. ``Pod/web``."""
    started_at: float
    ended_at: float | None
    outcome: Outcome
    steps: Mapping[str, StepRecord]
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Merged from the steps that succeeded, in topological order (a later step wins)."""
    failed_step: str | None = None
    """The first step whose failure failed the run."""
    error: str | None = None
    """That step's error, or why the run was cancelled."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "target": self.target,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "steps": [s.to_json() for s in self.steps.values()],
            "annotations": dict(self.annotations),
            "failed_step": self.failed_step,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read what `to_json` wrote; raise `WorkflowError` on anything else."""
        try:
            if data.get("format") != RECORD_FORMAT:
                raise WorkflowError(f"format {data.get('format')!r}, expected {RECORD_FORMAT}")
            if data["outcome"] not in ("running", "succeeded", "failed", "cancelled"):
                raise WorkflowError(f"unknown outcome {data['outcome']!r}")
            steps = [StepRecord.from_json(s) for s in data["steps"]]
            return cls(
                run_id=str(data["run_id"]),
                workflow=str(data["workflow"]),
                target=str(data["target"]),
                started_at=float(data["started_at"]),
                ended_at=data.get("ended_at"),
                outcome=data["outcome"],
                steps={s.name: s for s in steps},
                annotations=dict(data.get("annotations") or {}),
                failed_step=data.get("failed_step"),
                error=data.get("error"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WorkflowError(f"not a stored workflow run record: {exc}") from None


def abandoned(record: RunRecord, *, now: float, reason: str) -> RunRecord:
    """A stored run that was still running when its process went away (the node stopped or
    crashed), closed as cancelled: its unfinished steps are cancelled with `reason`. A finished
    run is returned as it is."""
    if record.outcome != "running":
        return record
    steps = {
        name: s
        if s.state in FINAL
        else replace(s, state=TRANSITIONS[s.state]["cancel"], ended_at=now, error=reason)
        for name, s in record.steps.items()
    }
    return replace(record, steps=steps, outcome="cancelled", ended_at=now, error=reason)


# --- a run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Progress:
    state: StepState = "pending"
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    error: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    retry_at: float | None = None


class Run:
    """One run of a workflow, fed with an explicit ``now``; see the module's docstring."""

    def __init__(self, workflow: Workflow, run_id: str, *, now: float, target: str = "") -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.target = target
        self.started_at = now
        self.ended_at: float | None = None
        self._steps = {name: _Progress() for name in workflow.steps}
        self._failure: tuple[str, str] | None = None
        self._cancelled: str | None = None
        self._settle(now)

    # --- queries ---

    def state(self, step: str) -> StepState:
        return self._get(step).state

    def attempts(self, step: str) -> int:
        return self._get(step).attempts

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    @property
    def outcome(self) -> Outcome:
        if self._cancelled is not None:
            return "cancelled"
        if not self.done:
            return "running"
        return "failed" if self._failure is not None else "succeeded"

    @property
    def failed_step(self) -> tuple[str, str] | None:
        """The first step whose failure fails the run, and its error (set as soon as it fails,
        while other steps may still be finishing)."""
        return self._failure

    @property
    def running(self) -> list[str]:
        return [n for n, p in self._steps.items() if p.state == "running"]

    @property
    def annotations(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for p in self._steps.values():
            if p.state == "succeeded":
                merged.update(p.annotations)
        return merged

    def ready(self, *, now: float) -> list[str]:
        """Steps that may start now, in topological order; none once the run failed."""
        if self._failure is not None or self._cancelled is not None:
            return []
        return [n for n in self._steps if self._why_not_ready(n, now) is None]

    def get_timer(self) -> float | None:
        """When the next retry is due (absolute, the clock's seconds), or None."""
        due = [p.retry_at for p in self._steps.values() if p.state == "retrying"]
        return min(d for d in due if d is not None) if due else None

    # --- inputs ---

    def started(self, step: str, *, now: float) -> None:
        progress = self._get(step)
        problem = self._why_not_ready(step, now)
        if problem is None and (self._failure is not None or self._cancelled is not None):
            problem = f"the run is {self.outcome if self.done else 'failing'}"
        if problem is not None:
            raise RunStateError(f"run {self.run_id}: step {step!r} cannot start: {problem}")
        self._fire(step, "start")
        progress.attempts += 1
        if progress.started_at is None:
            progress.started_at = now
        progress.ended_at = None
        progress.retry_at = None

    def succeeded(
        self, step: str, *, now: float, annotations: Mapping[str, str] | None = None
    ) -> None:
        progress = self._get(step)
        self._fire(step, "succeed")
        progress.ended_at = now
        progress.error = None
        progress.annotations = dict(annotations or {})
        self._settle(now)

    def failed(
        self, step: str, *, now: float, error: str, timed_out: bool = False, retry: bool = True
    ) -> None:
        """An attempt failed (or timed out): retried while the step has attempts left, the run
        is not failing and `retry` holds (False for a failure no retry can mend)."""
        progress = self._get(step)
        spec = self.workflow.steps[step]
        again = (
            retry
            and progress.attempts <= spec.retries
            and self._failure is None
            and self._cancelled is None
        )
        self._fire(step, "retry" if again else "time-out" if timed_out else "fail")
        progress.ended_at = now
        progress.error = error
        if again:
            progress.retry_at = now + spec.retry_delay_s
        elif spec.on_failure == "fail":
            self._fail(step, error)
        self._settle(now)

    def vetoed(self, step: str, *, now: float, reason: str) -> None:
        """A user step vetoed the run: it fails, whatever the step's failure policy."""
        progress = self._get(step)
        self._fire(step, "veto")
        progress.ended_at = now
        progress.error = f"vetoed: {reason}"
        self._fail(step, progress.error)
        self._settle(now)

    def cancelled(self, *, now: float, reason: str = "the run was cancelled") -> None:
        """Stop the run: every step not yet final is cancelled (the shell cancels their work)."""
        if self.done:
            raise RunStateError(f"run {self.run_id} is already {self.outcome}; cannot cancel it")
        self._cancelled = reason
        for name, progress in self._steps.items():
            if progress.state not in FINAL:
                self._fire(name, "cancel")
                progress.ended_at = now
                progress.retry_at = None
                progress.error = reason
        self._settle(now)

    def record(self) -> RunRecord:
        steps = {
            name: StepRecord(
                name=name,
                after=spec.after,
                state=p.state,
                started_at=p.started_at,
                ended_at=p.ended_at,
                attempts=p.attempts,
                error=p.error,
                annotations=dict(p.annotations),
                user=spec.user is not None,
                on_failure=spec.on_failure,
                max_attempts=spec.retries + 1,
            )
            for (name, p), spec in zip(
                self._steps.items(), self.workflow.steps.values(), strict=True
            )
        }
        failed, error = self._failure or (None, None)
        return RunRecord(
            run_id=self.run_id,
            workflow=self.workflow.name,
            target=self.target,
            started_at=self.started_at,
            ended_at=self.ended_at,
            outcome=self.outcome,
            steps=steps,
            annotations=self.annotations,
            failed_step=failed,
            error=self._cancelled if self._cancelled is not None else error,
        )

    # --- internals ---

    def _get(self, step: str) -> _Progress:
        try:
            return self._steps[step]
        except KeyError:
            raise RunStateError(
                f"run {self.run_id}: workflow {self.workflow.name} has no step {step!r}"
            ) from None

    def _fire(self, step: str, event: StepEvent) -> None:
        progress = self._steps[step]
        nxt = TRANSITIONS[progress.state].get(event)
        if nxt is None:
            raise RunStateError(
                f"run {self.run_id}: step {step!r} is {progress.state}; it cannot {event}"
            )
        progress.state = nxt

    def _satisfied(self, dep: str) -> bool:
        state = self._steps[dep].state
        return state == "succeeded" or (
            state in ("failed", "timed-out") and self.workflow.steps[dep].on_failure == "continue"
        )

    def _why_not_ready(self, step: str, now: float) -> str | None:
        progress = self._steps[step]
        if progress.state == "retrying":
            assert progress.retry_at is not None
            return None if now >= progress.retry_at else f"its retry is due at {progress.retry_at}"
        if progress.state != "pending":
            return f"it is {progress.state}"
        waiting = [d for d in self.workflow.steps[step].after if not self._satisfied(d)]
        return f"it waits for {', '.join(waiting)}" if waiting else None

    def _fail(self, step: str, error: str) -> None:
        if self._failure is None:
            self._failure = (step, error)

    def _settle(self, now: float) -> None:
        """After a run-failing change, skip what cannot run; end the run once all is final."""
        if self._failure is not None:
            culprit = self._failure[0]
            verb = {"timed-out": "timed out", "vetoed": "was vetoed"}.get(
                self._steps[culprit].state, "failed"
            )
            for name, progress in self._steps.items():
                if progress.state == "pending":
                    self._fire(name, "skip")
                    progress.ended_at = now
                    progress.error = (
                        f"{culprit} {verb}"
                        if culprit in self.workflow.ancestors(name)
                        else f"the run failed at {culprit}"
                    )
                elif progress.state == "retrying":
                    self._fire(name, "give-up")
                    progress.retry_at = None
        if self.ended_at is None and all(p.state in FINAL for p in self._steps.values()):
            self.ended_at = now
