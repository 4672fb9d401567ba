"""One container's runs: its monitor process, its lifecycle record, its state.

Theory of operation. A container's directory holds what the node decided (``record.json``:
the `sandbox._lifecycle` state, restarts, backoff) and what its current run's monitor saw
(``status.json``, written by `monitor.c`: running, exit code, times). The node starts a run by
executing the monitor, which returns once the container runs (or could not start): no polling.
The monitor ends with the run; `refresh` folds its last status into the record (an exit, or a
loss when it vanished without one), and the restart policy decides from there. So a container
is restarted by the node (`Sandbox.supervise`), never behind its back, and every decision is
in one record with its reason.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sandbox._lifecycle import FINAL, Backoff, Lifecycle

if TYPE_CHECKING:
    from sandbox._lifecycle import Policy

T = TypeVar("T")
START_TIMEOUT_S = 120.0
POLL_S = 0.005
LOST = "its monitor ended without reporting an exit (the node restarted, or it was killed)"


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How a container runs: the same for every run until the pod is edited."""

    monitor: str
    """Path of the compiled monitor (`sandbox.monitor.binary`)."""
    runtime: tuple[str, ...]
    """The runtime's executable and global arguments (`sandbox._classes.runtime_argv`)."""
    policy: Policy
    grace_s: float
    backoff: Backoff
    log_max_bytes: int
    log_keep: int


@dataclass(frozen=True, slots=True)
class ContainerState:
    name: str
    state: str
    """created, starting, running, backoff, restarting, stopping, exited or stopped (see
    `sandbox._lifecycle`); a run whose monitor vanished (a reboot) is in backoff, due at once,
    with a message saying so."""
    pid: int | None
    exit_code: int | None
    restarts: int
    started_at: float | None
    finished_at: float | None
    next_start_at: float | None
    image_digest: str | None
    message: str | None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


_FIELDS = (
    "state",
    "restarts",
    "quick_exits",
    "exit_code",
    "started_at",
    "finished_at",
    "next_start_at",
    "message",
    "ever_started",
)


_locks: dict[str, threading.RLock] = {}
_locks_lock = threading.Lock()


def _lock_for(directory: Path) -> threading.RLock:
    """One lock per container directory in this process: a record is read, changed and
    written by one thread at a time (the daemon observes while a workflow starts)."""
    with _locks_lock:
        return _locks.setdefault(str(directory), threading.RLock())


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Container, *args: Any, **kwargs: Any) -> T:
        with _lock_for(self.dir):
            return method(self, *args, **kwargs)

    return wrapper


