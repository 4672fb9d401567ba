"""A lab: N edgenode nodes on one machine, each in its own network namespace, with faults.

Theory of operation. A lab has a name (default ``lab``) so that tests run labs of their own
beside a user's. Its nodes are ``n1``..``nN``. Each node is a network namespace
``enl-<lab>-<node>`` whose ``eth0`` is one end of a veth pair; the other end, named after the
node, is a port of bridge ``br0`` in the lab's bridge namespace ``enl-<lab>-br``. The bridge
namespace has IPv6 turned off (the bridge is a switch, not a host) and multicast snooping off
(so mDNS and neighbour discovery flood to every port). Each node namespace gets
``accept_dad=0`` before its veth arrives (else its link-local address waits 2 s for duplicate
address detection), loopback up, a stable ULA ``fdXX:XXXX:XXXX:1::<i>/64`` and
``10.X.Y.<i>/24``, both derived from the lab's name.

Node ``n1`` makes the lab's cluster (its state holds ``cluster/root.key``); every other node
gets its own node and operator keys, and credentials issued by n1's root
(`write_node_credentials`). Each node runs one ``edgenode up`` (`daemon_argv`), detached,
in its namespace; its state is in ``/var/lib/edgenode-lab/<lab>/<node>/``, its socket, pid
file and log in ``/run/edgenode-lab/<lab>/`` beside ``lab.json`` (the lab's nodes, daemon
arguments and faults).

Faults are data (`Faults`, kept in lab.json); `ruleset` turns them into one nftables ``bridge``
table in the bridge namespace, replaced atomically on every change: a packet crossing the bridge
between two partition groups is dropped; loss drops a random share of the packets entering or
leaving a node's port. A link down is the bridge port set down (the node's eth0 loses its
carrier). Names, addresses and faults are the pure core `edgenode._lab`; this module re-exports
its public names.

`Lab.down` works from whatever exists (lab.json may be half-written by a failed `up`): it
stops the daemons (TERM, then KILL), deletes the pods they left, the namespaces (the nft table
goes with the bridge's) and the lab's directories. Nothing needs the lab to be whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgenode._lab import (
    BRIDGE,
    MAX_NODES,
    NODE_NAME,
    Faults,
    LabError,
    LabInputError,
    NodeStatus,
    bridge_netns_name,
    check_lab_name,
    check_percent,
    lab_namespaces,
    lan_addresses,
    netns_name,
    node_index,
    partition_groups,
    ruleset,
    with_link,
    with_loss,
    with_partition,
)
from edgenode._protocol import ApiError
from edgenode.client import DEFAULT_LAB, LAB_RUN_DIR, Connection

__all__ = [
    "MAX_NODES",
    "NETNS_DIR",
    "RUN_ROOT",
    "STATE_ROOT",
    "Faults",
    "Lab",
    "LabError",
    "LabInputError",
    "NodeStatus",
    "check_lab_name",
    "check_percent",
    "daemon_argv",
    "edgenode_argv",
    "lan_addresses",
    "partition_groups",
    "ruleset",
    "write_node_credentials",
]

STATE_ROOT = Path("/var/lib/edgenode-lab")
RUN_ROOT = Path(LAB_RUN_DIR)
NETNS_DIR = Path("/run/netns")


def write_node_credentials(root_state: Path, state_dir: Path, node: str, *, now: int) -> None:
    """Admit `node`, whose state is `state_dir`, to the cluster whose root key is in
    `root_state`: its node and local operator keys are made if missing, their credentials
    issued by the root and installed beside the cluster's description (``cluster/``, 0700;
    credentials and description 0644). Again on an admitted node: renews its credentials."""
    from gossip.identity import issue_bundle, join, join_request  # noqa: PLC0415

    request = join_request(state_dir, node)
    join(state_dir, issue_bundle(root_state, request, now=now), node, now=now)


def edgenode_argv() -> list[str]:
    """How to run this installation's `edgenode` command."""
    script = Path(sys.executable).with_name("edgenode")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgenode"]


def daemon_argv(lab: Lab, node: str) -> list[str]:
    """The command line of `node`'s daemon. It enters only the node's network namespace
    (nsenter, not ``ip netns exec``, which would give the daemon a private mount namespace and
    hide the pods' namespace mounts from the host and from the daemon's next start)."""
    return [
        "nsenter",
        f"--net={NETNS_DIR / lab.netns(node)}",
        "--",
        *edgenode_argv(),
        "up",
        "--state-dir",
        str(lab.state_dir(node)),
        "--socket",
        lab.socket(node),
        "--name",
        node,
        *lab.extra_daemon_args(),
    ]


