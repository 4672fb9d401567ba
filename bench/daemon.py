"""Benchmarks of the node daemon driven by the real CLI, each figure next to its target and to a
reference from the same run.

Run ``python bench/daemon.py`` as root for a table, ``--json`` for one JSON object on stdout,
``--runs N`` for the number of timed applies (and raw runc starts, interleaved; default 20),
``--pods K`` for the pods the loaded-memory figure runs at once (default 50), ``--quick`` for a
smoke run (3 applies, 5 pods, 5 ``get``s, a 5 s idle window: its numbers are not meaningful),
``--dir`` to put the temporary node somewhere else (every directory above it must be
searchable by all users: containers run with unmapped ids and must reach their root
filesystem). Everything it makes is removed, also after an error, Ctrl-C or SIGTERM: the
daemon, pods, containers, network namespaces, files; a network namespace of this run left
behind fails it (exit 1).

Setup, not timed: the project's packages byte-compiled (``compileall``, into their
git-ignored ``__pycache__``, only what changed), so that the daemon and the CLI load cached
bytecode as an installed package does, also where ``PYTHONDONTWRITEBYTECODE`` is set
(compiling at every start would add about 10 ms to each CLI run and 2 MB to the daemon);
a temporary directory (mode 0755) holding the node's state directory, and one daemon for the
whole run, ``edgenode up --state-dir STATE --socket SOCK --name NAME`` in
its own process (JSON log to a file), which builds the busybox image at its first start; it
is ready when ``edgenode get nodes`` answers. Every pod is a one-container pod applied with
the real CLI: image ``busybox``, command ``sh -c "trap 'exit 0' TERM; sleep 1000 & wait"``
(an idle process that stops at SIGTERM), default everything else. Then one untimed warm-up
pod (applied, run, deleted: afterwards the daemon has imported everything a pod's life
needs) and one untimed raw runc start. "MB" is MiB (2^20 bytes) throughout.

Figures (the JSON keys), their targets and references:

- ``idle_rss_mb`` (target ≤ 60): resident memory of the daemon process (``VmRSS`` of
  ``/proc/PID/status``; the daemon is one process, its threads included) with no pods, after
  the warm-up pod is gone and the daemon has settled for 2 s. ``fresh_rss_mb`` (no target):
  the same 2 s after the daemon first answered, before it ever ran a pod.
- ``idle_cpu_percent`` (target ≤ 1): CPU time of the daemon process (``utime + stime`` of
  ``/proc/PID/stat``, all its threads, in clock ticks of ``SC_CLK_TCK``, usually 10 ms) over an
  idle window of 10 s (5 s with ``--quick``) right after ``idle_rss_mb``, as a percentage of
  one core; the benchmark only sleeps meanwhile. A 10 s window holds one of the daemon's
  periodic resyncs (every 10 s by default); the 5 s of ``--quick`` may hold none.
  Resolution: one tick over the window, 0.1 % for 10 s. ``idle_children_cpu_percent`` (no
  target) is the same of the children the daemon waited for (``cutime + cstime``: commands
  it ran), not counted in the figure.
- ``apply_to_running_ms_p50`` / ``_p90`` (target: p50 ≤ ``raw_runc_ms_p50`` + 100): wall time
  from just before spawning ``edgenode apply -f FILE`` (a new manifest of one pod with a new
  name) until that pod's container process runs: ``<state>/pods/NAME/containers/main/
  status.json``, which the container's monitor (``sandbox/monitor.c``) writes with ``"state":
  "running"`` and the container's pid once ``runc run --detach`` has started it, says
  ``running`` and ``/proc/PID`` of that pid exists; polled every 2 ms (so up to 2 ms late).
  It includes the CLI process (interpreter start, imports, reading the file), the daemon's
  validation and store commit, its watch waking the reconciler, placement, the start
  workflow and the sandbox's pod creation and start (see ``bench/sandbox.py``). The pod is
  then deleted with ``edgenode delete pod/NAME`` and the benchmark waits until its directory
  is gone (not timed). ``apply_cli_ms_p50`` (no target): when the apply CLI process had
  exited, by the same polling. Reference ``raw_runc_ms_p50`` / ``_p90``, interleaved (raw,
  edgenode, raw, ...): wall time of ``runc run --detach --bundle B ID`` from invocation until
  runc returns, where B is a bundle of the same unpacked busybox root filesystem of the
  daemon's image store (``<state>/images/rootfs/<hex>``) with the ``config.json``
  `sandbox._oci.runtime_config` makes for the same container (built by ``bench/sandbox.py``'s
  ``raw_config``: same init, command, environment, user, limits, seccomp filter, mounts,
  AppArmor profile if any; an id range of its own and a network namespace runc makes). It is
  checked against the config.json the daemon wrote for the warm-up pod, up to hostname, id
  range and network namespace path; if they differ, nothing is measured. ``runc delete
  --force`` afterwards is not timed.
- ``rss_mb_50_pods`` (target ≤ 90): the daemon's ``VmRSS`` (the daemon process only: not the
  containers, not their monitors) with ``--pods`` pods running (50; 5 with ``--quick``, same
  key), applied as one manifest of that many documents with one ``edgenode apply`` after the
  timed applies (so ``--runs`` + 1 pods have come and gone before), measured 2 s after the
  last of them runs (as above). Reference ``idle_rss_mb``. ``peak_rss_mb`` (no target): the
  daemon's high-water mark (``VmHWM``) at that moment; ``rss_mb_after_pods_deleted`` (no
  target): its RSS 2 s after they are all deleted again (through the CLI, one ``edgenode
  delete`` each, waiting until their directories are gone).
- ``cli_get_ms_p50`` (target ≤ 150): wall time of ``edgenode get pods`` (a subprocess, the
  table output captured; the CLI process's start, imports, request and printing included)
  while those pods run, 20 times (5 with ``--quick``) after one untimed run. Reference
  ``python_startup_ms_p50``, interleaved: ``python -c pass`` with the same interpreter, the
  floor of any Python CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path, where `import sandbox` would
# find bench/sandbox.py instead of the sandbox package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import structlog  # noqa: E402
from rich.console import Console  # noqa: E402

from bench._report import Report, describe_machine, percentile, print_table  # noqa: E402
from bench.sandbox import (  # noqa: E402
    COMMAND,
    CONTAINER,
    IMAGE,
    Node,
    check_searchable,
    clean_up,
    handle_signals,
    log_to_stderr,
    normalized,
    raw_config,
    signals_ignored,
    start_raw,
)
from bench.sandbox import machine as sandbox_machine  # noqa: E402
from edgenode import __version__  # noqa: E402
from sandbox._classes import runtime_argv  # noqa: E402
from sandbox.containers import read_json  # noqa: E402
from sandbox.images import ImageStore  # noqa: E402
from sandbox.netns import NETNS_DIR  # noqa: E402
from sandbox.pods import Sandbox, node_key  # noqa: E402
from sandbox.runtimes import detect, require  # noqa: E402

log = structlog.get_logger("bench.daemon")

ROOT = _HERE.parent
PACKAGES = ("edgenode", "sandbox", "store", "gossip")
EDGENODE = Path(sys.executable).with_name("edgenode")
APPLY_SLACK_MS = 100.0
IDLE_RSS_TARGET_MB = 60.0
PODS_RSS_TARGET_MB = 90.0
IDLE_CPU_TARGET_PERCENT = 1.0
CLI_GET_TARGET_MS = 150.0
POLL_S = 0.002
SETTLE_S = 2.0
READY_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks everything for a smoke run."""

    runs: int = 20
    pods: int = 50
    gets: int = 20
    idle_s: float = 10.0


