"""Readiness of a container run, judged from its check's outcomes: a pure state machine.

Theory of operation. The node (`edgenode.probes`) keeps one `Readiness` per running container
that declares a readiness check (`ProbeSpec`, translated from `spec.containers.C.readiness`).
The core never runs a check and never reads a clock: the shell asks `get_timer()` when the
next check is due, reports `probe_started(now=...)`, runs the check within `timeout_s`, and
reports `probe_succeeded(now=...)` or `probe_failed(error, now=...)`; then it drains
`next_event()`, which says when readiness or its reason changed: the only moments the node
writes the pod's status. Each outcome is classified by the counters into one event of
`TRANSITIONS`:

    pending   --success--> pending   --enough-successes--> ready    (no outcome yet)
    pending   --failure / enough-failures--> not-ready
    not-ready --success / failure / enough-failures--> not-ready
    not-ready --enough-successes--> ready
    ready     --success / enough-successes / failure--> ready
    ready     --enough-failures--> not-ready

"enough" means `success_threshold` passes (or `failure_threshold` failures) in a row. The first
check is due `initial_delay_s` after the run started, each next one `period_s` after the
previous one started (at once if that one took longer). One check is in flight at a time.

The reason of a container that is not ready is stable, so that a check failing the same way
each period writes nothing: ``http GET /healthz on port 8080: connection refused (3 failures
in a row)``. It changes when readiness changes or the check's error does; the count is the one
at that moment (`failures` is the live count, for `why`).

Beside the machine: `track` decides what a fresh look at a container means for its probing
(start, keep, stop); `health_verdict` is what the workflow step ``health.wait`` concludes from
every container of a pod; `wait_bound` is how long that step may wait. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

State = Literal["pending", "not-ready", "ready"]
Event = Literal["success", "enough-successes", "failure", "enough-failures"]

TRANSITIONS: Mapping[State, Mapping[Event, State]] = {
    "pending": {
        "success": "pending",
        "enough-successes": "ready",
        "failure": "not-ready",
        "enough-failures": "not-ready",
    },
    "not-ready": {
        "success": "not-ready",
        "enough-successes": "ready",
        "failure": "not-ready",
        "enough-failures": "not-ready",
    },
    "ready": {
        "success": "ready",
        "enough-successes": "ready",
        "failure": "ready",
        "enough-failures": "not-ready",
    },
}
"""state -> event -> next state: the whole machine."""

PENDING_REASON = "waiting for its first check"
NO_PROBE_WAIT_S = 10.0
"""How long ``health.wait`` waits for a pod none of whose containers has a check (seconds):
its containers only have to be running, which they are once ``containers.start`` is done."""


class ProbeStateError(RuntimeError):
    """The shell reported an outcome with no check in flight, or started one while one was:
    a bug in the shell. Nothing was changed."""


@dataclass(frozen=True, slots=True)
class ExecProbe:
    command: tuple[str, ...]


Port = int | str
"""A port number, or the name of a host port whose number the node allocated (`network:
host-ports`), which the shell looks up."""


@dataclass(frozen=True, slots=True)
class HttpProbe:
    path: str
    port: Port


@dataclass(frozen=True, slots=True)
class TcpProbe:
    port: Port


Check = ExecProbe | HttpProbe | TcpProbe


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A container's readiness check in plain values (seconds, port numbers)."""

    check: Check
    initial_delay_s: float = 0.0
    """From the start of the run to the first check (>= 0)."""
    period_s: float = 10.0
    """From the start of one check to the start of the next (> 0)."""
    timeout_s: float = 1.0
    """A check that has not answered by then fails (> 0); the shell enforces it."""
    failure_threshold: int = 3
    """Failures in a row that make a ready container not ready (>= 1)."""
    success_threshold: int = 1
    """Passes in a row that make a not-ready container ready (>= 1)."""


def describe(check: Check) -> str:
    """The check in a few words: ``http GET /healthz on port 8080``."""
    if isinstance(check, ExecProbe):
        return "exec " + " ".join(check.command)
    if isinstance(check, HttpProbe):
        return f"http GET {check.path} on port {check.port}"
    return f"tcp connect to port {check.port}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _times(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


@dataclass(frozen=True, slots=True)
class ReadinessChanged:
    """A container's readiness, or the reason it is not ready, changed at `at`."""

    ready: bool
    reason: str | None
    at: float


