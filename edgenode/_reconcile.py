"""The node's local reconciler: what to do about the pods assigned to this node, as data.

Theory of operation. The daemon takes two snapshots: what should run here (`Desired`: each pod
assigned to this node, its store revision and its `PodDef`; a pod absent from the map should
not exist on the node) and what the sandbox has (`Observed`: each pod the sandbox knows, the
definition it runs, the desired revision it last applied, and each container's lifecycle state
as `ObservedContainer`). `reconcile(desired, observed, now=...)` compares them and returns a
`Plan` of named buckets; it does nothing itself (no I/O, no clock: ``now`` is an argument).
The daemon applies the plan through workflows and calls `reconcile` again on a store watch
event, a sandbox event (an exit, a crash loop), the end of a workflow, at `Plan.next_wake`, and
on a periodic resync. Applying the same plan twice is harmless: the next round sees the result.

Each pod (a name in either map) lands in exactly one pod-level bucket, checked in this order:

- ``busy``: a workflow is running on it (`Observed.busy`); it is left alone this round, and
  appears in no other bucket, not even `restart` or `waiting` (the end of the workflow brings
  the next round).
- ``start``: desired, not in the sandbox: create it and start its containers (pod.start).
- ``delete``: in the sandbox, no longer desired: stop it and remove it (pod.delete).
- ``recreate``: desired, in the sandbox, but it cannot be updated in place: the sandbox's
  record lost its definition (`Observed.pod` is None), or the change turns ``host-network`` or
  ``no-user-namespace`` on or off (they shape the sandbox itself, and the sandbox refuses to
  change them in place). The daemon deletes the pod, then starts it from the desired definition
  (pod.delete, then pod.start).
- ``update``: desired and in the sandbox with a different definition or a different revision:
  the per-container actions of `sandbox._update.plan_update(observed, desired)` (keep, resize,
  recreate, create, remove, reconfigure). Resizing is live only if `live_resize(runtime_class)`
  says the runtime can, and never across a change of runtime class. A pod whose revision
  changed but whose definition did not (an edit of labels, say) is listed too, with every
  container ``keep``: the daemon runs pod.update so the sandbox records the new revision, and
  the next round finds the pod current. There is no separate "record" bucket.
- ``nothing``: its definition and revision are current; no pod-level action. Its containers
  may still be in `restart` or `waiting`.

Containers are judged for pods in ``update`` and ``nothing`` only, and only those the update
leaves in place (``keep``, ``resize``, ``reconfigure``); a recreated, created or removed
container is the update's business. The sandbox's lifecycle (`sandbox._lifecycle`) applies the
restart policy when a run ends and records the backoff; the reconciler carries that out, with
the *desired* restart policy having the last word (it applies "from the next decision", and
this is one):

- ``backoff`` with `next_start_at` <= now (or no time at all, so it never stays stuck): due,
  so in `restart` (pod.restart of those containers). A run whose monitor vanished (a reboot)
  is in backoff due at once.
- ``backoff`` with `next_start_at` > now: in `waiting` until then, with reason
  ``failed-to-start`` (the runtime could not start it: the sandbox's message says why),
  ``crash-loop`` (it was restarted at least `crash_loop_after` times already) or ``backoff``.
  `Plan.next_wake` is the earliest such time: without a new event, nothing changes before it.
- ``exited`` (the policy said no: ``never``, or ``on-failure`` after exit code 0): no action,
  but in `waiting` with no end, reason ``completed`` (exit code 0) or ``exited`` (a non-zero
  code, or none: a failed start or a lost run under ``never``), so `why` and status can say it
  will not start again.
- The desired policy overrides: a container in backoff that the desired policy would not
  restart (the policy became ``never``) is reported ``exited``/``completed`` and not started;
  an ``exited`` one that it would restart (the policy became ``always``) is in `restart`. A
  failed start or a lost run counts as a failure.
- ``created`` or ``stopped`` (never started, or stopped by a workflow that was interrupted),
  ``starting`` (a start interrupted: no workflow holds the pod), or no state at all for a
  container of the definition: in `restart`. A desired pod's containers should run.
- ``running``, and the transitional ``stopping`` and ``restarting`` (a stop under way: its exit
  is the next event): nothing.

A pod may be in `update` and in `restart` at once (a kept container is due): apply the update
first. A daemon that runs one workflow per pod at a time may skip the restart this round; the
next round (the update's end wakes it) finds the container still due.

Each `Waiting.message` is one sentence for `why` and status, e.g. "restarting in 40.0 s (crash
loop: exited 1 after 5 restarts)". Deterministic: every tuple is sorted by name, and every
mapping is built in name order, so the same input gives the same plan, item for item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sandbox._classes import CLASS_NAMES, supports_live_update
from sandbox._lifecycle import wants_restart
from sandbox._spec import PodDef, RestartPolicy
from sandbox._update import Action, plan_update

CRASH_LOOP_RESTARTS = 3
"""A container in backoff that was restarted at least this many times is in a crash loop (a
count of restarts, >= 1; lower says "crash loop" sooner). Only the wording changes."""

SANDBOX_RELAXATIONS = frozenset({"host-network", "no-user-namespace"})
"""Pod-wide relaxations that shape the sandbox itself: changing them recreates the pod."""

KEPT: frozenset[Action] = frozenset({"keep", "resize", "reconfigure"})
"""Update actions after which the container's current run (or its backoff) carries on."""