QUICK = Sizes(runs=3, pods=5, gets=5, idle_s=5.0)


@dataclass(slots=True)
class Daemon:
    """The node's daemon process and how to talk to it with the CLI."""

    work: Path
    state: Path
    socket: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.work / "daemon.log"

    def env(self) -> dict[str, str]:
        return {**os.environ, "EDGENODE_SOCKET": self.socket}

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(EDGENODE), *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        if done.returncode != 0:
            raise RuntimeError(
                f"edgenode {' '.join(args)} failed (exit {done.returncode}): "
                f"{done.stderr.strip() or 'no message'}; {self.log_tail()}"
            )
        return done.stdout

    def container_dir(self, pod: str) -> Path:
        return self.state / "pods" / pod / "containers" / CONTAINER

    def log_tail(self, lines: int = 8) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        return "the daemon's log ends: " + (" | ".join(tail) or "(empty)")


@dataclass(slots=True)
class Bench:
    """One run: the daemon, and the raw runc side (`bench.sandbox.Node`: image, bundle)."""

    daemon: Daemon
    node: Node
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.node.prefix


# --- the daemon process ----------------------------------------------------------------------


def compile_project() -> None:
    """Byte-compile the project's packages into their (git-ignored) ``__pycache__``, as
    installing the package would: the daemon and the CLI then load cached bytecode, also in
    a checkout run with ``PYTHONDONTWRITEBYTECODE`` (the standard library and the installed
    dependencies have theirs already). Only changed files are compiled."""
    dirs = [str(ROOT / p) for p in PACKAGES if (ROOT / p).is_dir()]
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *dirs],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:  # a file being edited: it is compiled at import, as it would be
        log.warning("bench_compile_incomplete", output=done.stdout.strip()[-500:])


