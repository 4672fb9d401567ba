"""The workflow engine: runs a workflow's steps with asyncio and records every run in LMDB.

The shell around the pure core in `edgenode._workflow`. `Engine.run` owns one `Run`: it starts
every ready step as its own task (so independent steps run concurrently), feeds each outcome
back with the clock's ``now``, sleeps until a step ends or a retry is due, and saves the run's
record after every change, so `edgenode workflow` can draw a live run. Each attempt is bounded
by its step's ``timeout_s`` (``asyncio.timeout``: a runner's own `TimeoutError` is a plain
failure, not a timeout).

Built-in steps are coroutines given a `StepContext`; they return annotations (or None) and
raise `StepError` to fail (retried per the step), `StepVetoError` to fail the run outright; any
other exception fails the step too and is logged with its traceback (it is a bug). User steps
are executables run with the run's JSON context on stdin (the contract is in
docs/workflows.md); a timed-out one is killed with its whole process group.

Every start and end is logged with structlog (``workflow_started``, ``workflow_step_started``,
``workflow_step_finished``, ``workflow_finished``) with ``run_id`` bound. `Recorder` keeps the
records in their own LMDB environment with bounded retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import lmdb
import structlog

from edgenode._workflow import (
    FINAL,
    TRANSITIONS,
    OnFailure,
    Outcome,
    Run,
    RunRecord,
    RunStateError,
    Step,
    StepRecord,
    StepState,
    UserStep,
    Workflow,
    WorkflowError,
    abandoned,
    build,
    critical_chain,
)
from edgenode._workflow_draw import explain, format_duration, to_dot, to_mermaid, to_text

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "Engine",
    "OnFailure",
    "Outcome",
    "Recorder",
    "RecorderError",
    "Run",
    "RunRecord",
    "RunStateError",
    "Step",
    "StepContext",
    "StepError",
    "StepFn",
    "StepRecord",
    "StepState",
    "StepVetoError",
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

STDERR_TAIL_LINES = 5
"""How many of a failed user step's last stderr lines its error quotes."""
STDERR_TAIL_CHARS = 500


class StepError(Exception):
    """Raised by a step runner to fail its step with this message (retried per the step)."""


class StepVetoError(StepError):
    """Raised by a step runner to veto the run: it fails at once, whatever the step's policy,
    and is not retried."""


class RecorderError(Exception):
    """The workflow record cannot be opened or written; says which and what was kept."""


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step runner is given."""

    run_id: str
    workflow: str
    target: str
    """What the run acts on, e.g. ``Pod/web``."""
    step: str
    attempt: int
    """1 for the first attempt, 2 for the first retry, ..."""
    context: Mapping[str, Any]
    """The caller's context (JSON-able), the same for every step of the run."""
    annotations: Mapping[str, str]
    """Annotations of the steps that succeeded before this one started."""


StepFn = Callable[[StepContext], Awaitable[Mapping[str, str] | None]]


# --- the recorder ----------------------------------------------------------------------------

_FORMAT = b"1"


def _seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def _target_prefix(target: str) -> bytes:
    raw = target.encode()
    if b"\0" in raw or len(raw) > 400:
        raise RecorderError(f"target {target!r} cannot be recorded: no NUL, at most 400 bytes")
    return raw + b"\0"


