"""Pods on this node: sandboxes that outlive their containers, and the containers' lifecycle.

Theory of operation. A pod's *sandbox* is what its containers share and what survives their
restarts: its network namespace (``/run/netns/edgenode-<key>-<pod>``, loopback up; addresses and
routes are added by the network layer), its user-namespace id range (`sandbox.idtable`), its
hostname. A *container* is a bundle (``config.json`` from `sandbox._oci`, root filesystem from
the image store), its runs (`sandbox.containers`: one small monitor process per run, from
`monitor.c`, keeps its logs and exit code) and its lifecycle record (`sandbox._lifecycle`:
restart policy and backoff, applied by `supervise`). Everything is on disk:

    <state>/pods/<pod>/pod.json                         the PodDef and the sandbox's facts
    <state>/pods/<pod>/containers/<name>/bundle/        config.json (+ rootfs if writable-root)
    <state>/pods/<pod>/containers/<name>/record.json    its lifecycle: state, restarts, backoff
    <state>/pods/<pod>/containers/<name>/status.json    its current run, written by the monitor
    <state>/pods/<pod>/containers/<name>/logs/          container.log, container.log.1, ...

so a `Sandbox` object holds no state of its own: a daemon that restarts finds its pods, their
monitors still running, and takes them over (`adopt`). The calls are synchronous (each is a few
runtime invocations); the daemon runs them in worker threads.

A pod in the node's network (``host-network``) has no namespace of its own; with host ports
(`PodDef.host_ports`) it holds numbers of the node's from `sandbox.porttable`, from its
creation to its deletion, and each container finds them in ``PORT_<NAME>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import host, netns
from sandbox import logs as _logs
from sandbox._apparmor import PROFILE_NAME
from sandbox._classes import adapt_config, runtime_argv, supports_live_update
from sandbox._exec import joins_network_late, without_network
from sandbox._image import INIT_PATH, ImageResolver, ResolvedImage, process_args, process_user
from sandbox._lifecycle import Backoff
from sandbox._oci import (
    DEFAULT_PIDS,
    ContainerSpec,
    IdRange,
    PodSandbox,
    runtime_config,
)
from sandbox._ports import DEFAULT_RANGE, PortRange, PortsExhaustedError, port_env
from sandbox._spec import ContainerDef, PodDef
from sandbox._update import Action, plan_update
from sandbox.containers import Container, ContainerState, RunSettings, read_json, write_json
from sandbox.idtable import IdTable
from sandbox.logs import LogLine
from sandbox.monitor import binary as monitor_binary
from sandbox.porttable import PortTable
from sandbox.runtimes import Runtime, detect, require

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3


class SandboxError(RuntimeError):
    """A pod could not be created, changed or run; the message says what was left behind."""


class PodNotFoundError(SandboxError, LookupError):
    pass


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    netns: str | None
    """Path of the pod's network namespace (None with host-network)."""
    netns_inode: int | None
    ids: IdRange | None
    runtime_class: str
    containers: Mapping[str, ContainerState] = field(default_factory=dict)
    host_ports: Mapping[str, int] = field(default_factory=dict)
    """The node's port allocated to each of its host ports, by name."""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    actions: Mapping[str, Action]
    pod: PodState


# -- PodDef on disk -------------------------------------------------------------------------


def _def_to_json(pod: PodDef) -> dict[str, Any]:
    out = asdict(pod)
    out["relaxations"] = sorted(pod.relaxations)
    for name, c in pod.containers.items():
        out["containers"][name]["relaxations"] = sorted(c.relaxations)
        out["containers"][name]["env"] = dict(c.env)
    return out


def _tuple(v: Any) -> tuple[Any, ...] | None:
    return None if v is None else tuple(v)


def _def_from_json(raw: Mapping[str, Any]) -> PodDef:
    containers = {
        name: ContainerDef(
            image=c["image"],
            command=_tuple(c["command"]),
            args=_tuple(c["args"]),
            env=dict(c["env"]),
            working_dir=c["working_dir"],
            user=(c["user"][0], c["user"][1]) if c["user"] is not None else None,
            memory_bytes=c["memory_bytes"],
            cpu_millis=c["cpu_millis"],
            pids=c["pids"],
            relaxations=frozenset(c["relaxations"]),
            capabilities=tuple(c["capabilities"]),
            host_paths=tuple((h, p, bool(ro)) for h, p, ro in c["host_paths"]),
        )
        for name, c in raw["containers"].items()
    }
    return PodDef(
        name=raw["name"],
        containers=containers,
        restart_policy=raw["restart_policy"],
        grace_s=float(raw["grace_s"]),
        runtime_class=raw["runtime_class"],
        relaxations=frozenset(raw["relaxations"]),
        host_ports=tuple(raw.get("host_ports", ())),
    )


