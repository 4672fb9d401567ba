"""The node daemon: one process per node that makes its store's desired state run.

Theory of operation. `Daemon.run` opens the node's store, image store, sandbox and workflow
records, publishes the node's own Node object (its sandbox report), takes over the pods that
were running before it started (`Sandbox.adopt`), serves the local API (`edgenode.server`),
and reconciles: on every change to a Pod in the store, on every end of a workflow, when a
container starts or exits (its monitor's status file changes), at the next time a restart is
due, and every `resync_s` anyway, it reads what should run here
(pods assigned to this node) and what runs (the sandbox), asks the pure reconciler
(`edgenode._reconcile`) for a plan, and applies each item as a workflow
(`edgenode.podflows`): start, update in place, restart, delete. A pod has at most one
workflow at a time; the others wait for the next round. Each round also shows the prober
(`edgenode.probes`) what runs, so it checks the readiness of exactly the current runs; a turn
of readiness wakes the reconciler. Status is written by the node (manager ``node:<name>``)
after each workflow and whenever a container's state or readiness changes.

Each round starts with the PinnedDeployments (`edgenode.deployments`: their pods, their
rollouts' steps and status, written by the node where each was last edited), then placement
(`edgenode.placing`): the node evaluates the same pure
placement function as every other node over the replicated pods and its membership view, and
writes its own share of the decisions (manager ``placement``); a lone node places every pod
that fits it. Membership changes wake the loop, and so does the plan's next wake (a
``lostAfter`` ending). SIGTERM and SIGINT stop the daemon; pods keep running, and the next
start adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edgenode._reconcile import (
    Desired,
    Observed,
    ObservedContainer,
    Plan,
    default_live_resize,
    reconcile,
)
from edgenode.deployments import DeploymentControl
from edgenode.local import open_store
from edgenode.network._addressing import settle
from edgenode.network._routes import PeerNet
from edgenode.network.node import NodeNetwork, claims_of, cluster_ula
from edgenode.objects import ObjectError
from edgenode.placing import NodePlacement
from edgenode.podspec import pod_def, stored_pod
from edgenode.probes import Probes
from sandbox._lifecycle import Backoff
from sandbox._ports import DEFAULT_RANGE, PortRange
from sandbox._spec import PodDef
from sandbox.busybox import ensure_busybox
from sandbox.host import features
from sandbox.images import ImageStore
from sandbox.pods import Sandbox, SandboxError
from store import ChangeApplied, Store

if TYPE_CHECKING:
    from edgenode.mesh import Mesh

log = structlog.get_logger("edgenode.daemon")

RESYNC_S = 10.0
RUNS_POLL_S = 0.5
"""How often the daemon looks for containers that started or exited (a few stat calls)."""
RETRY_S = 1.0
RETRY_MAX_S = 60.0
"""A pod whose workflow failed is tried again after 1 s, doubling up to a minute."""


@dataclass
class Refusal:
    """Why the last apply of an object was refused (for `why`)."""

    message: str


@dataclass
class NodeState:
    """What the daemon holds in memory: everything else is on disk."""

    busy: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusals: dict[str, Refusal] = field(default_factory=dict)
    failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Pods whose last workflow failed: how many times in a row, and when to retry."""


