"""The node's readiness checks: it probes the containers of the pods it runs.

Theory of operation. Each running container whose spec declares `readiness` has one asyncio
task and one pure `Readiness` core (`edgenode._probe`) for its current run. The task sleeps
until the core's timer, runs the check with its timeout, feeds the outcome in, and drains the
core's events: a change of readiness (or of its reason) wakes the daemon, whose next round
publishes the pod's status; a check that fails the same way every period writes nothing.

The daemon shows the prober every look it takes at its pods (`sync`, each reconcile round,
stamped with when the look was taken, so an older look never undoes a newer one) and
`track` says what each look means: a container that runs a new run gets a fresh core (not
ready until its check passes); one that stops, or a pod that is gone, stops being probed;
an edited check is applied to the running core (`Readiness.reconfigure`). The workflow step
``health.wait`` takes a look of its own, then waits on the pod's changes (`wait_ready`).

The checks, none of which blocks the event loop:

- ``exec``: the runtime's ``exec`` in the container (`Sandbox.exec_argv`: the container's own
  user, capabilities, seccomp filter and AppArmor profile; no new privileges) as an asyncio
  subprocess. On a timeout the process is killed by the host pid the runtime wrote, then the
  runtime itself. Each costs a runtime invocation (tens of ms of CPU): prefer http or tcp for
  short periods.
- ``http`` and ``tcp``: a connection to localhost in the pod's network namespace. The socket
  is made by a short-lived thread that joins the namespace (`sandbox.netns.submit_in`) and
  ends at once; a socket keeps its namespace, so the connect, the request and the answer run
  on the event loop, under the check's timeout. IPv4 first, then IPv6 when refused.

A daemon that restarts finds its pods running: a run it had published ready starts out ready
(`Readiness(ready=True)`), so a restart of the daemon does not flap its pods' readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from edgenode._probe import (
    MAX_STATUS_LINE,
    PENDING_REASON,
    Check,
    ContainerHealth,
    ExecProbe,
    HealthVerdict,
    HttpProbe,
    ProbeSpec,
    Readiness,
    TcpProbe,
    describe,
    health_verdict,
    http_outcome,
    track,
)
from edgenode.objects import ObjectError
from edgenode.podspec import probe_specs, stored_pod
from sandbox import netns
from sandbox.pods import SandboxError

if TYPE_CHECKING:
    from edgenode.daemon import Daemon

log = structlog.get_logger("edgenode.probes")

OUTPUT_SHOWN = 200
"""The most of an exec check's last line of output quoted in its error (characters)."""


class SeenContainer(Protocol):
    """What a look at a container says (`ObservedContainer` and `ContainerState` both do)."""

    @property
    def state(self) -> str: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def message(self) -> str | None: ...


class SeenPod(Protocol):
    @property
    def containers(self) -> Mapping[str, SeenContainer]: ...


_Target = tuple[Check, str | None, list[str], Path | None, int | None]


@dataclass
class _Probe:
    pod: str
    container: str
    core: Readiness
    view: tuple[bool, str | None]
    """(ready, reason), replaced whole after each change: the status thread reads it."""
    poke: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the core's timings changed: the sleeping task looks at its timer again."""
    task: asyncio.Task[None] | None = None
    target: _Target | None = None
    """(check, network namespace, exec argv, pid file, port number): where the check goes,
    once found."""