class Recorder:
    """Workflow runs by id, in their own LMDB environment (e.g. ``<state>/workflows``).

    Four named databases: ``runs`` (run id -> {"seq", "record"} JSON), ``order`` (seq -> run
    id), ``targets`` (target NUL seq -> run id) and ``meta``. Retention is applied whenever a
    new run is first saved: the oldest runs of its target beyond `per_target`, then the oldest
    runs overall beyond `total`, are dropped. Not thread-safe: one owner (task or thread);
    other processes (the CLI) may open the same path with ``readonly=True``.
    """

    def __init__(
        self,
        path: Path,
        *,
        per_target: int = 20,
        total: int = 2000,
        readonly: bool = False,
        map_size: int = 256 << 20,
    ) -> None:
        if per_target < 1 or total < 1:
            raise RecorderError(f"keep at least one run: per_target={per_target}, total={total}")
        self.path = Path(path)
        self.per_target = per_target
        self.total = total
        try:
            if not readonly:
                self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=4,
                subdir=True,
                readonly=readonly,
                metasync=False,  # one fsync a commit: a crash may lose the last save, no more
            )
            create = not readonly
            self._runs = self._env.open_db(b"runs", create=create)
            self._order = self._env.open_db(b"order", create=create)
            self._targets = self._env.open_db(b"targets", create=create)
            self._meta = self._env.open_db(b"meta", create=create)
            if not readonly:
                with self._env.begin(write=True) as txn:
                    found = txn.get(b"format", db=self._meta)
                    if found is None:
                        txn.put(b"format", _FORMAT, db=self._meta)
                    elif found != _FORMAT:
                        raise RecorderError(f"format {found!r}, expected {_FORMAT!r}")
        except (lmdb.Error, OSError, RecorderError) as exc:
            if hasattr(self, "_env"):
                self._env.close()
            raise RecorderError(
                f"cannot open the workflow record at {self.path}: {exc}; nothing was changed"
            ) from None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._env.close()

    def save(self, record: RunRecord) -> None:
        """Store `record` (a new run, or a newer state of one already stored)."""
        key = record.run_id.encode()
        prefix = _target_prefix(record.target)
        try:
            with self._env.begin(write=True) as txn:
                stored = txn.get(key, db=self._runs)
                if stored is not None:
                    seq = json.loads(bytes(stored))["seq"]
                    txn.put(key, self._encode(seq, record), db=self._runs)
                    return
                last = txn.get(b"seq", db=self._meta)
                seq = int.from_bytes(last, "big") + 1 if last is not None else 1
                txn.put(b"seq", _seq_key(seq), db=self._meta)
                txn.put(key, self._encode(seq, record), db=self._runs)
                txn.put(_seq_key(seq), key, db=self._order)
                txn.put(prefix + _seq_key(seq), key, db=self._targets)
                self._trim(txn, prefix)
        except lmdb.Error as exc:
            raise RecorderError(
                f"cannot record run {record.run_id} of {record.target}: {exc}; the run's"
                " earlier saves are kept"
            ) from None

    def get(self, run_id: str) -> RunRecord | None:
        with self._env.begin() as txn:
            stored = txn.get(run_id.encode(), db=self._runs)
        return None if stored is None else self._decode(stored)

    def runs(self, target: str) -> list[RunRecord]:
        """The target's runs, oldest first (newest last)."""
        with self._env.begin() as txn:
            return [self._load(txn, run_key) for _, run_key in self._of_target(txn, target)]

    def latest(self, target: str, workflow: str | None = None) -> RunRecord | None:
        """The target's newest run (of `workflow`, if given)."""
        with self._env.begin() as txn:
            for _, run_key in reversed(list(self._of_target(txn, target))):
                record = self._load(txn, run_key)
                if workflow is None or record.workflow == workflow:
                    return record
        return None

    def targets(self) -> list[str]:
        """Every target with a stored run, sorted."""
        found: set[str] = set()
        with self._env.begin() as txn:
            for key in txn.cursor(db=self._targets).iternext(keys=True, values=False):
                found.add(bytes(key[:-9]).decode())
        return sorted(found)

    def abandon_running(self, *, now: float, reason: str) -> list[str]:
        """Close as cancelled every run stored as running (call once at start-up: they are left
        over from a process that stopped mid-run); return their ids."""
        with self._env.begin() as txn:
            records = [
                self._decode(v) for v in txn.cursor(db=self._runs).iternext(keys=False, values=True)
            ]
        closed = [abandoned(r, now=now, reason=reason) for r in records if r.outcome == "running"]
        for record in closed:
            self.save(record)
        return [r.run_id for r in closed]

    # --- internals ---

    @staticmethod
    def _encode(seq: int, record: RunRecord) -> bytes:
        return json.dumps({"seq": seq, "record": record.to_json()}, separators=(",", ":")).encode()

    @staticmethod
    def _decode(stored: bytes | memoryview) -> RunRecord:
        try:
            return RunRecord.from_json(json.loads(bytes(stored))["record"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RecorderError(f"a stored workflow run is unreadable: {exc}") from None

    def _load(self, txn: lmdb.Transaction, run_key: bytes) -> RunRecord:
        stored = txn.get(run_key, db=self._runs)
        if stored is None:
            raise RecorderError(f"the index names run {run_key.decode()!r}, which is not stored")
        return self._decode(stored)

    def _of_target(self, txn: lmdb.Transaction, target: str) -> Iterator[tuple[bytes, bytes]]:
        """(targets key, run id) of the target's runs, oldest first."""
        prefix = _target_prefix(target)
        cursor = txn.cursor(db=self._targets)
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if not bytes(key).startswith(prefix):
                return
            yield bytes(key), bytes(value)

    def _trim(self, txn: lmdb.Transaction, prefix: bytes) -> None:
        mine = [
            (int.from_bytes(key[-8:], "big"), run_key)
            for key, run_key in self._of_target(txn, prefix[:-1].decode())
        ]
        for seq, run_key in mine[: max(0, len(mine) - self.per_target)]:
            self._drop(txn, seq, run_key)
        excess = txn.stat(self._order)["entries"] - self.total
        if excess > 0:
            cursor = txn.cursor(db=self._order)
            oldest = [(bytes(k), bytes(v)) for k, v in islice(cursor.iternext(), excess)]
            for seq_key, run_key in oldest:
                self._drop(txn, int.from_bytes(seq_key, "big"), run_key)

    def _drop(self, txn: lmdb.Transaction, seq: int, run_key: bytes) -> None:
        stored = txn.get(run_key, db=self._runs)
        if stored is not None:
            target = json.loads(bytes(stored))["record"]["target"]
            txn.delete(_target_prefix(target) + _seq_key(seq), db=self._targets)
            txn.delete(run_key, db=self._runs)
        txn.delete(_seq_key(seq), db=self._order)


# --- the engine ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Result:
    """How one attempt ended."""

    state: Literal["succeeded", "failed", "timed-out", "vetoed"]
    annotations: Mapping[str, str] | None = None
    error: str = ""
    retry: bool = True


class Engine:
    """Runs workflows and records them; one engine serves any number of concurrent runs.

    `clock` gives the records' times (wall seconds) and paces retries, so it must advance with
    real time; `logger` is a structlog logger (default: this module's).
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        clock: Callable[[], float] = time.time,
        logger: Any = None,
    ) -> None:
        self.recorder = recorder
        self._clock = clock
        self._log = logger if logger is not None else structlog.get_logger(__name__)

    async def run(
        self,
        workflow: Workflow,
        target: str,
        runners: Mapping[str, StepFn],
        context: Mapping[str, Any],
        *,
        run_id: str | None = None,
    ) -> RunRecord:
        """Run `workflow` on `target` to the end and return its record (also stored).

        A failing run returns normally, its record says why. Cancelling the task running this
        cancels the running steps (killing user steps), records the run as cancelled and
        re-raises `CancelledError`. A context that is not JSON-able raises `WorkflowError`
        before anything runs.
        """
        try:
            snapshot: Mapping[str, Any] = MappingProxyType(json.loads(json.dumps(dict(context))))
        except (TypeError, ValueError) as exc:
            raise WorkflowError(
                f"workflow {workflow.name} for {target}: the context is not JSON-serialisable"
                f" ({exc}); nothing was run"
            ) from None
        run_id = run_id or uuid.uuid4().hex[:12]
        core = Run(workflow, run_id, now=self._clock(), target=target)
        log = self._log.bind(run_id=run_id, workflow=workflow.name, target=target)
        log.info("workflow_started", steps=list(workflow.steps))
        self._save(core, log)
        rank = {name: i for i, name in enumerate(workflow.steps)}
        tasks: dict[asyncio.Task[_Result], tuple[str, float]] = {}
        try:
            while True:
                now = self._clock()
                for name in core.ready(now=now):
                    core.started(name, now=now)
                    ctx = StepContext(
                        run_id=run_id,
                        workflow=workflow.name,
                        target=target,
                        step=name,
                        attempt=core.attempts(name),
                        context=snapshot,
                        annotations=core.annotations,
                    )
                    step = workflow.steps[name]
                    log.info(
                        "workflow_step_started", step=name, attempt=ctx.attempt, user=step.user
                    )
                    attempt = self._attempt(step, ctx, runners.get(name), log)
                    tasks[asyncio.create_task(attempt, name=f"{run_id}:{name}")] = (name, now)
                self._save(core, log)
                if core.done:
                    break
                timer = core.get_timer()
                delay = None if timer is None else max(0.0, timer - self._clock())
                if not tasks:
                    if delay is None:
                        raise RunStateError(f"run {run_id}: nothing runs, nothing is due (a bug)")
                    await asyncio.sleep(delay)
                    continue
                ended, _ = await asyncio.wait(
                    tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                for task in sorted(ended, key=lambda t: rank[tasks[t][0]]):
                    name, began = tasks.pop(task)
                    result = (
                        _Result("failed", error="the step's task was cancelled")
                        if task.cancelled()
                        else task.result()
                    )
                    self._finish(core, name, began, result, log)
        except BaseException as exc:
            await self._stop(core, tasks, exc, log)
            raise
        took = (core.ended_at or self._clock()) - core.started_at
        failed, error = core.failed_step or (None, None)
        level = log.info if core.outcome == "succeeded" else log.warning
        level(
            "workflow_finished",
            outcome=core.outcome,
            failed_step=failed,
            error=error,
            duration_s=round(took, 6),
        )
        return core.record()

    # --- internals ---

    def _save(self, core: Run, log: Any) -> None:
        try:
            self.recorder.save(core.record())
        except RecorderError as exc:  # the lifecycle operation matters more than its record
            log.error("workflow_record_failed", error=str(exc))

    def _finish(self, core: Run, name: str, began: float, result: _Result, log: Any) -> None:
        now = self._clock()
        if result.state == "succeeded":
            core.succeeded(name, now=now, annotations=result.annotations)
        elif result.state == "vetoed":
            core.vetoed(name, now=now, reason=result.error)
        else:
            core.failed(
                name,
                now=now,
                error=result.error,
                timed_out=result.state == "timed-out",
                retry=result.retry,
            )
        state = core.state(name)
        (log.info if state == "succeeded" else log.warning)(
            "workflow_step_finished",
            step=name,
            state=state,
            attempt=core.attempts(name),
            duration_s=round(now - began, 6),
            error=result.error or None,
        )

    async def _stop(
        self,
        core: Run,
        tasks: Mapping[asyncio.Task[_Result], tuple[str, float]],
        exc: BaseException,
        log: Any,
    ) -> None:
        """The run is cancelled (or the engine hit a bug): stop every step, record it."""
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if core.done:
            return
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
            reason = "the run was cancelled"
            log.warning("workflow_cancelled", running=[name for name, _ in tasks.values()])
        else:
            reason = f"the workflow engine failed: {type(exc).__name__}: {exc}"
            log.error("workflow_engine_failed", exc_info=exc)
        core.cancelled(now=self._clock(), reason=reason)
        self._save(core, log)

    async def _attempt(
        self, step: Step, ctx: StepContext, runner: StepFn | None, log: Any
    ) -> _Result:
        """One attempt of a step, bounded by its timeout; never raises but CancelledError."""
        if step.user is None and runner is None:
            log.error("workflow_step_has_no_runner", step=step.name)
            return _Result(
                "failed", error=f"no runner for step {step.name} (a bug in the caller)", retry=False
            )
        try:
            async with asyncio.timeout(step.timeout_s) as deadline:
                if step.user is not None:
                    annotations = await _run_user_step(step, ctx)
                else:
                    assert runner is not None
                    annotations = _annotations(await runner(ctx), f"step {step.name}")
        except TimeoutError as exc:
            if deadline.expired():
                return _Result("timed-out", error=f"timed out after {step.timeout_s:g}s")
            return _Result("failed", error=f"TimeoutError: {exc}")
        except StepVetoError as exc:
            return _Result("vetoed", error=str(exc) or "no reason given")
        except StepError as exc:
            return _Result("failed", error=str(exc) or type(exc).__name__)
        except Exception as exc:  # a bug in the runner: fail the step, keep the traceback
            log.exception("workflow_step_crashed", step=step.name)
            return _Result("failed", error=f"{type(exc).__name__}: {exc}")
        return _Result("succeeded", annotations=annotations)


def _annotations(value: object, who: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise StepError(f"{who} gave annotations that are not strings to strings: {value!r}")
    return dict(value)


# --- user steps ------------------------------------------------------------------------------


async def _run_user_step(step: Step, ctx: StepContext) -> dict[str, str] | None:
    """Run a user step's executable with the JSON context on stdin; see docs/workflows.md."""
    assert step.user is not None
    payload = {
        "run_id": ctx.run_id,
        "workflow": ctx.workflow,
        "target": ctx.target,
        "step": ctx.step,
        "attempt": ctx.attempt,
        "context": dict(ctx.context),
        "annotations": dict(ctx.annotations),
    }
    env = {
        **os.environ,
        "EDGENODE_RUN_ID": ctx.run_id,
        "EDGENODE_WORKFLOW": ctx.workflow,
        "EDGENODE_TARGET": ctx.target,
        "EDGENODE_STEP": ctx.step,
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            step.user,
            *step.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as exc:
        raise StepError(f"cannot run {step.user}: {exc.strerror or exc}") from None
    try:
        out, err = await proc.communicate(json.dumps(payload).encode())
    except BaseException:  # timed out or cancelled: kill it all, reap it, go on cancelling
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    return _user_outcome(step.user, proc.returncode, out, err)


def _user_outcome(path: str, code: int | None, out: bytes, err: bytes) -> dict[str, str] | None:
    if code != 0:
        lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        tail = " | ".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        raise StepError(f"{path} {how}: {tail}" if tail else f"{path} {how} (stderr empty)")
    text = out.decode(errors="replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not set(data) <= {"annotations", "veto"}:
        shown = text if len(text) <= 200 else text[:199] + "…"
        raise StepError(
            f"{path} exited 0 but its stdout is not empty nor a JSON object with 'annotations'"
            f" or 'veto': {shown!r}; write diagnostics to stderr"
        )
    if "veto" in data:
        reason = data["veto"]
        if not isinstance(reason, str) or not reason.strip():
            raise StepError(f"{path} vetoed without a reason: 'veto' must be a non-empty string")
        raise StepVetoError(reason.strip())
    return _annotations(data.get("annotations"), path)