class Readiness:
    """The readiness of one run of one container (see the module's doc)."""

    def __init__(self, spec: ProbeSpec, *, started_at: float, ready: bool = False) -> None:
        """`started_at`: when the run started; `ready`: start out ready (a run the node had
        already found ready before it restarted), so only `failure_threshold` failures in a
        row make it not ready."""
        self.spec = spec
        self.started_at = started_at
        self.state: State = "ready" if ready else "pending"
        self.reason: str | None = None if ready else PENDING_REASON
        self.failures = 0
        """Failures in a row, now."""
        self.successes = 0
        """Passes in a row, now."""
        self.last_error: str | None = None
        self.last_outcome_at: float | None = None
        self._last_start: float | None = None
        self._in_flight: float | None = None
        self._discard = False
        """The check in flight is one the spec no longer names: its outcome counts for
        nothing."""
        self._events: list[ReadinessChanged] = []

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def failing(self) -> bool:
        """It has failed `failure_threshold` times in a row (ready or not)."""
        return self.failures >= self.spec.failure_threshold

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    def get_timer(self) -> float | None:
        """When the next check is due (absolute; maybe past); None while one is in flight."""
        if self._in_flight is not None:
            return None
        if self._last_start is None:
            return self.started_at + self.spec.initial_delay_s
        return self._last_start + self.spec.period_s

    def probe_started(self, *, now: float) -> None:
        if self._in_flight is not None:
            raise ProbeStateError("a check was started while another was in flight")
        self._in_flight = self._last_start = now

    def probe_succeeded(self, *, now: float) -> None:
        if not self._finish(now):
            return
        self.successes += 1
        self.failures = 0
        enough = self.successes >= self.spec.success_threshold
        self._fire("enough-successes" if enough else "success", now=now, error=None)

    def probe_failed(self, error: str, *, now: float) -> None:
        if not self._finish(now):
            return
        self.failures += 1
        self.successes = 0
        enough = self.failures >= self.spec.failure_threshold
        self._fire("enough-failures" if enough else "failure", now=now, error=error)

    def reconfigure(self, spec: ProbeSpec, *, now: float) -> None:
        """Apply an edited check: new timings and thresholds apply from the next check; a
        different check (command, path, port) is judged afresh, from pending."""
        same_check = spec.check == self.spec.check
        self.spec = spec
        if same_check:
            return
        self._discard = self._in_flight is not None
        self.failures = self.successes = 0
        self.last_error = None
        was = (self.ready, self.reason)
        self.state, self.reason = "pending", PENDING_REASON
        if was != (False, PENDING_REASON):
            self._events.append(ReadinessChanged(False, self.reason, now))

    def next_event(self) -> ReadinessChanged | None:
        return self._events.pop(0) if self._events else None

    def _finish(self, now: float) -> bool:
        """End the check in flight; whether its outcome counts."""
        if self._in_flight is None:
            raise ProbeStateError("an outcome was reported with no check in flight")
        self._in_flight = None
        counts, self._discard = not self._discard, False
        if counts:
            self.last_outcome_at = now
        return counts

    def _fire(self, event: Event, *, now: float, error: str | None) -> None:
        before = (self.ready, self.reason)
        self.state = TRANSITIONS[self.state][event]
        if self.state == "ready":
            self.reason = None
        elif error is not None and (before[0] or error != self.last_error):
            # Not ready: say why, and say it again only when the reason itself changes.
            self.last_error = error
            self.reason = self.failure()
        if error is not None:
            self.last_error = error
        if (self.ready, self.reason) != before:
            self._events.append(ReadinessChanged(self.ready, self.reason, now))

    def failure(self) -> str | None:
        """The last failure with the live count: ``exec test -f /tmp/ready: exited with code 1
        (2 failures in a row)``; None after a pass."""
        if not self.failures or self.last_error is None:
            return None
        text = f"{describe(self.spec.check)}: {self.last_error}"
        return text + (f" ({self.failures} failures in a row)" if self.failures > 1 else "")

    def explain(self, *, now: float) -> str:
        """Where it stands, with live counts, for `why`: one clause, no container name."""
        what = describe(self.spec.check)
        spec = self.spec
        every = f"checked every {_seconds(spec.period_s)}, timeout {_seconds(spec.timeout_s)}"
        if self.state == "pending" and self.last_outcome_at is None:
            due = self.get_timer()
            when = f", due in {max(0.0, due - now):.1f} s" if due is not None else ", running"
            return f"waiting for its first check ({what}{when})"
        ago = f"{now - self.last_outcome_at:.1f} s ago" if self.last_outcome_at else "never"
        if self.ready:
            return f"ready: {what} passed, the last check {ago} ({every})"
        if self.failures:
            return (
                f"{what} failed {_times(self.failures, 'time')} in a row, the last {ago}: "
                f"{self.last_error}; it needs {_times(spec.success_threshold, 'pass')} in a row "
                f"to be ready ({every})"
            )
        return (
            f"{what} passed {_times(self.successes, 'time')} in a row, the last {ago}; it needs "
            f"{_times(spec.success_threshold, 'pass')} in a row to be ready ({every})"
        )