class Probes:
    """The readiness checks of one node's containers (see the module's doc)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.since = time.time()
        """Runs that started before this are the previous daemon's (see `Readiness`)."""
        self._specs: dict[str, tuple[str, dict[str, ProbeSpec]]] = {}
        self._probes: dict[tuple[str, str], _Probe] = {}
        self._seen: dict[str, tuple[float, dict[str, SeenContainer]]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._closed = False

    # -- what to probe -----------------------------------------------------------------------

    def specs(self, pod: str) -> dict[str, ProbeSpec]:
        """Pod `pod`'s readiness checks by container, from the store (translated once per
        edit of its spec); none for a pod that is not in the store or not runnable."""
        doc = self.d.store.get("Pod", pod)
        if doc is None:
            return {}
        key = json.dumps(doc.get("spec"), sort_keys=True)
        cached = self._specs.get(pod)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            specs = probe_specs(pod, stored_pod(doc).spec)
        except (ObjectError, ValueError) as exc:
            log.warning("readiness_not_read", pod=pod, error=str(exc))
            specs = {}
        self._specs[pod] = (key, specs)
        return specs

    def _published_ready(self, pod: str) -> set[str]:
        doc = self.d.store.get("Pod", pod) or {}
        containers = (doc.get("status") or {}).get("containers") or {}
        return {c for c, s in containers.items() if s.get("ready") is True}

    def sync(self, observed: Mapping[str, SeenPod], *, read_at: float) -> None:
        """Apply the daemon's look at every pod of the sandbox, taken at `read_at`
        (`time.monotonic()` before it began): pods absent from it are no longer probed."""
        for pod in [p for p in self._seen if p not in observed]:
            if self._seen[pod][0] <= read_at:
                self._forget(pod)
        for pod, seen in observed.items():
            self._look(pod, seen.containers, read_at=read_at)

    def _look(self, pod: str, containers: Mapping[str, SeenContainer], *, read_at: float) -> None:
        last = self._seen.get(pod)
        if last is not None and last[0] > read_at:
            return  # a newer look was applied already
        self._seen[pod] = (read_at, dict(containers))
        specs = self.specs(pod)
        known = {c for p, c in self._probes if p == pod}
        for c in sorted(known | containers.keys()):
            seen, spec, probe = containers.get(c), specs.get(c), self._probes.get((pod, c))
            if seen is None or spec is None:
                if probe is not None:
                    self._stop(probe)
                continue
            action = track(probe.core.started_at if probe else None, seen.state, seen.started_at)
            if action == "stop" and probe is not None:
                self._stop(probe)
            elif action == "start" and seen.started_at is not None:
                if probe is not None:
                    self._stop(probe)
                kept = seen.started_at < self.since and c in self._published_ready(pod)
                self._start(pod, c, spec, started_at=seen.started_at, ready=kept)
            elif action == "keep" and probe is not None and probe.core.spec != spec:
                probe.core.reconfigure(spec, now=time.time())
                probe.poke.set()
                self._pump(probe)
        self._notify(pod)

    def _forget(self, pod: str) -> None:
        for (p, _), probe in list(self._probes.items()):
            if p == pod:
                self._stop(probe)
        self._seen.pop(pod, None)
        self._specs.pop(pod, None)
        self._notify(pod)

    def _start(
        self, pod: str, container: str, spec: ProbeSpec, *, started_at: float, ready: bool
    ) -> None:
        if self._closed:
            return
        core = Readiness(spec, started_at=started_at, ready=ready)
        probe = _Probe(pod, container, core, (core.ready, core.reason))
        probe.task = asyncio.create_task(self._run(probe), name=f"probe-{pod}-{container}")
        self._probes[(pod, container)] = probe
        log.info("probing_started", pod=pod, container=container, started_out_ready=ready)

    def _stop(self, probe: _Probe) -> None:
        if probe.task is not None:
            probe.task.cancel()
        self._probes.pop((probe.pod, probe.container), None)
        log.info("probing_stopped", pod=probe.pod, container=probe.container)

    async def close(self) -> None:
        """Stop every check (a check in flight is killed); a `wait_ready` under way ends."""
        self._closed = True
        tasks = [p.task for p in self._probes.values() if p.task is not None]
        for probe in list(self._probes.values()):
            self._stop(probe)
        for event in self._changed.values():
            event.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one container's checks --------------------------------------------------------------

    async def _run(self, probe: _Probe) -> None:
        core = probe.core
        while True:
            due = core.get_timer()
            assert due is not None  # nothing is in flight between two checks
            probe.poke.clear()
            if due > time.time():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probe.poke.wait(), due - time.time())
                continue  # poked (new timings) or due: look at the timer again
            core.probe_started(now=time.time())
            spec = core.spec
            try:
                async with asyncio.timeout(spec.timeout_s):
                    error = await self._check(probe, spec)
            except TimeoutError:
                error = f"no answer within {spec.timeout_s:g}s"
            if error is None:
                core.probe_succeeded(now=time.time())
            else:
                core.probe_failed(error, now=time.time())
            self._pump(probe)

    def _pump(self, probe: _Probe) -> None:
        changed = False
        while (event := probe.core.next_event()) is not None:
            changed = True
            log.info(
                "readiness_changed",
                pod=probe.pod,
                container=probe.container,
                ready=event.ready,
                reason=event.reason,
            )
        self._notify(probe.pod)  # health.wait counts failures, not only changes
        if changed:
            probe.view = (probe.core.ready, probe.core.reason)
            self.d.wake()

    async def _check(self, probe: _Probe, spec: ProbeSpec) -> str | None:
        """None if the check passed, else what went wrong (a timeout cancels it)."""
        try:
            check, ns, argv, pid_file, port = await self._target(probe, spec)
        except (SandboxError, OSError, KeyError, ValueError) as exc:
            # The pod went away under the check: the next look stops probing it.
            return f"cannot reach the container: {exc}"
        if isinstance(check, ExecProbe):
            assert pid_file is not None
            return await _exec(argv, pid_file)
        assert port is not None
        request = None
        if isinstance(check, HttpProbe):
            request = (
                f"GET {check.path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                "User-Agent: edgenode-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            ).encode()
        assert isinstance(check, HttpProbe | TcpProbe)
        try:
            return await _connect(ns, port, request)
        except OSError as exc:  # NetnsError: the namespace is gone
            return f"cannot enter the pod's network: {exc}"

    async def _target(self, probe: _Probe, spec: ProbeSpec) -> _Target:
        if probe.target is None or probe.target[0] != spec.check:
            sandbox = self.d.sandbox
            if isinstance(spec.check, ExecProbe):
                argv, pid_file = await asyncio.to_thread(
                    sandbox.exec_argv, probe.pod, probe.container, spec.check.command
                )
                probe.target = (spec.check, None, argv, pid_file, None)
            else:
                state = await asyncio.to_thread(sandbox.state, probe.pod)
                port = spec.check.port
                if isinstance(port, str):  # a host port: the number the node allocated it
                    if port not in state.host_ports:
                        raise SandboxError(f"pod {probe.pod} holds no host port {port}")
                    port = state.host_ports[port]
                probe.target = (spec.check, state.netns, [], None, port)
        return probe.target

    # -- what the node reports -----------------------------------------------------------------

    def readiness(
        self, pod: str, container: str, state: str, started_at: float | None
    ) -> tuple[bool, str | None]:
        """(ready, why not) of a container the sandbox says is in `state`, its run started at
        `started_at`. A reason only for a running container: a stopped one says why itself.
        Safe to call from the thread that writes statuses (it only reads)."""
        if state != "running":
            return False, None
        cached = self._specs.get(pod)
        specs = cached[1] if cached is not None else self.specs(pod)
        if container not in specs:
            return True, None
        probe = self._probes.get((pod, container))
        if probe is None or probe.core.started_at != started_at:
            return False, PENDING_REASON
        return probe.view

    def explain(self, pod: str, containers: Mapping[str, SeenContainer]) -> dict[str, str]:
        """For `why`: each running container of `pod` (as `containers` says) that is not
        ready, and where its check stands (live counts, the last error, when it last ran)."""
        now = time.time()
        specs = self.specs(pod)
        out = {}
        for c, seen in sorted(containers.items()):
            if seen.state != "running" or c not in specs:
                continue
            probe = self._probes.get((pod, c))
            if probe is None or probe.core.started_at != seen.started_at:
                out[c] = f"{PENDING_REASON} ({describe(specs[c].check)})"
            elif not probe.core.ready:
                out[c] = probe.core.explain(now=now)
        return out

    # -- the health.wait step ---------------------------------------------------------------

    def _notify(self, pod: str) -> None:
        event = self._changed.get(pod)
        if event is not None:
            event.set()

    def _health(self, pod: str) -> dict[str, ContainerHealth]:
        seen = self._seen.get(pod, (0.0, {}))[1]
        health = {}
        for c, s in seen.items():
            ready, reason = self.readiness(pod, c, s.state, s.started_at)
            probe = self._probes.get((pod, c))
            failing = probe is not None and probe.core.failing
            if failing and probe is not None:
                reason = probe.core.failure()
            health[c] = ContainerHealth(s.state, ready, reason, failing, s.exit_code, s.message)
        return health

    async def wait_ready(self, pod: str, *, bound_s: float) -> HealthVerdict:
        """Wait until every container of `pod` is ready (or one has stopped, or its check has
        failed `failureThreshold` times in a row), at most `bound_s` seconds; the verdict."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound_s
        changed = self._changed.setdefault(pod, asyncio.Event())
        try:
            read_at = time.monotonic()
            state = await asyncio.to_thread(self.d.sandbox.state, pod)
            self._look(pod, state.containers, read_at=read_at)
            while True:
                changed.clear()
                if self._closed:
                    return HealthVerdict("failed", "the node stopped before the pod was ready")
                verdict = health_verdict(self._health(pod))
                left = deadline - loop.time()
                if verdict.outcome != "waiting":
                    return verdict
                if left <= 0:
                    return HealthVerdict(
                        "failed", f"not ready after {bound_s:g} s: {verdict.reason}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
        finally:
            self._changed.pop(pod, None)


# -- the checks ---------------------------------------------------------------------------


async def _exec(argv: list[str], pid_file: Path) -> str | None:
    pid_file.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:  # its timeout, or probing stopped: kill what it started
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    finally:
        pid_file.unlink(missing_ok=True)
    if proc.returncode == 0:
        return None
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    said = f": {lines[-1].strip()[:OUTPUT_SHOWN]}" if lines else ""
    return f"exited with code {proc.returncode}{said}"


def _sockets() -> list[tuple[socket.socket, tuple[str, int]]]:
    """A non-blocking TCP socket per address family this network has, with its loopback."""
    made = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here
        sock.setblocking(False)
        made.append((sock, (host, 0)))
    return made


def _error_text(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror.lower() if exc.strerror else str(exc)


async def _connect(ns: str | None, port: int, request: bytes | None) -> str | None:
    """Connect to localhost:`port` in network namespace `ns` (None: the node's own); with a
    `request`, send it and judge the answer's status line."""
    loop = asyncio.get_running_loop()
    made = _sockets() if ns is None else await asyncio.wrap_future(netns.submit_in(ns, _sockets))
    first_error: str | None = None
    try:
        for sock, (host, _) in made:
            try:
                await loop.sock_connect(sock, (host, port))
            except OSError as exc:
                first_error = first_error or _error_text(exc)
                continue
            if request is None:
                return None
            try:
                await loop.sock_sendall(sock, request)
                head = b""
                while b"\r\n" not in head and len(head) < MAX_STATUS_LINE:
                    chunk = await loop.sock_recv(sock, MAX_STATUS_LINE - len(head))
                    if not chunk:
                        break
                    head += chunk
            except OSError as exc:
                return _error_text(exc)
            return http_outcome(head)
    finally:
        for sock, _ in made:
            sock.close()
    return first_error or "no loopback address to connect to"