class Daemon:
    def __init__(
        self,
        state_dir: Path,
        name: str | None = None,
        *,
        socket_path: str,
        backoff: Backoff | None = None,
        resync_s: float = RESYNC_S,
        hooks_dir: Path | None = None,
        mesh: Mapping[str, Any] | None = None,
        capacity: Mapping[str, str] | None = None,
        majority: bool = True,
        host_ports: PortRange = DEFAULT_RANGE,
        clock_offset_s: float = 0.0,
    ) -> None:
        self.state_dir = state_dir
        self.clock_offset_s = clock_offset_s
        """Seconds added to the wall clock the store stamps changes with and the mesh judges
        peers' clocks and credentials by (0 but in tests of clock drift and long absences)."""
        self.mesh_options = dict(mesh or {})
        self.mesh: Mesh | None = None
        self.socket_path = socket_path
        self.resync_s = resync_s
        self.backoff = backoff or Backoff()
        self.hooks_dir = hooks_dir or state_dir / "hooks"
        self.store: Store = open_store(
            state_dir,
            name,
            clock_ms=lambda: time.time_ns() // 1_000_000 + int(clock_offset_s * 1000),
        )
        self.name = self.store.node_id
        self.capacity = dict(capacity or {})
        """Declared capacity (`cpu`, `memory` quantities); what is not given is the machine's."""
        self.placement = NodePlacement(self.store, started_at=time.time(), majority=majority)
        self.deployments = DeploymentControl(self.store, state_dir)
        self.images = ImageStore(state_dir / "images", in_use=self._image_users)
        self.sandbox = Sandbox(state_dir, self.images, backoff=self.backoff, host_ports=host_ports)
        from edgenode.podflows import PodFlows  # noqa: PLC0415 - imports the workflow engine

        self.flows = PodFlows(self)
        self.probes = Probes(self)
        self.state = NodeState()
        self.network = NodeNetwork(
            state_dir,
            self.name,
            key=self.sandbox.key,
            cluster_ula=cluster_ula(state_dir, self.name, self.sandbox.key),
            now=time.time(),
        )
        self._wake = asyncio.Event()
        self._changed: set[tuple[str, str]] | None = None
        """Objects changed since the last round (kind, name); None: look at everything."""
        self._full_due = 0.0
        self._defs: dict[str, tuple[str, PodDef]] = {}
        self._stopping = False

    # -- facts for others --------------------------------------------------------------------

    def _image_users(self, digest: str) -> list[str]:
        users = []
        for name in self.sandbox.pods():
            with contextlib.suppress(SandboxError):
                state = self.sandbox.state(name)
                if any(c.image_digest == digest for c in state.containers.values()):
                    users.append(f"pod/{name}")
        return users

    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = (
            (self.store.get("Node", self.name) or {}).get("metadata") or {}
        ).get("labels") or {}
        return labels

    def wake(self) -> None:
        """Reconcile soon (a change, a workflow's end, a command)."""
        self._wake.set()

    # -- start and stop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        from edgenode.server import serve  # noqa: PLC0415

        log.info("daemon_starting", node=self.name, state_dir=str(self.state_dir))
        if self.clock_offset_s:
            log.warning(
                "clock_offset", seconds=self.clock_offset_s, days=self.clock_offset_s / 86400
            )
        await asyncio.to_thread(ensure_busybox, self.images)
        await asyncio.to_thread(self.publish_node)
        # Network namespaces back after a reboot; lost runs are restarted by the reconciler,
        # which knows the desired restart policy.
        await asyncio.to_thread(self.sandbox.adopt, restart=False)
        log.info("pods_adopted", pods=sorted(self.sandbox.pods()))
        await asyncio.to_thread(self.network.start)
        await asyncio.to_thread(self.network.attach_all, self.sandbox)
        if (self.state_dir / "cluster" / "node.cred").is_file():
            from edgenode.mesh import Mesh, MeshConfig  # noqa: PLC0415 - QUIC, mDNS, netlink

            config = MeshConfig(**self.mesh_options, clock_offset_s=self.clock_offset_s)
            self.mesh = Mesh(self.store, self.state_dir, config)
            self.mesh.membership_listeners.append(self.everything_changed)
            self.mesh.pod_prefix = self.network.prefix
            await self.mesh.start()
        else:
            log.info("mesh_off", reason="no cluster credentials (edgenode init or edgenode join)")
        server = await serve(self, self.socket_path)
        loops = [
            asyncio.create_task(self._watch_loop(), name="watch"),
            asyncio.create_task(self._runs_loop(), name="runs"),
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
        ]
        log.info("daemon_ready", node=self.name, socket=self.socket_path)
        try:
            await stop.wait()
        finally:
            self._stopping = True
            log.info("daemon_stopping", node=self.name, busy=sorted(self.state.busy))
            await self.probes.close()  # a health.wait under way ends now, not after its bound
            server.close()
            if self.mesh is not None:
                await self.mesh.close()
            for task in loops:
                task.cancel()
            busy = list(self.state.busy.values())
            if busy:
                await asyncio.wait(busy, timeout=30)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*loops, return_exceptions=True)
            await server.wait_closed()
            self.flows.close()
            self.store.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            log.info("daemon_stopped", node=self.name, pods_left_running=self.sandbox.pods())

    def publish_node(self) -> None:
        status = {
            "phase": "Ready",
            "capacity": {**machine_capacity(), **self.capacity},
            "network": self.network.status(),
            "sandbox": {
                k: {"available": f.available, "detail": f.detail} for k, f in features().items()
            },
        }
        self.store.put_document("Node", self.name, {"status": status}, manager=f"node:{self.name}")

    # -- loops ---------------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        async for event in self.store.watch(kinds=["Pod", "Node", "PinnedDeployment"]):
            if isinstance(event, ChangeApplied):
                if self._changed is not None:
                    self._changed.add((event.kind, event.name))
            else:  # overflowed: what changed is unknown, so everything may have
                self._changed = None
            self.wake()

    def everything_changed(self) -> None:
        """The next round looks at every object (membership changed who writes for what)."""
        self._changed = None
        self.wake()

    def _take_changed(self) -> set[tuple[str, str]] | None:
        changed, self._changed = self._changed, set()
        if time.monotonic() >= self._full_due:
            changed = None
        if changed is None:
            self._full_due = time.monotonic() + self.resync_s
        return changed

    async def _runs_loop(self) -> None:
        """Wake the reconciler when a container's run changes (it started, it exited): each
        run's monitor rewrites its status.json, so their modification times tell."""
        seen: dict[str, int] = {}
        while not self._stopping:
            now_seen = self._run_stamps()
            if now_seen != seen:
                seen = now_seen
                self.wake()
            await asyncio.sleep(RUNS_POLL_S)

    def _run_stamps(self) -> dict[str, int]:
        stamps: dict[str, int] = {}
        pods = self.sandbox.pods_dir
        with contextlib.suppress(FileNotFoundError):
            for pod in os.scandir(pods):
                containers = os.path.join(pod.path, "containers")
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    for c in os.scandir(containers):
                        with contextlib.suppress(FileNotFoundError):
                            path = os.path.join(c.path, "status.json")
                            stamps[path] = os.stat(path).st_mtime_ns
        return stamps

    async def _reconcile_loop(self) -> None:
        next_wake: float | None = None
        while not self._stopping:
            timeout = self.resync_s
            if next_wake is not None:
                timeout = max(0.0, min(timeout, next_wake - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                next_wake = await self.reconcile_once()
            except Exception:  # a bug: logged, and the next round tries again
                log.exception("reconcile_failed", node=self.name)
                next_wake = time.time() + 1.0

    async def reconcile_once(self) -> float | None:
        moved = await asyncio.to_thread(self._network_round, self._peer_nets())
        if moved and self.mesh is not None and self.mesh.started:
            self.mesh.set_pod_prefix(self.network.prefix)
        members = self.mesh.members() if self.mesh is not None and self.mesh.started else {}
        alive = [n for n, (state, _) in members.items() if state == "alive"]
        await asyncio.to_thread(self.deployments.run, alive, self._take_changed())
        placed = await asyncio.to_thread(self.placement.run, members, now=time.time())
        desired = await asyncio.to_thread(self._desired)
        looked = time.monotonic()
        observed = await asyncio.to_thread(self._observed)
        now = time.time()
        plan = reconcile(desired, observed, now=now, live_resize=default_live_resize)
        self._apply(plan, desired, observed, now=now)
        self.state.waiting = {
            pod: {c: w for c, w in containers.items()} for pod, containers in plan.waiting.items()
        }
        self.probes.sync(observed, read_at=looked)
        await asyncio.to_thread(self._publish_statuses, desired)
        retries = [at for _, at in self.state.failures.values() if at > now]
        wakes = [
            w
            for w in (plan.next_wake, min(retries, default=None), placed.plan.next_wake)
            if w is not None
        ]
        return min(wakes, default=None)

    def _peer_nets(self) -> list[PeerNet]:
        if self.mesh is None or not self.mesh.started:
            return []
        return [
            PeerNet(node, r.state, r.pod_prefix, r.link_local, r.addresses)
            for node, r in self.mesh.peers.items()
        ]

    def _network_round(self, peers: list[PeerNet]) -> bool:
        """Move this node's /64 if another node's earlier claim holds it, and route to the
        live peers' /64s (docs/network.md); True if the /64 moved."""
        claims = claims_of(self.store.list_objects("Node"))
        moved = self.network.settle(claims, now=time.time())
        if moved:
            self.publish_node()
            self.network.attach_all(self.sandbox)
            self._changed = None  # every pod's status carries its new address
        try:
            self.network.sync_routes(peers, settle(claims))
        except Exception as exc:  # netlink trouble: the next round tries again
            log.warning("peer_routes_failed", error=repr(exc))
        return moved

    def _apply(
        self,
        plan: Plan,
        desired: Mapping[str, Desired],
        observed: Mapping[str, Observed],
        *,
        now: float,
    ) -> None:
        for name in plan.start:
            self._launch(name, self.flows.start(desired[name]), now=now)
        for name, actions in plan.update.items():
            if all(a == "keep" for a in actions.values()):
                # Only the revision moved (status, assignment, labels): nothing to run.
                self.sandbox.set_meta(name, {"revision": desired[name].revision})
                continue
            self._launch(name, self.flows.update(desired[name]), now=now)
        for name, containers in plan.restart.items():
            if name not in desired:
                continue
            states = observed[name].containers if name in observed else {}
            if states and all(c.state == "created" for c in states.values()):
                # Never started (its pod.start failed before that): start it again the whole
                # way, its own steps (a veto) included.
                self._launch(name, self.flows.start(desired[name]), now=now)
            else:
                work = self.flows.restart(desired[name], containers, due=True)
                self._launch(name, work, now=now)
        for name in plan.delete:
            self._launch(name, self.flows.delete(name), now=now, retry=False)
        for name in plan.recreate:
            self._launch(name, self.flows.recreate(desired[name]), now=now)

    def _launch(self, name: str, work: Any, *, now: float, retry: bool = True) -> None:
        """Run a workflow for pod `name` unless one runs, or its last one failed and its
        retry is not due (1 s after the first failure, doubling up to a minute)."""
        failed = self.state.failures.get(name)
        if name in self.state.busy or (retry and failed is not None and failed[1] > now):
            work.close()
            return
        task = asyncio.create_task(work, name=f"pod-{name}")
        self.state.busy[name] = task

        def done(t: asyncio.Task[Any]) -> None:
            self.state.busy.pop(name, None)
            if t.cancelled():
                return
            if t.exception() is not None:
                log.error("workflow_crashed", pod=name, error=repr(t.exception()))
                outcome = "failed"
            else:
                outcome = getattr(t.result(), "outcome", "succeeded")
            if outcome == "failed" and self.flows.applied(t.result()):
                outcome = "applied"  # it runs as asked but is not ready: nothing to retry
            if outcome == "failed":
                count = self.state.failures.get(name, (0, 0.0))[0] + 1
                delay = min(RETRY_MAX_S, RETRY_S * 2 ** (count - 1))
                self.state.failures[name] = (count, time.time() + delay)
            else:
                self.state.failures.pop(name, None)
            self.wake()

        task.add_done_callback(done)

    async def run_now(self, name: str, work: Any) -> Any:
        """Run a workflow for pod `name` now (a command), after any one already running."""
        while name in self.state.busy:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.state.busy[name])
        task = asyncio.create_task(work, name=f"pod-{name}")
        self.state.busy[name] = task
        try:
            return await task
        finally:
            self.state.busy.pop(name, None)
            self.wake()

    # -- desired and observed ------------------------------------------------------------------

    def _desired(self) -> dict[str, Desired]:
        """The pods the store assigns to this node, each with its definition."""
        desired: dict[str, Desired] = {}
        for doc in self.store.list_objects("Pod"):
            name = doc["metadata"]["name"]
            if (doc.get("assignment") or {}).get("node") != self.name:
                continue
            spec_key = json.dumps(doc.get("spec"), sort_keys=True)
            cached = self._defs.get(name)
            if cached is not None and cached[0] == spec_key:
                definition = cached[1]
            else:
                try:
                    definition = pod_def(name, stored_pod(doc).spec)
                except (ObjectError, ValueError) as exc:
                    log.warning("pod_not_runnable", pod=name, error=str(exc))
                    continue
                # Each status change is a revision: the spec's translation is kept by content.
                self._defs[name] = (spec_key, definition)
            desired[name] = Desired(name, int(doc["metadata"]["revision"]), definition)
        for gone in self._defs.keys() - desired.keys():
            del self._defs[gone]
        return desired

    def _observed(self) -> dict[str, Observed]:
        observed: dict[str, Observed] = {}
        for name in self.sandbox.pods():
            try:
                state = self.sandbox.state(name)
                definition = self.sandbox.definition(name)
                revision = self.sandbox.meta(name).get("revision")
            except (SandboxError, KeyError, ValueError) as exc:
                log.warning("pod_record_unreadable", pod=name, error=str(exc))
                observed[name] = Observed(name, None, None, {}, busy=name in self.state.busy)
                continue
            containers = {
                c: ObservedContainer(
                    state=s.state,
                    exit_code=s.exit_code,
                    restarts=s.restarts,
                    next_start_at=s.next_start_at,
                    message=s.message,
                    finished_at=s.finished_at,
                    started_at=s.started_at,
                )
                for c, s in state.containers.items()
            }
            observed[name] = Observed(
                name, revision, definition, containers, busy=name in self.state.busy
            )
        return observed

    # -- status -------------------------------------------------------------------------------

    def pod_status(self, name: str) -> dict[str, Any]:
        """The status this node reports for pod `name`, from the sandbox and the last plan."""
        if name not in self.sandbox.pods():
            message = self.flows.last_failure(name) or "being created"
            return {"phase": "Pending", "node": self.name, "message": message}
        state = self.sandbox.state(name)
        containers: dict[str, Any] = {}
        phases = []
        unready: list[str] = []
        for c, s in state.containers.items():
            kind = {"running": "running", "exited": "exited", "stopped": "exited"}.get(
                s.state, "waiting"
            )
            entry: dict[str, Any] = {"state": kind, "restarts": s.restarts}
            if s.exit_code is not None:
                entry["exitCode"] = s.exit_code
            entry["ready"], why_not = self.probes.readiness(name, c, s.state, s.started_at)
            containers[c] = entry
            phases.append((kind, s.exit_code))
            if why_not:
                unready.append(f"{c}: not ready: {why_not}")
        if all(k == "running" for k, _ in phases):
            phase = "Running"
        elif all(k == "exited" for k, _ in phases):
            phase = "Succeeded" if all(code == 0 for _, code in phases) else "Failed"
        else:
            phase = "Pending"
        status: dict[str, Any] = {"phase": phase, "node": self.name, "containers": containers}
        if state.host_ports:
            status["hostPorts"] = dict(state.host_ports)
        status["ready"] = all(c["ready"] for c in containers.values())
        waiting = self.state.waiting.get(name, {})
        messages = [f"{c}: {w.message}" for c, w in sorted(waiting.items()) if w.message]
        messages += unready
        failed = self.flows.last_failure(name)
        if failed:
            messages.insert(0, failed)
        if messages:
            status["message"] = "; ".join(messages)
        addresses = self.network.addresses(name) if state.netns else None
        if addresses:
            status["addresses"] = addresses
        return status

    def _publish_statuses(self, names: Iterable[str]) -> None:
        for name in names:
            if name in self.state.busy:
                continue
            try:
                status = self.pod_status(name)
            except SandboxError:
                continue
            # Against the store, not a memory of what was sent: a write the fold refused (sent
            # while another node held the assignment) or another node's status since (the pod
            # moved away and back) must not hide this node's report.
            if (self.store.get("Pod", name) or {}).get("status") == status:
                continue
            try:
                self.store.put_document(
                    "Pod", name, {"status": status}, manager=f"node:{self.name}"
                )
            except Exception:
                log.exception("status_publish_failed", pod=name)


def machine_capacity() -> dict[str, str]:
    """This machine's cpus (as millicores) and memory (MemTotal, as bytes), as quantities."""
    out = {"cpu": f"{(os.cpu_count() or 1) * 1000}m"}
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                out["memory"] = str(int(line.split()[1]) * 1024)
                break
    return out


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