# -- what a look at a container means for its probing ----------------------------------------

Tracking = Literal["start", "keep", "stop", "none"]


def track(probing: float | None, state: str, started_at: float | None) -> Tracking:
    """What to do about a container's probing when the sandbox says it is in `state`, its
    current (or last) run started at `started_at`, and the node probes the run that started
    at `probing` (None: it probes none). Only a running container is probed."""
    running = state == "running" and started_at is not None
    if probing is None:
        return "start" if running else "none"
    if not running:
        return "stop"
    return "keep" if started_at == probing else "start"


# -- the health.wait step -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerHealth:
    """What `health_verdict` needs of one container: its sandbox state and its readiness."""

    state: str
    """The sandbox's lifecycle state (running, backoff, exited, starting, ...)."""
    ready: bool
    reason: str | None = None
    """Why it is not ready, when it runs."""
    failing: bool = False
    """Its check has failed `failure_threshold` times in a row."""
    exit_code: int | None = None
    message: str | None = None
    """The sandbox's explanation of a failed start or a lost run."""


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    outcome: Literal["ready", "waiting", "failed"]
    reason: str | None = None
    """failed: why; waiting: what it waits for (every container that is not ready yet)."""


ENDED = frozenset({"backoff", "exited", "stopped"})


def health_verdict(containers: Mapping[str, ContainerHealth]) -> HealthVerdict:
    """``ready`` once every container is ready, or has completed (exited 0 and will not run
    again: a finished job is not waited for); ``failed`` as soon as one has stopped running,
    or its check has failed `failure_threshold` times in a row (the reason names the first,
    by container name); else ``waiting``."""
    waits: list[str] = []
    for name in sorted(containers):
        c = containers[name]
        if c.state in ENDED:
            if c.state == "exited" and c.exit_code == 0:
                continue
            if c.message:
                ended = c.message
            elif c.exit_code is not None:
                ended = f"exited with code {c.exit_code}"
            else:
                ended = c.state
            return HealthVerdict("failed", f"{name}: {ended} before it was ready")
        if c.state == "running" and c.ready:
            continue
        if c.state == "running" and c.failing:
            return HealthVerdict("failed", f"{name}: not ready: {c.reason}")
        waits.append(f"{name}: {c.reason if c.state == 'running' else c.state}")
    if waits:
        return HealthVerdict("waiting", "; ".join(waits))
    return HealthVerdict("ready")


def wait_bound(specs: Iterable[ProbeSpec]) -> float:
    """How long ``health.wait`` waits at most (seconds): long enough for the slowest check
    to reach either threshold after its initial delay, even one that alternates; or
    `NO_PROBE_WAIT_S` with no check."""
    bounds = [
        s.initial_delay_s + (s.failure_threshold + s.success_threshold) * s.period_s + s.timeout_s
        for s in specs
    ]
    return max(bounds, default=NO_PROBE_WAIT_S)


# -- reading an http answer -----------------------------------------------------------------

MAX_STATUS_LINE = 4096
"""The most of an answer read for its status line (bytes)."""


def http_outcome(head: bytes) -> str | None:
    """None when `head` (the start of an answer) says 2xx or 3xx; else the error, in words."""
    if not head:
        return "the connection was closed without an answer"
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    words = line.split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        return f"not an HTTP answer: {line[:60]!r}"
    code = int(words[1])
    if 200 <= code < 400:
        return None
    text = words[2].strip() if len(words) > 2 else ""
    return f"HTTP {code} {text}".rstrip()