def start_daemon(work: Path, name: str) -> Daemon:
    state, socket = work / "state", str(work / "run" / "edgenode.sock")
    with open(work / "daemon.log", "ab") as log_file:
        process = subprocess.Popen(
            [str(EDGENODE), "up", "--state-dir", str(state), "--socket", socket, "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    daemon = Daemon(work, state, socket, process)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while daemon.cli("get", "nodes").returncode != 0:
        if process.poll() is not None:
            raise RuntimeError(
                f"the daemon exited with {process.returncode} before answering; {daemon.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the daemon did not answer within {READY_TIMEOUT_S:.0f} s; {daemon.log_tail()}"
            )
        time.sleep(0.1)
    return daemon


def stop_daemon(daemon: Daemon) -> None:
    """SIGTERM (it finishes its workflows, up to 30 s), SIGKILL a minute later."""
    process = daemon.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            log.warning("bench_daemon_killed", pid=process.pid)
            process.kill()
            process.wait(30)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    return status_kb(pid, key) / 1024


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of process `pid`, in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])  # fields 14 to 17
    return utime + stime, cutime + cstime


# --- pods through the CLI --------------------------------------------------------------------


def manifest(names: Sequence[str]) -> str:
    """One YAML document per pod (the command as a JSON list, which YAML reads as is)."""
    docs = [
        f"apiVersion: edgenode/v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n"
        f"  containers:\n    {CONTAINER}:\n      image: {IMAGE}\n"
        f"      command: {json.dumps(list(COMMAND))}\n"
        for name in names
    ]
    return "---\n".join(docs)


def write_manifest(daemon: Daemon, label: str, names: Sequence[str]) -> Path:
    path = daemon.work / "manifests" / f"{label}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(manifest(names))
    return path


def container_runs(daemon: Daemon, pod: str) -> bool:
    """The monitor reported the container running, and its process exists."""
    status = read_json(daemon.container_dir(pod) / "status.json")
    if not status or status.get("state") != "running" or not status.get("pid"):
        return False
    return os.path.exists(f"/proc/{int(status['pid'])}")


def wait_running(daemon: Daemon, names: Sequence[str], timeout: float) -> None:
    pending = list(names)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [n for n in pending if not container_runs(daemon, n)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pods not running after {timeout:.0f} s: {not_running(daemon, pending)}"
            )
        time.sleep(0.02)


def not_running(daemon: Daemon, names: Sequence[str]) -> str:
    """What the daemon and the pods' files say about pods that do not run, for an error."""
    said = []
    for name in names[:3]:
        status = read_json(daemon.container_dir(name) / "status.json")
        record = read_json(daemon.container_dir(name) / "record.json")
        said.append(f"{name}: status {status}, record {record}")
    more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
    return "; ".join(said) + more + "; " + daemon.log_tail()