# -- building a container -------------------------------------------------------------------


RUNTIME_ROOT = Path("/run/edgenode-runtime")
"""Runtime state lives on /run (tmpfs): after a reboot no stale container remains."""


def node_key(state_dir: Path) -> str:
    """Six hex digits naming a node's state directory in shared places (/run/netns, the
    runtimes' roots)."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:6]


def check_traversable(path: Path) -> None:
    """Refuse a state directory that the pods' ids cannot reach: their ids are nobody on the
    host, so every directory above their images must let others pass (the x bit)."""
    for d in [path.resolve(), *path.resolve().parents]:
        mode = d.stat().st_mode
        if not mode & 0o001:
            raise SandboxError(
                f"state directory {path} is not reachable by the pods' user ids: {d} has mode "
                f"{mode & 0o777:o}, which lets no other user pass; use a state directory "
                f"whose parents are all traversable (chmod o+x {d}), e.g. /var/lib/edgenode"
            )


class Sandbox:
    """The pods of one node (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        images: ImageResolver,
        *,
        runtimes: Mapping[str, Runtime] | None = None,
        backoff: Backoff | None = None,
        log_max_bytes: int = LOG_MAX_BYTES,
        log_keep: int = LOG_KEEP,
        monitor: str | None = None,
        host_ports: PortRange = DEFAULT_RANGE,
    ) -> None:
        self.state_dir = state_dir
        self.pods_dir = state_dir / "pods"
        self.images = images
        self.runtimes = runtimes if runtimes is not None else detect()
        self.backoff = backoff or Backoff()
        self.log_max_bytes = log_max_bytes
        self.log_keep = log_keep
        self.monitor = monitor or monitor_binary()
        self._lock = threading.RLock()
        self.ids = IdTable(state_dir / "sandbox" / "ids.json")
        self.ports = PortTable(state_dir / "sandbox" / "ports.json", host_ports)
        """Host ports of `network: host-ports` pods, from the range `host_ports`."""
        self.arch = platform.machine()
        self.key = node_key(state_dir)
        self.runtime_root = RUNTIME_ROOT / self.key
        """The runtimes' own state (runc --root): per node, so that two nodes of one machine
        (a lab, the demo beside the tests) never share a container id or a namespace."""
        self.apparmor = host.apparmor().available
        if self.apparmor:
            host.load_apparmor_profile()
        for d in (state_dir, self.pods_dir):
            d.mkdir(parents=True, exist_ok=True)
            # Containers' mapped ids must traverse to their root filesystems; nobody may list.
            os.chmod(d, 0o711)
        check_traversable(state_dir)

    # -- paths and records ------------------------------------------------------------------

    def _pod_dir(self, name: str) -> Path:
        return self.pods_dir / name

    def _cdir(self, pod: str, container: str) -> Path:
        return self.pods_dir / pod / "containers" / container

    def _record(self, name: str) -> dict[str, Any]:
        try:
            raw: dict[str, Any] = json.loads((self._pod_dir(name) / "pod.json").read_text())
        except FileNotFoundError:
            raise PodNotFoundError(
                f"pod {name} does not exist on this node; known pods: "
                f"{', '.join(self.pods()) or 'none'}"
            ) from None
        return raw

    def definition(self, name: str) -> PodDef:
        return _def_from_json(self._record(name)["def"])

    def pods(self) -> list[str]:
        return sorted(p.name for p in self.pods_dir.iterdir() if (p / "pod.json").exists())

    @staticmethod
    def runtime_id(pod: str, container: str) -> str:
        return f"{pod}.{container}"

    def _argv(self, runtime_class: str) -> list[str]:
        rt = require(runtime_class, self.runtimes)
        assert rt.binary is not None
        return runtime_argv(runtime_class, rt.binary, str(self.runtime_root / runtime_class))

    def netns_name(self, pod: str) -> str:
        """The pod's network namespace's name: `edgenode-<node key>-<pod>`."""
        return f"edgenode-{self.key}-{pod}"

    # -- the sandbox ------------------------------------------------------------------------

    def create_pod(self, pod: PodDef, *, meta: Mapping[str, Any] | None = None) -> PodState:
        """Make the pod's sandbox and its containers' bundles; nothing runs yet. Refused if
        the pod exists (use `update_pod`). `meta`: the caller's notes, kept with the pod
        (the daemon records which revision of the object it applied)."""
        with self._lock:
            return self._create_pod(pod, dict(meta or {}))

    def meta(self, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = self._record(name).get("meta", {})
        return meta

    def set_meta(self, name: str, meta: Mapping[str, Any]) -> None:
        """Replace the caller's notes about pod `name` (nothing runs or restarts)."""
        with self._lock:
            record = self._record(name)
            record["meta"] = dict(meta)
            write_json(self._pod_dir(name) / "pod.json", record)

    def _create_pod(self, pod: PodDef, meta: dict[str, Any]) -> PodState:
        if (self._pod_dir(pod.name) / "pod.json").exists():
            raise SandboxError(f"pod {pod.name} already exists on this node; update it instead")
        self._argv(pod.runtime_class)  # a missing runtime is refused before anything is made
        resolved = {n: self.images.resolve(c.image) for n, c in pod.containers.items()}
        pdir = self._pod_dir(pod.name)
        ids = None if "no-user-namespace" in pod.relaxations else self.ids.allocate(pod.name)
        ns_path = None
        try:
            ports = self._allocate_ports(pod) if pod.host_ports else {}
            (pdir / "containers").mkdir(parents=True, exist_ok=True)
            os.chmod(pdir, 0o711)
            os.chmod(pdir / "containers", 0o711)
            if "host-network" not in pod.relaxations:
                ns_path = self._make_netns(pod.name)
            record = {
                "def": _def_to_json(pod),
                "netns": ns_path,
                "created_at": time.time(),
                "meta": meta,
            }
            for name in pod.containers:
                self._write_container(
                    pod, name, resolved[name], ids=ids, ns_path=ns_path, ports=ports
                )
            write_json(pdir / "pod.json", record)
        except BaseException:  # Ctrl-C too: nothing half-made may stay behind
            self._remove_sandbox(pod.name, ns_path)
            raise
        return self.state(pod.name)

    def _allocate_ports(self, pod: PodDef) -> dict[str, int]:
        try:
            return self.ports.allocate(pod.name, pod.host_ports)
        except PortsExhaustedError as exc:
            raise SandboxError(str(exc)) from None

    def _make_netns(self, pod: str) -> str:
        return netns.create(self.netns_name(pod))

    def _remove_sandbox(self, pod: str, ns_path: str | None) -> None:
        if ns_path is not None:
            netns.remove(os.path.basename(ns_path))
        self.ids.release(pod)
        self.ports.release(pod)
        # Last: a pod's directory gone means all of it is (its ids and host ports free again).
        shutil.rmtree(self._pod_dir(pod), ignore_errors=True)
        if not self.pods():  # the runtimes' empty state directories go with the last pod
            for d in sorted(self.runtime_root.glob("*"), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                self.runtime_root.rmdir()

    def _ids_of(self, pod: str) -> IdRange | None:
        return self.ids.ranges().get(pod)

    # -- containers -------------------------------------------------------------------------

    def _write_container(
        self,
        pod: PodDef,
        name: str,
        image: ResolvedImage,
        *,
        ids: IdRange | None,
        ns_path: str | None,
        ports: Mapping[str, int],
    ) -> None:
        c = pod.containers[name]
        cdir = self._cdir(pod.name, name)
        bundle = cdir / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        for d in (cdir, bundle):
            os.chmod(d, 0o711)
        relax = c.relaxations | pod.relaxations
        rootfs = str(image.rootfs)
        if "writable-root" in relax:
            rootfs = str(self._private_rootfs(bundle, image, ids))
        args = process_args(c, image)
        if not args:
            raise SandboxError(
                f"pod {pod.name} container {name}: neither the spec (command, args) nor image "
                f"{c.image} gives a command to run; set command in the container's spec"
            )
        if os.path.exists(image.rootfs + INIT_PATH):
            args = [INIT_PATH, "--", *args]
        uid, gid = (0, 0) if "run-as-root" in relax else process_user(c, image)
        spec = ContainerSpec(
            rootfs=rootfs,
            args=args,
            env={**image.config.env, **c.env, **port_env(ports)},
            cwd=c.working_dir or image.config.working_dir or "/",
            uid=uid,
            gid=gid,
            memory_bytes=c.memory_bytes,
            cpu_millis=c.cpu_millis,
            pids=c.pids if c.pids is not None else DEFAULT_PIDS,
            relaxations=relax,
            capabilities=c.capabilities,
            host_paths=c.host_paths,
        )
        sandbox = PodSandbox(ids=ids or IdRange(0, 1 << 32), netns=ns_path, hostname=pod.name)
        try:
            config = runtime_config(
                spec, sandbox, arch=self.arch, own_sysfs="no-user-namespace" in relax
            )
            if self.apparmor and "privileged" not in relax:
                config["process"]["apparmorProfile"] = PROFILE_NAME
            config = adapt_config(pod.runtime_class, config)
        except ValueError as exc:  # UnsupportedConfigError too
            raise SandboxError(f"pod {pod.name} container {name}: {exc}") from None
        write_json(bundle / "config.json", config)
        write_json(cdir / "container.json", {"image_digest": image.digest, "image": c.image})

    def _private_rootfs(self, bundle: Path, image: ResolvedImage, ids: IdRange | None) -> Path:
        """A copy of the image's files owned by the pod's ids, for a writable root."""
        dest = bundle / "rootfs"
        marker = bundle / "rootfs.digest"
        if dest.exists() and marker.exists() and marker.read_text() == image.digest:
            return dest
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(image.rootfs, dest, symlinks=True)
        if ids is not None:
            for root, dirs, files in os.walk(dest):
                for entry in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    st = os.lstat(entry)
                    uid = ids.base + st.st_uid if st.st_uid < ids.size else ids.base
                    gid = ids.base + st.st_gid if st.st_gid < ids.size else ids.base
                    os.lchown(entry, uid, gid)
        marker.write_text(image.digest)
        return dest

    def _settings(self, pod: PodDef) -> RunSettings:
        return RunSettings(
            monitor=self.monitor,
            runtime=tuple(self._argv(pod.runtime_class)),
            policy=pod.restart_policy,
            grace_s=pod.grace_s,
            backoff=self.backoff,
            log_max_bytes=self.log_max_bytes,
            log_keep=self.log_keep,
        )

    def _container(self, pod: str, name: str) -> Container:
        return Container(self._cdir(pod, name), self.runtime_id(pod, name), name)

    def _names(self, pod: PodDef, containers: Iterable[str] | None) -> list[str]:
        names = sorted(containers) if containers is not None else sorted(pod.containers)
        unknown = set(names) - set(pod.containers)
        if unknown:
            raise SandboxError(
                f"pod {pod.name} has no container {', '.join(sorted(unknown))}; it has "
                f"{', '.join(sorted(pod.containers))}"
            )
        return names

    # -- the lifecycle ----------------------------------------------------------------------

    def start_pod(self, name: str, containers: Iterable[str] | None = None) -> PodState:
        """Start the pod's containers (those given, or all) that are not running; returns once
        each runs or could not start (then it is in backoff, or exited under ``never``)."""
        pod = self.definition(name)
        s = self._settings(pod)
        with self._lock:
            for c in self._names(pod, containers):
                self._container(name, c).start(s, now=time.time())
        return self.state(name)

    def run_pod(self, pod: PodDef, *, meta: Mapping[str, Any] | None = None) -> PodState:
        """Create the pod and start every container."""
        self.create_pod(pod, meta=meta)
        return self.start_pod(pod.name)

    def stop_pod(
        self, name: str, containers: Iterable[str] | None = None, *, grace_s: float | None = None
    ) -> PodState:
        """Stop containers (all by default): SIGTERM, SIGKILL after the grace period (the
        pod's, or a shorter `grace_s`). The sandbox stays; `start_pod` starts them again."""
        pod = self.definition(name)
        s = self._settings(pod)
        names = self._names(pod, containers)
        # All at once: each gets its grace period, not the sum of them.
        with self._lock, ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            stops = [
                pool.submit(self._container(name, c).stop, s, now=time.time(), grace_s=grace_s)
                for c in names
            ]
            for f in stops:
                f.result()
        return self.state(name)

    def restart_pod(self, name: str, containers: Iterable[str] | None = None) -> PodState:
        """Restart containers in place: same sandbox (network namespace, address, ids)."""
        pod = self.definition(name)
        s = self._settings(pod)
        with self._lock:
            for c in self._names(pod, containers):
                self._container(name, c).restart(s, now=time.time())
        return self.state(name)

    def supervise(self, *, now: float | None = None) -> dict[str, list[str]]:
        """Apply every pod's restart policy once: start again the containers whose backoff is
        over (or whose run was lost). The daemon calls this on container exits and
        periodically; returns, per pod, the containers started again."""
        started: dict[str, list[str]] = {}
        with self._lock:
            for name in self.pods():
                try:
                    pod = self.definition(name)
                except PodNotFoundError:
                    continue  # deleted by another process since it was listed
                s = self._settings(pod)
                for c in sorted(pod.containers):
                    when = time.time() if now is None else now
                    if self._container(name, c).supervise(s, now=when):
                        started.setdefault(name, []).append(c)
        return started

    def kill(self, name: str, container: str, sig: str = "KILL") -> None:
        """Send a signal to a container's processes (its restart policy then applies)."""
        pod = self.definition(name)
        self._names(pod, [container])
        self._runtime(
            pod,
            container,
            ["kill", self.runtime_id(name, container), sig],
            failed=f"signal {sig} not delivered",
        )

    def exec_argv(self, name: str, container: str, argv: Sequence[str]) -> tuple[list[str], Path]:
        """The command line that runs `argv` in the running container `container` of pod
        `name` as its own process runs (the bundle's user, capabilities, seccomp filter,
        AppArmor profile, no new privileges, cgroup, and the pod's network; see
        `sandbox._exec`), and a file of its own where the runtime writes the new process's
        host pid (to kill it, should it outlast its caller's patience; the caller removes it).
        """
        pod = self.definition(name)
        self._names(pod, [container])
        rid = self.runtime_id(name, container)
        cdir = self._cdir(name, container)
        pid_file = cdir / f"exec-{uuid.uuid4().hex[:12]}.pid"
        runtime = self._argv(pod.runtime_class)
        ns_path = self._record(name).get("netns")
        rt = require(pod.runtime_class, self.runtimes)
        userns = "no-user-namespace" not in pod.relaxations
        if ns_path and userns and joins_network_late(pod.runtime_class, rt.version):
            state = read_json(self.runtime_root / pod.runtime_class / rid / "state.json")
            if state is None:
                raise SandboxError(f"pod {name} container {container} is not running")
            root = cdir / "exec-root"
            (root / rid).mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(root, 0o700)
            with tempfile.NamedTemporaryFile("w", dir=root / rid, delete=False) as f:
                json.dump(without_network(state), f)
            os.replace(f.name, root / rid / "state.json")
            assert rt.binary is not None
            inner = runtime_argv(pod.runtime_class, rt.binary, str(root))
            runtime = ["nsenter", f"--net={ns_path}", "--", *inner]
        return [*runtime, "exec", "--pid-file", str(pid_file), rid, *argv], pid_file

    def delete_pod(self, name: str, *, grace_s: float | None = None) -> None:
        """Stop every container and remove the pod's sandbox, id range and files."""
        with self._lock:
            record = self._record(name)
            pod = _def_from_json(record["def"])
            self.stop_pod(name, grace_s=grace_s)
            argv = self._argv(pod.runtime_class)
            for c in pod.containers:
                subprocess.run(
                    [*argv, "delete", "--force", self.runtime_id(name, c)],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
            self._remove_sandbox(name, record.get("netns"))

    def update_pod(self, new: PodDef, *, meta: Mapping[str, Any] | None = None) -> UpdateResult:
        """Change a pod in place: only containers whose definition changed restart; resource
        changes are applied live where the runtime can (see `sandbox._update`)."""
        record = self._record(new.name)
        old = _def_from_json(record["def"])
        if (new.relaxations ^ old.relaxations) & {"host-network", "no-user-namespace"}:
            raise SandboxError(
                f"pod {new.name}: host-network and no-user-namespace change the pod's sandbox; "
                "delete the pod and create it again to change them"
            )
        live = supports_live_update(new.runtime_class) and old.runtime_class == new.runtime_class
        plan = plan_update(old, new, live_resize=live)
        s = self._settings(new)
        resolved = {
            n: self.images.resolve(new.containers[n].image)
            for n, a in plan.items()
            if a in ("create", "recreate", "resize")
        }
        ids = self._ids_of(new.name)
        ports = self._allocate_ports(new) if new.host_ports or old.host_ports else {}
        ns_path = record.get("netns")
        changing = [n for n, a in plan.items() if a in ("recreate", "remove")]
        with self._lock:
            if changing:
                self.stop_pod(new.name, changing)
            for n, action in plan.items():
                if action == "remove":
                    shutil.rmtree(self._cdir(new.name, n), ignore_errors=True)
                elif action in ("create", "recreate", "resize"):
                    self._write_container(
                        new, n, resolved[n], ids=ids, ns_path=ns_path, ports=ports
                    )
            record["def"] = _def_to_json(new)
            if meta is not None:
                record["meta"] = dict(meta)
            write_json(self._pod_dir(new.name) / "pod.json", record)
            for n, action in plan.items():
                if action == "resize":
                    self._resize(new, n)
                if action in ("create", "recreate"):
                    self._container(new.name, n).start(s, now=time.time())
        # A new restart policy or grace period applies from the next decision or run.
        return UpdateResult(plan, self.state(new.name))

    def _resize(self, pod: PodDef, name: str) -> None:
        c = pod.containers[name]
        args: list[str] = []
        if c.memory_bytes is not None:
            args += ["--memory", str(c.memory_bytes), "--memory-swap", str(c.memory_bytes)]
        if c.cpu_millis is not None:
            config = json.loads((self._cdir(pod.name, name) / "bundle" / "config.json").read_text())
            cpu = config["linux"]["resources"]["cpu"]
            args += ["--cpu-quota", str(cpu["quota"]), "--cpu-period", str(cpu["period"])]
        if c.pids is not None:
            args += ["--pids-limit", str(c.pids)]
        running = self._container(pod.name, name).state(self._settings(pod), None).state
        if not args or running != "running":
            return  # the new config.json applies when it next starts
        self._runtime(
            pod,
            name,
            ["update", *args, self.runtime_id(pod.name, name)],
            failed="resources not applied live (restart the container to apply them)",
        )

    def _runtime(self, pod: PodDef, container: str, args: list[str], *, failed: str) -> None:
        """Run the pod's runtime with `args`; a `SandboxError` saying `failed` if it fails."""
        out = subprocess.run(
            [*self._argv(pod.runtime_class), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if out.returncode != 0:
            raise SandboxError(
                f"pod {pod.name} container {container}: {failed}: "
                f"{out.stderr.strip() or f'the runtime exited with {out.returncode}'}"
            )

    def log_dir(self, pod: str, container: str) -> Path:
        return self._cdir(pod, container) / "logs"

    def logs(
        self,
        pod: str,
        container: str,
        *,
        tail: int | None = None,
        follow: bool = False,
    ) -> Iterator[LogLine]:
        """A container's log lines, oldest first; `follow` goes on until it is finished."""
        known = self.definition(pod).containers
        if container not in known:
            raise SandboxError(f"pod {pod} has no container {container}; it has {', '.join(known)}")

        runner, s = self._container(pod, container), self._settings(self.definition(pod))

        def finished() -> bool:
            return runner.finished(s)

        return _logs.read(self.log_dir(pod, container), tail=tail, follow=follow, until=finished)

    # -- what is there ----------------------------------------------------------------------

    def state(self, name: str) -> PodState:
        record = self._record(name)
        pod = _def_from_json(record["def"])
        ns_path = record.get("netns")
        try:
            inode = os.stat(ns_path).st_ino if ns_path else None
        except FileNotFoundError:
            inode = None
        s = self._settings(pod)
        containers = {}
        for c in sorted(pod.containers):
            info = read_json(self._cdir(name, c) / "container.json") or {}
            containers[c] = self._container(name, c).state(s, info.get("image_digest"))
        ports = self.ports.of(name) if pod.host_ports else {}
        return PodState(
            name, ns_path, inode, self._ids_of(name), pod.runtime_class, containers, ports
        )

    def adopt(self, *, restart: bool = True) -> dict[str, list[str]]:
        """After the daemon or the node restarts: recreate missing network namespaces, then
        (with `restart`) apply the restart policies, so runs whose monitor vanished with the
        node start again. Returns, per pod, the containers started again."""
        for name in self.pods():
            record = self._record(name)
            if record.get("netns") and not os.path.exists(record["netns"]):
                # At the path its containers' bundles name (a reboot emptied /run/netns).
                netns.create(os.path.basename(record["netns"]))
        return self.supervise() if restart else {}
