"""A container's lifecycle as a table: states, events, and the restart policy's decisions.

Theory of operation. The node (`sandbox.containers`) feeds this core what it sees of each
container (the runtime started it, the runtime failed to, it exited with a code, its monitor
vanished, someone asked it to stop or restart) with an explicit ``now``, persists it, and
asks it what to do next: start again now, at `next_start_at`, or never. The core never
touches a process or a clock.

    created --start--> starting --started--> running --exited--> backoff --due--> starting
                                  \\--failed--> backoff    \\--exited (policy says no)--> exited
                                  \\--failed (policy never)--> exited
    any live state --stop--> stopping --exited--> stopped
    running --recycle--> restarting --exited--> starting      (restart in place, no backoff)
    running --lost--> backoff, due at once      (its monitor vanished, e.g. a node reboot)

After an exit the restart policy decides: ``always`` restarts, ``on-failure`` restarts unless
the exit code is 0, ``never`` does not. A restart waits an exponential backoff: `initial_s`
after the first quick exit, doubling up to `max_s`; a container that ran at least `reset_s`
before exiting starts again from `initial_s`, as a crash-looping one slows down and a
long-running one that fails once comes back quickly. `TRANSITIONS` is the whole machine; an
event a state does not list is a bug in the caller and raises `LifecycleError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal

    State = Literal[
        "created", "starting", "running", "backoff", "restarting", "stopping", "exited", "stopped"
    ]
    Event = Literal[
        "start",
        "started",
        "failed",
        "gave-up",
        "exited",
        "restart",
        "finish",
        "due",
        "stop",
        "recycle",
        "lost",
    ]
    Policy = Literal["always", "on-failure", "never"]

TRANSITIONS: Mapping[State, Mapping[Event, State]] = {
    "created": {"start": "starting", "stop": "stopped"},
    "starting": {
        "started": "running",
        "failed": "backoff",
        "gave-up": "exited",
        "stop": "stopping",
    },
    "running": {
        "restart": "backoff",
        "finish": "exited",
        "stop": "stopping",
        "recycle": "restarting",
        "lost": "backoff",
        "gave-up": "exited",
    },
    "backoff": {"due": "starting", "stop": "stopped", "recycle": "starting"},
    "restarting": {"exited": "starting", "stop": "stopping", "lost": "starting"},
    "stopping": {"exited": "stopped", "failed": "stopped", "lost": "stopped"},
    "exited": {"start": "starting", "stop": "stopped"},
    "stopped": {"start": "starting"},
}
"""state -> event -> next state. ``exited`` while running is split by the restart policy into
``restart`` (to backoff) and ``finish`` (to exited)."""
FINAL: frozenset[State] = frozenset({"exited", "stopped"})
"""States in which nothing runs and nothing is due: only an explicit start leaves them."""


class LifecycleError(RuntimeError):
    pass


class Backoff(NamedTuple):
    initial_s: float = 10.0
    """Wait before the first restart after a quick exit, in seconds (Kubernetes uses 10)."""
    max_s: float = 300.0
    """The longest wait between restarts, in seconds; doubling stops here."""
    reset_s: float = 600.0
    """A container that ran this many seconds before exiting restarts after `initial_s` again."""

    def delay(self, quick_exits: int) -> float:
        """The wait before a restart after `quick_exits` (>= 1) quick exits in a row."""
        return float(min(self.max_s, self.initial_s * 2 ** max(0, quick_exits - 1)))


def wants_restart(policy: Policy, exit_code: int) -> bool:
    return policy == "always" or (policy == "on-failure" and exit_code != 0)


class Lifecycle:
    """One container's lifecycle; fed events with `now`, it says what the node does next."""

    __slots__ = (
        "backoff",
        "ever_started",
        "exit_code",
        "finished_at",
        "message",
        "next_start_at",
        "policy",
        "quick_exits",
        "restarts",
        "started_at",
        "state",
    )

    def __init__(self, policy: Policy, backoff: Backoff) -> None:
        self.policy = policy
        self.backoff = backoff
        self.state: State = "created"
        self.restarts = 0
        """How many times the container was started again after its first start."""
        self.quick_exits = 0
        self.exit_code: int | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.next_start_at: float | None = None
        self.message: str | None = None
        self.ever_started = False
        """Whether this container was started before (in an earlier run of the node, too): the next
        start counts as a restart."""

    def _go(self, event: Event) -> None:
        nxt = TRANSITIONS[self.state].get(event)
        if nxt is None:
            raise LifecycleError(f"event {event!r} is not valid in state {self.state!r}")
        self.state = nxt

    def start(self, *, now: float) -> None:
        self._go("start")
        self.next_start_at = None
        self.message = None

    def due(self, *, now: float) -> bool:
        """In backoff: True (and starting) once the wait is over."""
        if self.state != "backoff" or self.next_start_at is None or now < self.next_start_at:
            return False
        self._go("due")
        return True

    def started(self, *, now: float) -> None:
        self._go("started")
        if self.ever_started:
            self.restarts += 1
        self.ever_started = True
        self.started_at = now
        self.finished_at = None
        self.exit_code = None

    def failed(self, *, now: float, message: str) -> None:
        """The runtime could not start the container (or stop it). Retried after a backoff
        unless the policy is ``never``."""
        self._go("gave-up" if self.state == "starting" and self.policy == "never" else "failed")
        self.message = message
        self.finished_at = now
        if self.state == "backoff":
            self.quick_exits += 1
            self.next_start_at = now + self.backoff.delay(self.quick_exits)

    def exited(self, *, now: float, exit_code: int) -> None:
        self.exit_code = exit_code
        self.finished_at = now
        if self.state in ("stopping", "restarting"):
            self._go("exited")
            return
        ran = now - self.started_at if self.started_at is not None else 0.0
        self.quick_exits = 1 if ran >= self.backoff.reset_s else self.quick_exits + 1
        if wants_restart(self.policy, exit_code):
            self._go("restart")
            self.next_start_at = now + self.backoff.delay(self.quick_exits)
        else:
            self._go("finish")

    def stop(self, *, now: float) -> bool:
        """Asked to stop: True when a running container must be signalled (else it is done)."""
        signal_it = self.state in ("starting", "running")
        self._go("stop")
        self.next_start_at = None
        return signal_it

    def lost(self, *, now: float, message: str) -> None:
        """Its monitor vanished without reporting an exit (the node restarted, or the monitor
        was killed): the run is over, with no exit code. Unless the policy is ``never`` it is
        due to start again at once: nothing says it failed."""
        if self.state == "running" and self.policy == "never":
            self._go("gave-up")
        else:
            self._go("lost")
            if self.state == "backoff":
                self.next_start_at = now
        self.exit_code = None
        self.finished_at = now
        self.message = message

    def recycle(self, *, now: float) -> bool:
        """Asked to restart in place: True when the running container must be stopped first;
        otherwise the state is ``starting`` and the caller starts it now."""
        signal_it = self.state == "running"
        self._go("recycle")
        self.next_start_at = None
        return signal_it

    @property
    def final(self) -> bool:
        return self.state in FINAL