WaitingReason = Literal["backoff", "crash-loop", "failed-to-start", "completed", "exited"]


@dataclass(frozen=True, slots=True)
class Desired:
    """A pod that should run on this node."""

    name: str
    revision: int
    """The store revision of the pod object `pod` was translated from."""
    pod: PodDef


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    """What the sandbox says of one container (a subset of `sandbox.containers.ContainerState`)."""

    state: str
    """created, starting, running, backoff, restarting, stopping, exited or stopped."""
    exit_code: int | None = None
    restarts: int = 0
    next_start_at: float | None = None
    """In backoff: when it is due to start again (seconds, the daemon's clock)."""
    message: str | None = None
    """The sandbox's explanation of a failed start or a lost run; None after a plain exit."""
    finished_at: float | None = None
    started_at: float | None = None
    """When its current (or last) run started: a new value is a new run (readiness restarts)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """A pod the sandbox has."""

    name: str
    revision: int | None
    """The desired revision last applied to the sandbox (None: never recorded)."""
    pod: PodDef | None
    """The definition the sandbox runs (None: its record is missing or broken)."""
    containers: Mapping[str, ObservedContainer]
    busy: bool = False
    """A workflow is running on this pod right now: leave it alone this round."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a container is not running, and until when."""

    reason: WaitingReason
    until: float | None
    """When it starts again (None: not by itself)."""
    restarts: int
    exit_code: int | None
    message: str
    """One sentence for `why` and status."""
    since: float | None = None
    """When its last run ended (or its last start failed), if known."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do, in named buckets (see the module docstring). Tuples are sorted by name."""

    start: tuple[str, ...] = ()
    """Desired, not in the sandbox: create and start (pod.start)."""
    update: Mapping[str, Mapping[str, Action]] = field(default_factory=dict)
    """Pod -> `plan_update` actions, per container in name order (pod.update)."""
    recreate: tuple[str, ...] = ()
    """Cannot be updated in place: delete, then start from the desired definition."""
    delete: tuple[str, ...] = ()
    """In the sandbox, no longer desired (pod.delete)."""
    nothing: tuple[str, ...] = ()
    """Definition and revision current; no pod-level action."""
    busy: tuple[str, ...] = ()
    """A workflow is running on it: left alone this round."""
    restart: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Pod -> containers to start again now (pod.restart), for pods in `update` or `nothing`."""
    waiting: Mapping[str, Mapping[str, Waiting]] = field(default_factory=dict)
    """Pod -> container -> why it is not running and until when."""
    next_wake: float | None = None
    """The earliest time this plan changes without a new event (a backoff ending), or None."""

    def pods(self) -> dict[str, str]:
        """Each pod by its pod-level bucket (``start``, ``update`` ...), in name order."""
        out = {n: "start" for n in self.start}
        out |= {n: "update" for n in self.update}
        out |= {n: "recreate" for n in self.recreate}
        out |= {n: "delete" for n in self.delete}
        out |= {n: "nothing" for n in self.nothing}
        out |= {n: "busy" for n in self.busy}
        return dict(sorted(out.items()))


def default_live_resize(runtime_class: str) -> bool:
    """Whether the runtime changes a running container's resources (unknown classes: no)."""
    return runtime_class in CLASS_NAMES and supports_live_update(runtime_class)