def _capture(
    argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to its end; its exit code and output, not checked."""
    return subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def _run(argv: Sequence[str], what: str, *, input: str | None = None) -> str:
    out = _capture(argv, input=input)
    if out.returncode != 0:
        raise LabError(f"{what}: `{' '.join(argv)}` failed: {out.stderr.strip() or out.stdout}")
    return out.stdout


def _ip_batch(ns: str, commands: Sequence[str], what: str) -> None:
    _run(["ip", "-n", ns, "-batch", "-"], f"set up {what}", input="\n".join(commands) + "\n")


def _alive(pid: int, marker: str) -> bool:
    """Whether `pid` is a live (not zombie) process whose command line contains `marker`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z" and marker.encode() in cmdline


# -- the lab -----------------------------------------------------------------------------------


class Lab:
    """A lab named `name`; every method reads lab.json afresh, so processes can share it."""

    def __init__(
        self,
        name: str = DEFAULT_LAB,
        *,
        progress: Callable[[str], None] | None = None,
        state_root: Path = STATE_ROOT,
        run_root: Path = RUN_ROOT,
    ) -> None:
        self.name = check_lab_name(name)
        self.progress = progress or (lambda line: None)
        self.state_root = state_root / name
        self.run_dir = run_root / name
        self._lock_path = run_root / f".{name}.lock"
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- names and places ---------------------------------------------------------------------

    def netns(self, node: str) -> str:
        return netns_name(self.name, node)

    @property
    def bridge_netns(self) -> str:
        return bridge_netns_name(self.name)

    def state_dir(self, node: str) -> Path:
        return self.state_root / node

    def socket(self, node: str) -> str:
        return str(self.run_dir / f"{node}.sock")

    def log_path(self, node: str) -> Path:
        return self.run_dir / f"{node}.log"

    def _pid_path(self, node: str) -> Path:
        return self.run_dir / f"{node}.pid"

    def address(self, node: str) -> tuple[str, str]:
        """The node's ULA and IPv4 address on the lab's LAN."""
        return lan_addresses(self.name, node_index(node))

    def _read(self) -> dict[str, Any]:
        try:
            raw: dict[str, Any] = json.loads((self.run_dir / "lab.json").read_text())
        except FileNotFoundError:
            raise LabError(
                f"there is no lab {self.name!r} on this machine ({self.run_dir}/lab.json does "
                f"not exist); start one with `edgenode lab up --lab {self.name}`"
            ) from None
        except (OSError, ValueError) as exc:
            raise LabError(f"{self.run_dir}/lab.json: unreadable ({exc})") from None
        return raw

    def _write(self, raw: dict[str, Any]) -> None:
        tmp = self.run_dir / ".lab.json.tmp"
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        os.replace(tmp, self.run_dir / "lab.json")

    def nodes(self) -> list[str]:
        return list(self._read()["nodes"])

    def extra_daemon_args(self) -> list[str]:
        return list(self._read().get("extra_daemon_args") or [])

    def faults(self) -> Faults:
        return Faults.from_json(self._read().get("faults") or {})

    def _node(self, node: str) -> str:
        nodes = self.nodes()
        if node not in nodes:
            raise LabInputError(
                f"lab {self.name!r} has no node {node!r}; its nodes: {', '.join(nodes)}; "
                "nothing was changed"
            )
        return node

    @contextlib.contextmanager
    def _locked(self, *, create: bool = False) -> Iterator[None]:
        """Hold the lab's lock (`create`: also for a lab that does not exist yet)."""
        if not create:
            self._read()  # no lab: say so, and leave no lock file behind
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- up ------------------------------------------------------------------------------------

    def _leftovers(self) -> list[str]:
        found = [str(p) for p in (self.run_dir, self.state_root) if p.exists()]
        return found + self._namespaces()

    def _namespaces(self) -> list[str]:
        return lab_namespaces(self.name, os.listdir(NETNS_DIR) if NETNS_DIR.is_dir() else [])

    def up(
        self, nodes: int = 3, *, extra_daemon_args: Sequence[str] = (), timeout: float = 60.0
    ) -> None:
        """Make the lab: namespaces and bridge, one cluster, one answering daemon per node.
        Refused if any part of a lab of this name exists. If a daemon does not come up, the
        lab is left as it is for its logs to be read; `down` removes it."""
        if not 1 <= nodes <= MAX_NODES:
            raise LabInputError(
                f"--nodes: expected 1-{MAX_NODES}, got {nodes}; nothing was changed"
            )
        with self._locked(create=True):
            leftovers = self._leftovers()
            if leftovers:
                raise LabError(
                    f"lab {self.name!r} already exists ({', '.join(leftovers)}); nothing was "
                    f"changed. `edgenode lab down --lab {self.name}` removes it; --lab NAME "
                    "makes another beside it"
                )
            names = [f"n{i}" for i in range(1, nodes + 1)]
            started = time.monotonic()
            for d in (self.state_root.parent, self.state_root, self.run_dir.parent, self.run_dir):
                d.mkdir(mode=0o755, parents=True, exist_ok=True)
            raw = {"name": self.name, "nodes": names, "created": time.time()}
            self._write({**raw, "extra_daemon_args": list(extra_daemon_args), "faults": {}})
            try:
                self._make_network(names)
                cluster = self._make_cluster(names)
                self.progress(f"cluster {cluster} made; n1 holds its root key")
                for node in names:
                    self._spawn(node)
            except (OSError, RuntimeError) as exc:  # LabError, IdentityError, a missing tool
                raise LabError(
                    f"lab {self.name!r} is not up: {exc}; what was made is left as it is "
                    f"(`edgenode lab down --lab {self.name}` removes it)"
                ) from exc
            self._wait_answering(names, timeout)
            self.progress(
                f"lab {self.name}: {nodes} nodes up in {time.monotonic() - started:.1f} s"
            )

    def _make_network(self, names: Sequence[str]) -> None:
        br = self.bridge_netns
        _run(["ip", "netns", "add", br], "make the bridge namespace")
        self._sysctl(br, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        batch = ["link set lo up", f"link add {BRIDGE} type bridge mcast_snooping 0"]
        batch.append(f"link set {BRIDGE} up")
        for node in names:
            ns = self.netns(node)
            _run(["ip", "netns", "add", ns], f"make {node}'s namespace")
            self._sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            batch.append(f"link add {node} type veth peer name eth0 netns {ns}")
            batch.append(f"link set {node} master {BRIDGE} up")
        _ip_batch(br, batch, "wire the bridge")
        for node in names:
            ula, ipv4 = self.address(node)
            commands = ["link set lo up", f"addr add {ula}/64 dev eth0 nodad"]
            commands += [f"addr add {ipv4}/24 dev eth0", "link set eth0 up"]
            _ip_batch(self.netns(node), [*commands, "route add 224.0.0.0/4 dev eth0"], node)
            self.progress(f"{node}: netns {self.netns(node)}, {ula}, {ipv4}")
        self._apply_faults(Faults())

    def _sysctl(self, ns: str, *settings: str) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings], f"sysctl in {ns}")

    def _make_cluster(self, names: Sequence[str]) -> str:
        from gossip.identity import init_cluster  # noqa: PLC0415

        now = int(time.time())
        first = self.state_dir(names[0])
        for node in names:
            self.state_dir(node).mkdir(mode=0o711, parents=True)
        cluster, _ = init_cluster(first, names[0], now=now)
        for node in names[1:]:
            write_node_credentials(first, self.state_dir(node), node, now=now)
        return cluster.id

    # -- daemons -------------------------------------------------------------------------------

    def _spawn(self, node: str) -> int:
        log = open(self.log_path(node), "ab")  # noqa: SIM115 - the daemon's stdout and stderr
        try:
            proc = subprocess.Popen(
                daemon_argv(self, node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self._children[node] = proc
        self._pid_path(node).write_text(f"{proc.pid}\n")
        return proc.pid

    def pid(self, node: str) -> int | None:
        """The pid of node's daemon if it is running, else None."""
        try:
            pid = int(self._pid_path(node).read_text())
        except (OSError, ValueError):
            return None
        self._reap(node)
        return pid if _alive(pid, self.socket(node)) else None

    def _exited(self, node: str) -> bool:
        """Whether node's daemon has ended. For a daemon this process started, its exit status
        says so: until the child has exec'd, /proc shows this process's command line, which
        `pid` would take for a daemon that is gone."""
        proc = self._children.get(node)
        if proc is not None:
            return proc.poll() is not None
        return self.pid(node) is None

    def _reap(self, node: str) -> None:
        proc = self._children.get(node)
        if proc is not None and proc.poll() is not None:
            del self._children[node]

    def answering(self, node: str, *, timeout: float = 2.0) -> bool:
        """Whether node's daemon answers `get nodes` on its socket."""
        try:
            with Connection(self.socket(node), timeout=timeout) as conn:
                conn.call("get", kind="nodes", name=None)
        except (ApiError, OSError):
            return False
        return True

    def _wait_answering(self, nodes: Sequence[str], timeout: float) -> None:
        started = time.monotonic()
        pending = list(nodes)
        while pending:
            for node in list(pending):
                if self.answering(node):
                    pending.remove(node)
                    took = time.monotonic() - started
                    self.progress(f"{node}: daemon pid {self.pid(node)} answering ({took:.1f} s)")
                elif self._exited(node):
                    raise LabError(self._did_not_come_up(node, "its daemon exited"))
            if pending and time.monotonic() - started > timeout:
                raise LabError(
                    self._did_not_come_up(pending[0], f"no answer within {timeout:.0f} s")
                )
            if pending:
                time.sleep(0.05)

    def _did_not_come_up(self, node: str, why: str) -> str:
        try:
            tail = self.log_path(node).read_text(errors="replace").splitlines()[-5:]
        except OSError:
            tail = []
        return (
            f"node {node} of lab {self.name!r} did not come up: {why}; its log: "
            f"{self.log_path(node)}; the lab is left as it is (`edgenode lab down --lab "
            f"{self.name}` removes it)" + "".join(f"\n  {line}" for line in tail)
        )

    def kill(self, node: str, sig: int = signal.SIGKILL, *, timeout: float = 30.0) -> int:
        """Signal node's daemon and wait until it has gone (its pods keep running); its pid."""
        self._node(node)
        pid = self.pid(node)
        if pid is None:
            raise LabError(f"node {node}: its daemon is not running; nothing was changed")
        os.kill(pid, sig)
        if not self._wait_gone(node, pid, timeout):
            raise LabError(f"node {node}: its daemon {pid} still runs {timeout:.0f} s after {sig}")
        return pid

    def _wait_gone(self, node: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _alive(pid, self.socket(node)):
            self._reap(node)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        self._reap(node)
        return True

    def start(self, node: str, *, timeout: float = 60.0) -> int:
        """Start node's daemon again and wait until it answers; its pid."""
        with self._locked():
            self._node(node)
            pid = self.pid(node)
            if pid is not None:
                raise LabError(f"node {node}: its daemon is running (pid {pid}); nothing changed")
            pid = self._spawn(node)
            self._wait_answering([node], timeout)
            return pid

    # -- faults --------------------------------------------------------------------------------

    def _set_faults(self, change: Callable[[Faults, list[str]], Faults]) -> Faults:
        with self._locked():
            raw = self._read()
            faults = change(Faults.from_json(raw.get("faults") or {}), list(raw["nodes"]))
            self._apply_faults(faults)
            raw["faults"] = faults.to_json()
            self._write(raw)
            return faults

    def _apply_faults(self, faults: Faults) -> None:
        _run(
            ["ip", "netns", "exec", self.bridge_netns, "nft", "-f", "-"],
            "put the faults in force",
            input=ruleset(faults),
        )

    def partition(self, groups: Sequence[Sequence[str]]) -> list[list[str]]:
        """Cut the lab into `groups` (nodes named nowhere are alone); the full partition."""
        faults = self._set_faults(lambda f, nodes: with_partition(f, nodes, groups))
        return [list(g) for g in faults.partition or ()]

    def heal(self) -> None:
        """End every partition and bring every link up (loss stays: `loss(None, 0)`)."""
        for node in self.faults().down:
            self.link(node, up=True)
        self._set_faults(lambda f, nodes: dataclasses.replace(f, partition=None))

    def loss(self, node: str | None, pct: int) -> None:
        """Drop `pct` percent of the packets entering and leaving `node`'s port; with None,
        of every packet crossing the bridge, in place of every per-node loss. 0 clears."""
        check_percent(pct)

        def change(f: Faults, nodes: list[str]) -> Faults:
            if node is not None:
                self._node(node)
            return with_loss(f, node, pct)

        self._set_faults(change)

    def link(self, node: str, *, up: bool) -> None:
        """Set node's bridge port up or down (down: its eth0 loses its carrier)."""

        def change(f: Faults, nodes: list[str]) -> Faults:
            self._node(node)
            state = "up" if up else "down"
            _run(["ip", "-n", self.bridge_netns, "link", "set", node, state], f"{node} {state}")
            return with_link(f, node, up=up)

        self._set_faults(change)

    # -- looking and acting inside -------------------------------------------------------------

    def status(self) -> list[NodeStatus]:
        raw = self._read()
        faults = Faults.from_json(raw.get("faults") or {})
        group = {n: i + 1 for i, g in enumerate(faults.partition or ()) for n in g}
        out = []
        for node in raw["nodes"]:
            pid = self.pid(node)
            ula, ipv4 = self.address(node)
            ns = self.netns(node)
            up, answers = pid is not None, pid is not None and self.answering(node, timeout=1.0)
            link, loss = node not in faults.down, faults.loss.get(node, 0) or faults.loss_all
            exists = os.path.ismount(NETNS_DIR / ns)
            out.append(
                NodeStatus(
                    node, ns, exists, pid, up, answers, link, loss, group.get(node), ula, ipv4
                )
            )
        return out

    def exec(
        self, node: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in node's network namespace; its exit code and output (not checked)."""
        argv = ["ip", "netns", "exec", self.netns(node), *argv]
        return _capture(argv, input=input, timeout=timeout)

    def cli(
        self, node: str, *args: str, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``edgenode ARGS`` against node's daemon (its socket); not checked."""
        env = {k: v for k, v in os.environ.items() if k != "EDGENODE_NODE"}
        env["EDGENODE_SOCKET"] = self.socket(node)
        argv = [*edgenode_argv(), *args]
        return _capture(argv, input=input, timeout=timeout, env=env)

    # -- down ----------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove everything of the lab that exists; what was removed (empty: nothing was)."""
        removed: list[str] = []
        problems: list[str] = []
        with self._locked(create=True):
            nodes = self._known_nodes()
            pids = {n: p for n in nodes if (p := self.pid(n)) is not None}
            for pid in pids.values():
                os.kill(pid, signal.SIGTERM)
            for node, pid in pids.items():
                if not self._wait_gone(node, pid, 10.0):
                    os.kill(pid, signal.SIGKILL)
                    self._wait_gone(node, pid, 10.0)
                removed.append(f"{node}: daemon {pid}")
            for node in nodes:
                try:
                    for pod in _delete_pods(self.state_dir(node)):
                        removed.append(f"{node}: pod {pod}")
                except Exception as exc:  # reported below; the rest still goes
                    problems.append(f"{node}: its pods: {exc}")
            for ns in self._namespaces():
                out = _capture(["ip", "netns", "delete", ns])
                if out.returncode:
                    problems.append(f"namespace {ns}: {out.stderr.strip()}")
                else:
                    removed.append(f"netns {ns}")
            # A node whose pods could not go keeps its state: the next `down` tries again.
            for d in (self.run_dir, *([] if problems else [self.state_root])):
                if d.exists():
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(str(d))
            for d in (self.state_root.parent, self.run_dir.parent):
                with contextlib.suppress(OSError):
                    d.rmdir()
        with contextlib.suppress(OSError):
            self._lock_path.unlink()
            self.run_dir.parent.rmdir()
        if problems:
            raise LabError(f"lab {self.name!r}: not all was removed: " + "; ".join(problems))
        return removed

    def _known_nodes(self) -> list[str]:
        """The nodes of lab.json, and any node whose namespace, state or pid file is left."""
        found: set[str] = set()
        with contextlib.suppress(LabError, KeyError, TypeError):
            found.update(self._read()["nodes"])
        found.update(ns.rpartition("-")[2] for ns in self._namespaces())
        for d, suffix in ((self.state_root, ""), (self.run_dir, ".pid")):
            if d.is_dir():
                found.update(p.name.removesuffix(suffix) for p in d.iterdir())
        return sorted((n for n in found if NODE_NAME.match(n)), key=node_index)


def _delete_pods(state_dir: Path) -> list[str]:
    """Delete every pod a node's daemon left (pods outlive their daemon); their names."""
    if not (state_dir / "pods").is_dir() or not any((state_dir / "pods").iterdir()):
        return []
    from sandbox.images import ImageStore  # noqa: PLC0415
    from sandbox.pods import Sandbox  # noqa: PLC0415

    sandbox = Sandbox(state_dir, ImageStore(state_dir / "images"))
    pods = sandbox.pods()
    for pod in pods:
        sandbox.delete_pod(pod, grace_s=0)
    return pods