class Container:
    """The runs of the container whose files are in `directory`."""

    def __init__(self, directory: Path, runtime_id: str, name: str) -> None:
        self.dir = directory
        self.id = runtime_id
        self.name = name

    # -- the record and the monitor's status ------------------------------------------------

    def load(self, s: RunSettings) -> Lifecycle:
        life = Lifecycle(policy=s.policy, backoff=s.backoff)
        for k, v in (read_json(self.dir / "record.json") or {}).items():
            if k in _FIELDS:
                setattr(life, k, v)
        return life

    def save(self, life: Lifecycle) -> None:
        write_json(self.dir / "record.json", {k: getattr(life, k) for k in _FIELDS})

    def status(self) -> dict[str, Any] | None:
        return read_json(self.dir / "status.json")

    def monitor_alive(self, status: Mapping[str, Any] | None = None) -> bool:
        status = status if status is not None else self.status()
        pid = (status or {}).get("monitor_pid")
        if not pid:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return (
            len(cmdline) > 2
            and cmdline[1] == str(self.dir).encode()
            and cmdline[2] == (self.id.encode())
        )

    @_locked
    def refresh(self, s: RunSettings, *, now: float) -> Lifecycle:
        """The record, with the end of a run its monitor reported (or a vanished monitor)
        folded in, and saved."""
        life = self.load(s)
        if life.state not in ("running", "stopping", "restarting"):
            return life
        status = self.status()
        if status is not None and self.monitor_alive(status):
            return life
        # Read again now that it is gone: it writes its last status before it exits, and the
        # read above may be from just before that.
        status = self.status()
        if status is not None and status.get("state") == "exited":
            life.exited(now=status.get("finished_at") or now, exit_code=status["exit_code"])
        else:
            life.lost(now=now, message=LOST)
            # The runtime may still list it (killed with its monitor, or a state left over).
            subprocess.run(
                [*s.runtime, "delete", "--force", self.id],
                capture_output=True,
                timeout=30,
                check=False,
            )
        self.save(life)
        return life

    # -- runs --------------------------------------------------------------------------------

    @_locked
    def start(self, s: RunSettings, *, now: float) -> Lifecycle:
        """Start a run now (after a backoff too: an explicit start does not wait for it)."""
        life = self.refresh(s, now=now)
        if life.state in ("running", "stopping", "restarting"):
            return life  # its monitor is alive: it runs
        if life.state == "backoff":
            life.next_start_at = now
            life.due(now=now)
        elif life.state != "starting":
            life.start(now=now)
        (self.dir / "status.json").unlink(missing_ok=True)
        argv = [s.monitor, str(self.dir), self.id, str(self.dir / "bundle")]
        argv += [str(s.log_max_bytes), str(s.log_keep), str(int(s.grace_s * 1000))]
        out = subprocess.run(
            [*argv, *s.runtime],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        status = self.status() or {}
        if out.returncode == 0:
            life.started(now=status.get("started_at") or now)
        else:
            report = out.stdout.strip().removeprefix("failed: ") or out.stderr.strip()
            life.failed(now=time.time(), message=report or "the monitor failed to start")
        self.save(life)
        return life

    def _signal_monitor(self, sig: signal.Signals) -> bool:
        status = self.status()
        if not self.monitor_alive(status):
            return False
        assert status is not None
        os.kill(int(status["monitor_pid"]), sig)
        return True

    def _wait_monitor_gone(self, timeout: float, *, hurry_after: float | None) -> None:
        deadline = time.monotonic() + timeout
        hurry = None if hurry_after is None else time.monotonic() + hurry_after
        while self.monitor_alive():
            if hurry is not None and time.monotonic() >= hurry:
                self._signal_monitor(signal.SIGINT)  # SIGKILL now
                hurry = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {self.name} did not stop within {timeout:.0f} s")
            time.sleep(POLL_S)

    @_locked
    def stop(self, s: RunSettings, *, now: float, grace_s: float | None = None) -> Lifecycle:
        """Stop it for good (until started): SIGTERM, SIGKILL after the grace period (the
        pod's, or `grace_s`). A pending restart is cancelled."""
        life = self.refresh(s, now=now)
        if life.final or life.state == "created":
            if life.state == "created":
                life.stop(now=now)
                self.save(life)
            return life
        if life.stop(now=now):
            self.save(life)
            if self._signal_monitor(signal.SIGTERM):
                # The run's monitor knows the grace period it started with; the pod's current
                # one (or the caller's) is applied from here.
                grace = s.grace_s if grace_s is None else grace_s
                self._wait_monitor_gone(grace + 30, hurry_after=grace)
            life = self.refresh(s, now=time.time())
        self.save(life)
        return life

    @_locked
    def restart(self, s: RunSettings, *, now: float) -> Lifecycle:
        """Restart in place at once: stopped the usual way, started again, no backoff."""
        life = self.refresh(s, now=now)
        if life.state in ("running", "backoff"):
            if life.recycle(now=now):
                self.save(life)
                if self._signal_monitor(signal.SIGTERM):
                    self._wait_monitor_gone(s.grace_s + 30, hurry_after=None)
                life = self.refresh(s, now=time.time())
            else:
                self.save(life)
        return self.start(s, now=time.time())

    @_locked
    def supervise(self, s: RunSettings, *, now: float) -> str | None:
        """Apply the restart policy: start it again if its backoff is over. What was done."""
        life = self.refresh(s, now=now)
        if life.state == "starting" or life.due(now=now):
            self.save(life)
            self.start(s, now=now)
            return "restarted"
        return None

    def state(self, s: RunSettings, image_digest: str | None) -> ContainerState:
        """What it is now (the end of a run its monitor reported is folded in first)."""
        life = self.refresh(s, now=time.time())
        status = self.status() or {}
        running = life.state in ("running", "stopping", "restarting")
        return ContainerState(
            self.name,
            life.state,
            status.get("pid") if running else None,
            life.exit_code,
            life.restarts,
            life.started_at,
            life.finished_at,
            life.next_start_at,
            image_digest,
            life.message,
        )

    def finished(self, s: RunSettings) -> bool:
        """No run is going on, and none is due: what `logs --follow` waits for."""
        return self.refresh(s, now=time.time()).state in (*FINAL, "created")