def reconcile(
    desired: Mapping[str, Desired],
    observed: Mapping[str, Observed],
    *,
    now: float,
    live_resize: Callable[[str], bool] = default_live_resize,
    crash_loop_after: int = CRASH_LOOP_RESTARTS,
) -> Plan:
    """The plan that brings `observed` to `desired` (both keyed by pod name) at time `now`."""
    start: list[str] = []
    update: dict[str, Mapping[str, Action]] = {}
    recreate: list[str] = []
    delete: list[str] = []
    nothing: list[str] = []
    busy: list[str] = []
    restart: dict[str, tuple[str, ...]] = {}
    waiting: dict[str, Mapping[str, Waiting]] = {}
    wakes: list[float] = []

    for name in sorted(desired.keys() | observed.keys()):
        want = desired.get(name)
        have = observed.get(name)
        if have is not None and have.busy:
            busy.append(name)
            continue
        if have is None:
            assert want is not None
            start.append(name)
            continue
        if want is None:
            delete.append(name)
            continue
        if have.pod is None or (want.pod.relaxations ^ have.pod.relaxations) & SANDBOX_RELAXATIONS:
            recreate.append(name)
            continue
        old, new = have.pod, want.pod
        live = old.runtime_class == new.runtime_class and live_resize(new.runtime_class)
        actions = plan_update(old, new, live_resize=live)
        if have.revision != want.revision or old != new:
            update[name] = actions
        else:
            nothing.append(name)
        due: list[str] = []
        held: dict[str, Waiting] = {}
        for container, action in actions.items():
            if action not in KEPT:
                continue
            verdict = _judge(
                have.containers.get(container),
                new,
                now=now,
                crash_loop_after=crash_loop_after,
            )
            if verdict is True:
                due.append(container)
            elif isinstance(verdict, Waiting):
                held[container] = verdict
                if verdict.until is not None:
                    wakes.append(verdict.until)
        if due:
            restart[name] = tuple(due)
        if held:
            waiting[name] = held

    return Plan(
        start=tuple(start),
        update=update,
        recreate=tuple(recreate),
        delete=tuple(delete),
        nothing=tuple(nothing),
        busy=tuple(busy),
        restart=restart,
        waiting=waiting,
        next_wake=min(wakes, default=None),
    )


def _judge(
    c: ObservedContainer | None, pod: PodDef, *, now: float, crash_loop_after: int
) -> bool | Waiting | None:
    """True: start it again now; a `Waiting`: not running, and why; None: nothing to say."""
    if c is None or c.state in ("created", "stopped", "starting"):
        return True
    if c.state not in ("backoff", "exited"):
        return None  # running, stopping, restarting (or a state this module does not know)
    if not _policy_restarts(pod.restart_policy, c):
        return _exited(c, pod.restart_policy)
    if c.state == "exited":
        return True  # ended under a policy that said no; the desired one says yes
    if c.next_start_at is None or c.next_start_at <= now:
        return True
    return _backoff(c, c.next_start_at, now=now, crash_loop_after=crash_loop_after)


def _policy_restarts(policy: RestartPolicy, c: ObservedContainer) -> bool:
    """Whether `policy` starts the container again after its last run ended (as
    `sandbox._lifecycle` decides: a failed start or a lost run counts as a failure)."""
    if policy == "never":
        return False
    if c.exit_code is None or (c.state == "backoff" and c.message is not None):
        return True
    return wants_restart(policy, c.exit_code)


def _backoff(c: ObservedContainer, until: float, *, now: float, crash_loop_after: int) -> Waiting:
    wait = f"restarting in {until - now:.1f} s"
    reason: WaitingReason
    if c.message is not None:
        reason, why = "failed-to-start", f"failed to start: {c.message}"
    elif c.restarts >= crash_loop_after:
        reason = "crash-loop"
        why = f"crash loop: {_ended(c.exit_code)} after {_times(c.restarts, 'restart')}"
    else:
        reason = "backoff"
        why = _ended(c.exit_code)
        if c.restarts:
            why += f"; restarted {_times(c.restarts, 'time')} before"
    return Waiting(reason, until, c.restarts, c.exit_code, f"{wait} ({why})", c.finished_at)


def _exited(c: ObservedContainer, policy: RestartPolicy) -> Waiting:
    code = c.exit_code
    rule = f"restart policy {policy} does not start it again"
    if code is None:  # a failed start, or a lost run
        why = c.message or "its run ended without an exit code"
        message = f"not running ({why}); {rule}"
        return Waiting("exited", None, c.restarts, None, message, c.finished_at)
    if code == 0:
        message = f"completed (exit code 0); {rule}"
        return Waiting("completed", None, c.restarts, 0, message, c.finished_at)
    message = f"exited with code {code}; {rule}"
    return Waiting("exited", None, c.restarts, code, message, c.finished_at)


def _ended(exit_code: int | None) -> str:
    return "its run ended without an exit code" if exit_code is None else f"exited {exit_code}"


def _times(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