def delete_pods(daemon: Daemon, names: Sequence[str], timeout: float = RUN_TIMEOUT_S) -> None:
    """`edgenode delete pod/NAME` each, then wait until their directories are gone."""
    for name in names:
        daemon.ok("delete", f"pod/{name}")
    deadline = time.monotonic() + timeout + len(names)
    pods = daemon.state / "pods"
    while any((pods / n).exists() for n in names):
        if time.monotonic() > deadline:
            left = [n for n in names if (pods / n).exists()]
            raise RuntimeError(f"pods deleted but still on the node: {left}; {daemon.log_tail()}")
        time.sleep(0.01)


def apply_once(daemon: Daemon, name: str) -> tuple[float, float]:
    """Milliseconds from spawning `edgenode apply` until the pod's container runs, and until
    the CLI had exited; the pod is deleted afterwards (not timed). On an error the pod is left
    to the run's cleanup."""
    path = write_manifest(daemon, name, [name])
    argv = [str(EDGENODE), "apply", "-f", str(path)]
    cli_s: float | None = None
    t0 = time.perf_counter()
    cli = subprocess.Popen(
        argv,
        env=daemon.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with cli:
        while not container_runs(daemon, name):
            now = time.perf_counter()
            if cli_s is None and cli.poll() is not None:
                cli_s = now - t0
                if cli.returncode != 0:
                    break
            if now > t0 + RUN_TIMEOUT_S:
                raise RuntimeError(
                    f"pod {name} not running {RUN_TIMEOUT_S:.0f} s after its apply: "
                    f"{not_running(daemon, [name])}"
                )
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
        _, err = cli.communicate(timeout=RUN_TIMEOUT_S)
        if cli_s is None:
            cli_s = time.perf_counter() - t0
    if cli.returncode != 0:
        raise RuntimeError(
            f"edgenode apply -f {path} failed (exit {cli.returncode}): "
            f"{err.decode(errors='replace').strip() or 'no message'}"
        )
    delete_pods(daemon, [name])
    return elapsed * 1e3, cli_s * 1e3


def timed_command(argv: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Milliseconds `argv` takes from spawning until it exited, and what it printed."""
    t0 = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed (exit {done.returncode}): "
            f"{done.stderr.strip() or 'no message'}"
        )
    return elapsed * 1e3, done.stdout


# --- the figures -----------------------------------------------------------------------------


def check_equivalent(raw: dict[str, Any], daemon: Daemon, pod: str) -> None:
    """The raw bundle must be what the daemon wrote for a pod of the same manifest, up to
    `bench.sandbox.normalized` (hostname, id range, network namespace)."""
    path = daemon.container_dir(pod) / "bundle" / "config.json"
    made = normalized(json.loads(path.read_text()))
    ours = normalized(raw)
    if ours != made:
        keys = sorted(k for k in {*ours, *made} if ours.get(k) != made.get(k))
        linux = sorted(
            k
            for k in {*ours["linux"], *made["linux"]}
            if ours["linux"].get(k) != made["linux"].get(k)
        )
        raise SystemExit(
            f"the raw runc bundle is no longer equivalent to the one the daemon writes: they "
            f"differ in {', '.join(keys)} (linux: {', '.join(linux) or '-'}); make raw_config "
            f"in bench/sandbox.py follow sandbox/pods.py, nothing was measured"
        )


def warm_up(b: Bench) -> None:
    """One pod through the daemon (its config checked against the raw bundle's, which is
    written then) and one raw start, untimed."""
    config = raw_config(b.node.sandbox, b.node.image, f"{b.prefix}raw")
    name = f"{b.prefix}warmup"
    b.daemon.ok("apply", "-f", str(write_manifest(b.daemon, name, [name])))
    wait_running(b.daemon, [name], RUN_TIMEOUT_S)
    check_equivalent(config, b.daemon, name)
    delete_pods(b.daemon, [name])
    (b.node.raw_bundle / "config.json").write_text(json.dumps(config, sort_keys=True))
    start_raw(b.node, f"{b.prefix}raw-warmup")


def bench_fresh(b: Bench, report: Report) -> None:
    time.sleep(SETTLE_S)
    report.add("fresh_rss_mb", rss_mb(b.daemon.pid), "MB")


def bench_idle(b: Bench, sizes: Sizes, report: Report) -> None:
    time.sleep(SETTLE_S)
    pid = b.daemon.pid
    idle = rss_mb(pid)
    hz = os.sysconf("SC_CLK_TCK")
    own0, children0 = cpu_ticks(pid)
    t0 = time.monotonic()
    time.sleep(sizes.idle_s)
    own1, children1 = cpu_ticks(pid)
    window = time.monotonic() - t0
    cpu = (own1 - own0) / hz / window * 100
    report.add(
        "idle_rss_mb",
        idle,
        "MB",
        target=f"≤ {IDLE_RSS_TARGET_MB:.0f}",
        met=idle <= IDLE_RSS_TARGET_MB,
    )
    report.add(
        "idle_cpu_percent",
        cpu,
        "% of a core",
        target=f"≤ {IDLE_CPU_TARGET_PERCENT:.0f}",
        met=cpu <= IDLE_CPU_TARGET_PERCENT,
    )
    report.add(
        "idle_children_cpu_percent", (children1 - children0) / hz / window * 100, "% of a core"
    )
    report.sizes["idle_window_s"] = round(window)


def bench_apply(b: Bench, sizes: Sizes, report: Report) -> None:
    raw_ms: list[float] = []
    pod_ms: list[float] = []
    cli_ms: list[float] = []
    for i in range(sizes.runs):
        raw_ms.append(start_raw(b.node, f"{b.prefix}raw-{i}"))
        running, cli = apply_once(b.daemon, f"{b.prefix}{i}")
        pod_ms.append(running)
        cli_ms.append(cli)
    b.samples.update(raw_runc=list(raw_ms), apply_to_running=list(pod_ms), apply_cli=cli_ms)
    raw_ms.sort()
    pod_ms.sort()
    raw50, pod50 = percentile(raw_ms, 0.5), percentile(pod_ms, 0.5)
    report.add(
        "apply_to_running_ms_p50",
        pod50,
        "ms",
        target=f"≤ ref + {APPLY_SLACK_MS:.0f}",
        met=pod50 <= raw50 + APPLY_SLACK_MS,
        reference=("raw_runc_ms_p50", raw50),
    )
    report.add(
        "apply_to_running_ms_p90",
        percentile(pod_ms, 0.9),
        "ms",
        reference=("raw_runc_ms_p90", percentile(raw_ms, 0.9)),
    )
    report.add("apply_cli_ms_p50", percentile(sorted(cli_ms), 0.5), "ms")
    report.sizes["runs"] = sizes.runs


def bench_pods(b: Bench, sizes: Sizes, report: Report) -> None:
    """`--pods` pods at once: the daemon's memory with them, and `get pods` among them."""
    daemon, pid = b.daemon, b.daemon.pid
    names = [f"{b.prefix}many-{i}" for i in range(sizes.pods)]
    daemon.ok("apply", "-f", str(write_manifest(daemon, "many", names)))
    wait_running(daemon, names, RUN_TIMEOUT_S + 5 * sizes.pods)
    time.sleep(SETTLE_S)
    loaded, peak = rss_mb(pid), rss_mb(pid, "VmHWM")
    idle = report.values["idle_rss_mb"]
    report.add(
        "rss_mb_50_pods",
        loaded,
        "MB",
        target=f"≤ {PODS_RSS_TARGET_MB:.0f}",
        met=loaded <= PODS_RSS_TARGET_MB,
        reference=("idle_rss_mb", idle),
    )
    report.add("peak_rss_mb", peak, "MB")
    report.sizes["pods"] = sizes.pods

    env = daemon.env()
    get = [str(EDGENODE), "get", "pods"]
    python = [sys.executable, "-c", "pass"]
    _, listed = timed_command(get, env)  # untimed: the files are in the page cache after it
    shown = sum(1 for line in listed.splitlines() if line.startswith(f"{b.prefix}many-"))
    if shown != sizes.pods:
        raise RuntimeError(f"edgenode get pods listed {shown} of the {sizes.pods} pods:\n{listed}")
    get_ms: list[float] = []
    python_ms: list[float] = []
    for _ in range(sizes.gets):
        python_ms.append(timed_command(python, env)[0])
        get_ms.append(timed_command(get, env)[0])
    b.samples.update(cli_get=list(get_ms), python_startup=list(python_ms))
    get50 = percentile(sorted(get_ms), 0.5)
    report.add(
        "cli_get_ms_p50",
        get50,
        "ms",
        target=f"≤ {CLI_GET_TARGET_MS:.0f}",
        met=get50 <= CLI_GET_TARGET_MS,
        reference=("python_startup_ms_p50", percentile(sorted(python_ms), 0.5)),
    )
    report.sizes["gets"] = sizes.gets

    delete_pods(daemon, names)
    time.sleep(SETTLE_S)
    report.add("rss_mb_after_pods_deleted", rss_mb(pid), "MB")


# --- setup and cleanup -----------------------------------------------------------------------


@contextlib.contextmanager
def temporary_bench(where: str | None, found: dict[str, list[str]]) -> Iterator[Bench]:
    """A daemon on a fresh node directory. On the way out: the daemon is stopped (its pods
    keep running), every pod and container of this run is removed with the sandbox, the
    directory too; what was found on the way goes in `found` (see `clean_up_run`)."""
    work = Path(tempfile.mkdtemp(prefix="edgenode-bench-daemon-", dir=where))
    owner = os.getpid()
    prefix = f"bench-{secrets.token_hex(3)}-"
    daemon: Daemon | None = None
    node: Node | None = None
    try:
        work.chmod(0o755)
        check_searchable(work)
        rt = require("runc", detect())
        assert rt.binary is not None
        compile_project()
        daemon = start_daemon(work, prefix.rstrip("-"))
        images = ImageStore(daemon.state / "images")
        sandbox = Sandbox(daemon.state, images)
        # Imported by the daemon at its start; unpacked here (under the image store's lock)
        # if no pod has used it yet, as the daemon would for its first pod.
        image = images.resolve(IMAGE)
        bundle = work / "raw-bundle"
        bundle.mkdir()
        node = Node(work, prefix, sandbox, image, runtime_argv("runc", rt.binary, None), bundle)
        yield Bench(daemon, node)
    finally:
        if os.getpid() == owner:  # not in a forked copy of this process (see `handle_signals`)
            with signals_ignored():
                clean_up_run(work, prefix, daemon, node, found)


def clean_up_run(
    work: Path,
    prefix: str,
    daemon: Daemon | None,
    node: Node | None,
    found: dict[str, list[str]],
) -> None:
    """Stop the daemon, then remove what is left with the sandbox (pods outlive the daemon).
    `found`: the pods and network namespaces still there after the daemon stopped (none after
    a complete run: every pod was deleted through the daemon), and the namespaces still there
    after this cleanup (``netns_left``: must be none)."""
    try:
        if daemon is not None:
            stop_daemon(daemon)
        if node is not None:
            found["pods"] = node.sandbox.pods()
            found["netns"] = netns_of(prefix)
            clean_up(node)  # pods, stray monitors, containers, namespaces of `prefix`
        elif daemon is not None and (daemon.state / "pods").is_dir():
            sandbox = Sandbox(daemon.state, ImageStore(daemon.state / "images"))
            for pod in sandbox.pods():
                sandbox.delete_pod(pod, grace_s=0)
    except Exception as exc:
        log.error("bench_cleanup_failed", error=str(exc), work=str(work))
    left = netns_of(prefix)
    for ns in left:
        log.error("bench_netns_left", netns=ns)
    found["netns_left"] = left
    shutil.rmtree(work, ignore_errors=True)


def netns_of(prefix: str) -> list[str]:
    """Network namespaces of this run's pods (``edgenode-<node key>-<pod>``)."""
    if not os.path.isdir(NETNS_DIR):
        return []
    return sorted(ns for ns in os.listdir(NETNS_DIR) if f"-{prefix}" in ns)


# --- output ----------------------------------------------------------------------------------


def machine(runc_version: str | None) -> dict[str, Any]:
    return {**sandbox_machine(runc_version), "edgenode": __version__}


def show(report: Report, facts: dict[str, Any], where: str, elapsed: float, *, quick: bool) -> None:
    title = "edgenode daemon benchmark (real CLI, real runc)"
    if quick:
        title += " (--quick: too few runs to judge the targets)"
    s = report.sizes
    footer = [
        f"machine: {describe_machine(facts)}, {facts['runc']}, cgroups {facts['cgroups']}; "
        f"node under {where}",
        f"sizes: {s.get('runs', 0)} applies interleaved with raw runc starts (after one warm-up "
        f"of each), {s.get('pods', 0)} pods at once for rss_mb_50_pods, "
        f"{s.get('gets', 0)} gets, a {s.get('idle_window_s', 0)} s idle window; MB = MiB; "
        f"took {elapsed:.1f} s",
    ]
    print_table(title, report, footer, judged=not quick)


@dataclass(slots=True)
class Outcome:
    report: Report
    samples: dict[str, list[float]]
    where: str
    prefix: str
    work: str
    daemon_pid: int
    cleanup: dict[str, list[str]]
    netns_prefix: str


def run(sizes: Sizes, where: str | None) -> Outcome:
    report = Report()
    found: dict[str, list[str]] = {}
    with temporary_bench(where, found) as b:
        bench_fresh(b, report)
        warm_up(b)
        bench_idle(b, sizes, report)
        bench_apply(b, sizes, report)
        bench_pods(b, sizes, report)
        work = b.daemon.work
        netns_prefix = f"edgenode-{node_key(b.daemon.state)}-{b.prefix}"
        outcome = Outcome(
            report,
            b.samples,
            str(work.parent),
            b.prefix,
            str(work),
            b.daemon.pid,
            found,
            netns_prefix,
        )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick", action="store_true", help="3 applies, 5 pods, 5 s idle (a smoke run)"
    )
    parser.add_argument("--runs", type=int, help="timed applies and raw starts (default 20)")
    parser.add_argument("--pods", type=int, help="pods at once for rss_mb_50_pods (default 50)")
    parser.add_argument("--dir", help="where to create the temporary node (default: $TMPDIR)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("runs a node daemon and containers with runc: run it as root")
    if not os.access(EDGENODE, os.X_OK):
        parser.error(f"no edgenode command next to this Python at {EDGENODE}: pip install -e .")
    base = QUICK if args.quick else Sizes()
    sizes = Sizes(
        runs=base.runs if args.runs is None else args.runs,
        pods=base.pods if args.pods is None else args.pods,
        gets=base.gets,
        idle_s=base.idle_s,
    )
    if sizes.runs < 1 or sizes.pods < 1:
        parser.error("--runs and --pods must be at least 1")
    log_to_stderr()
    handle_signals(os.getpid())
    t0 = time.perf_counter()
    try:
        if not args.json:
            with Console(stderr=True).status("running the daemon benchmark…"):
                outcome = run(sizes, args.dir)
        else:
            outcome = run(sizes, args.dir)
    except KeyboardInterrupt:
        print("interrupted; what the benchmark had made is removed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"the daemon benchmark failed: {exc}\nwhat it had made is removed", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    facts = machine(detect()["runc"].version)
    report = outcome.report
    if args.json:
        out: dict[str, Any] = dict(report.values)
        out.update(
            machine=facts,
            runs=sizes.runs,
            sizes=report.sizes,
            samples_ms=outcome.samples,
            names={"pods": outcome.prefix, "netns": outcome.netns_prefix},
            work_dir=outcome.work,
            daemon_pid=outcome.daemon_pid,
            cleanup=outcome.cleanup,
            quick=args.quick,
            seconds=elapsed,
        )
        out["figures"] = report.rows()
        print(json.dumps(out))
    else:
        show(report, facts, outcome.where, elapsed, quick=args.quick)
    left = outcome.cleanup.get("netns_left", [])
    if left:
        print(
            f"network namespaces of this run were left behind: {', '.join(left)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
