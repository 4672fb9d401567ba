"""Benchmarks of the pod sandbox with real runc, each figure next to a reference from the same run.

Run ``python bench/sandbox.py`` as root for a table, ``--json`` for one JSON object on stdout,
``--runs N`` for the number of timed starts of each kind (default 20), ``--pods K`` for the
number of idle pods the memory figure averages over (default 5), ``--quick`` for a smoke run
(3 starts of each kind, 2 idle pods: its numbers are not meaningful), ``--dir`` to put the
temporary state somewhere else (every directory above it must be searchable by all users:
containers run with unmapped ids and must reach their root filesystem). Everything it makes is
removed, also after an error, Ctrl-C or SIGTERM: pods, containers, network namespaces, files.

Setup, not timed: a temporary node state directory (mode 0755) holding an image store
(`sandbox.images`) with the busybox image built from the node's busybox-static
(`sandbox.busybox.ensure_busybox`), unpacked once before the first start. Both kinds of start
run the same command in the same root filesystem: ``sh -c "trap 'exit 0' TERM; sleep 1000 &
wait"``, an idle process that stops at SIGTERM, under the image store's small init
(``/.edgenode/init``) when the root filesystem has one, as the sandbox runs it. Starts are
interleaved (raw, edgenode, raw,
edgenode, ...) so both see the same machine, after one untimed start of each kind (warm-up).

Figures (the JSON keys) and their references:

- ``edgenode_start_ms_p50`` / ``_p90``: wall time of ``Sandbox.run_pod`` of a one-container
  pod, from the call until it returns, i.e. until the container's monitor (``monitor.c``)
  reports the container running. That includes everything the sandbox does for a new pod:
  resolving the image (already unpacked), allocating the pod's user-namespace id range (an
  fsynced table), creating its network namespace with loopback up, writing the bundle and
  records, and running the monitor, which runs ``runc run --detach`` and reports back.
  Deleting the pod (``delete_pod(grace_s=0)``) is not timed. Reference
  ``raw_runc_start_ms_p50`` / ``_p90``:
  wall time of ``runc run --detach --bundle B ID`` (stdin, stdout, stderr on /dev/null) from
  invocation until runc returns (the container's process has been started), where B is an
  equivalent bundle written beforehand: the ``config.json`` `sandbox._oci.runtime_config`
  makes for the same container spec (same root filesystem, command and init, environment,
  user, limits, seccomp filter, masked paths, mounts, AppArmor profile if the node has
  AppArmor), with an id range of its own (block 4000 of `sandbox._ids`) and a fresh network
  namespace that runc makes itself (``PodSandbox(netns=None)``). At setup it is compared with
  the config.json the sandbox writes for the same pod (``create_pod``, nothing started) up to
  hostname, id range and network namespace path; if they differ, nothing is measured.
  ``runc delete --force`` afterwards is not timed.
- ``start_ratio``: ``edgenode_start_ms_p50 / raw_runc_start_ms_p50``; target ≤ 1.5.
- ``pod_overhead_kb``: host memory per idle pod beyond its container's own processes, the mean
  over ``--pods`` idle pods running at once: the PSS (proportional set size, from
  ``/proc/PID/smaps_rollup``) of the pod's monitor process, plus the pod's state files (bundle
  config, records, status, logs) if the state directory is on tmpfs or ramfs, where they are
  memory (on a disk they are not counted; ``pod_files_kb`` shows their size). Not counted, as
  not measurable per pod simply: kernel memory of the pod's network namespace (its loopback
  device, routing and netfilter tables, sockets), of the monitor's pipes and of the runtime's
  state directory (which a raw runc container has too), and page cache of the files. PSS
  splits pages shared with other processes (the Python interpreter and libraries, shared by
  every monitor and by this benchmark's own process) among them, so it is what one more pod
  costs on a node already running Python. Reference ``container_pss_kb``: the PSS of the
  container's own processes (its init, ``pid`` in status.json, and all its descendants, from
  ``/proc/PID/task/*/children``), mean per pod.
- ``pod_overhead_private_kb``: the same with the monitor's private memory (``Private_Clean +
  Private_Dirty``) instead of its PSS: what deleting the pod frees for certain. Reference
  ``container_private_kb``: the same of the container's processes.
- ``pod_files_kb``: space of one pod's state files (``st_blocks``), mean per idle pod.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
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
from types import FrameType
from typing import Any

# Run as a script, this file's directory comes first on sys.path, where `import sandbox` would
# find this very file instead of the sandbox package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import structlog  # noqa: E402
from pyroute2 import netns  # noqa: E402
from rich.console import Console  # noqa: E402

from bench._report import Report, describe_machine, percentile, print_table  # noqa: E402
from bench._report import machine as base_machine  # noqa: E402
from sandbox._apparmor import PROFILE_NAME  # noqa: E402
from sandbox._classes import adapt_config, runtime_argv  # noqa: E402
from sandbox._ids import block_range  # noqa: E402
from sandbox._image import INIT_PATH, ResolvedImage, process_args, process_user  # noqa: E402
from sandbox._oci import DEFAULT_PIDS, ContainerSpec, PodSandbox, runtime_config  # noqa: E402
from sandbox._spec import ContainerDef, PodDef  # noqa: E402
from sandbox.busybox import ensure_busybox  # noqa: E402
from sandbox.images import ImageStore  # noqa: E402
from sandbox.netns import NETNS_DIR  # noqa: E402
from sandbox.pods import Sandbox  # noqa: E402
from sandbox.runtimes import cgroup_mode, detect, require  # noqa: E402

log = structlog.get_logger("bench.sandbox")

IMAGE = "busybox"
COMMAND = ("sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")
"""An idle process that stops at SIGTERM (the trap matters when the shell is the container's pid
1, which ignores signals it does not handle: in a root filesystem without the init)."""
CONTAINER = "main"
RAW_BLOCK = 4000
"""The id-range block of the raw runc containers: far above the blocks the sandbox hands out."""
START_TARGET = 1.5
MEMORY_FS = frozenset({"tmpfs", "ramfs"})


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks everything for a smoke run."""

    runs: int = 20
    pods: int = 5


QUICK = Sizes(runs=3, pods=2)


@dataclass(slots=True)
class Node:
    """A temporary node: its state directory, image and runtime, and what it has started."""

    work: Path
    prefix: str
    sandbox: Sandbox
    image: ResolvedImage
    runtime: list[str]
    raw_bundle: Path
    raw_live: set[str] = field(default_factory=set)

    @property
    def netns_prefix(self) -> str:
        return self.sandbox.netns_name(self.prefix)


def pod_def(name: str) -> PodDef:
    return PodDef(name=name, containers={CONTAINER: ContainerDef(image=IMAGE, command=COMMAND)})


def raw_config(sandbox: Sandbox, image: ResolvedImage, hostname: str) -> dict[str, Any]:
    """The config.json the sandbox writes for `pod_def`'s container (the same decisions: init,
    user, limits, AppArmor), with an id range of its own and a network namespace runc makes (see
    the module docstring). `check_equivalent` compares it with one the sandbox wrote."""
    c = pod_def(hostname).containers[CONTAINER]
    args = process_args(c, image)
    if os.path.exists(image.rootfs + INIT_PATH):
        args = [INIT_PATH, "--", *args]
    uid, gid = process_user(c, image)
    spec = ContainerSpec(
        rootfs=str(image.rootfs),
        args=args,
        env=dict(image.config.env),
        cwd=image.config.working_dir or "/",
        uid=uid,
        gid=gid,
        pids=DEFAULT_PIDS,
    )
    pod = PodSandbox(ids=block_range(RAW_BLOCK), netns=None, hostname=hostname)
    config = runtime_config(spec, pod, arch=platform.machine(), own_sysfs=False)
    if sandbox.apparmor:
        config["process"]["apparmorProfile"] = PROFILE_NAME
    return adapt_config("runc", config)


def normalized(config: dict[str, Any]) -> dict[str, Any]:
    """`config` without what differs between pods: hostname, id range, network namespace."""
    out = copy.deepcopy(config)
    out["hostname"] = ""
    linux = out["linux"]
    for key in ("uidMappings", "gidMappings"):
        for m in linux.get(key, []):
            m["hostID"] = 0
    linux["namespaces"] = [{"type": ns["type"]} for ns in linux["namespaces"]]
    return out


def check_equivalent(raw: dict[str, Any], sandbox: Sandbox, name: str) -> None:
    """The raw bundle must be what the sandbox writes for the same pod, up to `normalized`:
    create a pod (nothing runs), read its config.json, delete it."""
    sandbox.create_pod(pod_def(name))
    try:
        path = sandbox.pods_dir / name / "containers" / CONTAINER / "bundle" / "config.json"
        made = normalized(json.loads(path.read_text()))
    finally:
        sandbox.delete_pod(name, grace_s=0)
    ours = normalized(raw)
    if ours != made:
        keys = sorted(k for k in {*ours, *made} if ours.get(k) != made.get(k))
        linux = sorted(
            k
            for k in {*ours["linux"], *made["linux"]}
            if ours["linux"].get(k) != made["linux"].get(k)
        )
        raise SystemExit(
            f"the raw runc bundle is no longer equivalent to the sandbox's: they differ in "
            f"{', '.join(keys)} (linux: {', '.join(linux) or '-'}); make raw_config in "
            f"{__file__} follow sandbox/pods.py, nothing was measured"
        )


def check_searchable(path: Path) -> None:
    """Every directory from / to `path` must be searchable by others (see the docstring)."""
    for d in [path, *path.parents]:
        if not os.stat(d).st_mode & 0o001:
            raise SystemExit(
                f"{d} is not searchable by other users (mode {os.stat(d).st_mode & 0o777:o}); "
                "containers run with unmapped ids and could not reach their root filesystem. "
                "Choose another --dir"
            )


# --- the figures -----------------------------------------------------------------------------


def start_raw(node: Node, cid: str) -> float:
    """Milliseconds `runc run --detach` of the raw bundle takes; the container is deleted."""
    argv = [*node.runtime, "run", "--detach", "--bundle", str(node.raw_bundle), cid]
    node.raw_live.add(cid)
    try:
        t0 = time.perf_counter()
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"runc could not start {cid}: {raw_error(node, argv)}")
    finally:
        delete_raw(node, cid)
    return elapsed * 1e3


def raw_error(node: Node, argv: list[str]) -> str:
    """Run the failed start again, untimed, to show what runc says."""
    again = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    delete_raw(node, argv[-1])
    return again.stderr.strip() or f"exit {again.returncode}, no message"


def delete_raw(node: Node, cid: str) -> None:
    subprocess.run(
        [*node.runtime, "delete", "--force", cid],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    node.raw_live.discard(cid)


def start_pod(node: Node, name: str) -> float:
    """Milliseconds `Sandbox.run_pod` takes; the pod is deleted afterwards."""
    try:
        t0 = time.perf_counter()
        state = node.sandbox.run_pod(pod_def(name))
        elapsed = time.perf_counter() - t0
        check_running(node, name, state.containers[CONTAINER].state)
    finally:
        if (node.sandbox.pods_dir / name / "pod.json").exists():
            node.sandbox.delete_pod(name, grace_s=0)
    return elapsed * 1e3


def check_running(node: Node, name: str, state: str) -> None:
    """A pod that did not start fails the benchmark, with what its runtime said."""
    if state == "running":
        return
    cdir = node.sandbox.pods_dir / name / "containers" / CONTAINER
    said = []
    for path in (cdir / "logs" / "container.log", cdir / "monitor.err"):
        with contextlib.suppress(OSError):
            said += path.read_text(errors="replace").splitlines()[-5:]
    raise RuntimeError(
        f"pod {name}: its container is {state}, not running; the benchmark stops. Its log and "
        f"monitor said: {' | '.join(said) or 'nothing'}"
    )


def bench_start(node: Node, sizes: Sizes, report: Report) -> dict[str, list[float]]:
    start_raw(node, f"{node.prefix}raw-warmup")
    start_pod(node, f"{node.prefix}warmup")
    raw_ms: list[float] = []
    pod_ms: list[float] = []
    gc.collect()
    for i in range(sizes.runs):
        raw_ms.append(start_raw(node, f"{node.prefix}raw-{i}"))
        pod_ms.append(start_pod(node, f"{node.prefix}{i}"))
    samples = {"raw_runc": list(raw_ms), "edgenode": list(pod_ms)}
    raw_ms.sort()
    pod_ms.sort()
    raw50, pod50 = percentile(raw_ms, 0.5), percentile(pod_ms, 0.5)
    report.add("edgenode_start_ms_p50", pod50, "ms", reference=("raw_runc_start_ms_p50", raw50))
    report.add(
        "edgenode_start_ms_p90",
        percentile(pod_ms, 0.9),
        "ms",
        reference=("raw_runc_start_ms_p90", percentile(raw_ms, 0.9)),
    )
    ratio = pod50 / raw50
    report.add("start_ratio", ratio, "×", target=f"≤ {START_TARGET}", met=ratio <= START_TARGET)
    report.sizes["runs"] = sizes.runs
    return samples


@dataclass(frozen=True, slots=True)
class Memory:
    pss_kb: int
    private_kb: int


def memory(pid: int) -> Memory:
    """PSS and private memory of one process, in kB (from smaps_rollup)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return Memory(fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"])


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    out = [pid]
    i = 0
    while i < len(out):
        for task in Path(f"/proc/{out[i]}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                out.extend(int(c) for c in (task / "children").read_text().split())
        i += 1
    return out


def fs_type(path: Path) -> str:
    """The type of the file system holding `path` (its longest mount point prefix)."""
    best, kind = "", "unknown"
    target = str(path.resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mount = left.split()[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


def tree_kb(path: Path) -> float:
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            total += os.lstat(name).st_blocks * 512
    return total / 1024


def bench_memory(node: Node, sizes: Sizes, report: Report) -> None:
    names = [f"{node.prefix}idle-{i}" for i in range(sizes.pods)]
    in_memory = fs_type(node.sandbox.pods_dir) in MEMORY_FS
    monitors: list[Memory] = []
    own: list[Memory] = []
    files: list[float] = []
    try:
        for name in names:
            node.sandbox.run_pod(pod_def(name))
        for name in names:
            cdir = node.sandbox.pods_dir / name / "containers" / CONTAINER
            status = json.loads((cdir / "status.json").read_text())
            check_running(node, name, status["state"])
            monitors.append(memory(int(status["monitor_pid"])))
            procs = [memory(p) for p in descendants(int(status["pid"]))]
            own.append(Memory(sum(m.pss_kb for m in procs), sum(m.private_kb for m in procs)))
            files.append(tree_kb(node.sandbox.pods_dir / name))
    finally:
        for name in names:
            if (node.sandbox.pods_dir / name / "pod.json").exists():
                node.sandbox.delete_pod(name, grace_s=0)
    n = len(names)
    file_kb = sum(files) / n
    extra = file_kb if in_memory else 0.0
    report.add(
        "pod_overhead_kb",
        sum(m.pss_kb for m in monitors) / n + extra,
        "kB",
        reference=("container_pss_kb", sum(m.pss_kb for m in own) / n),
    )
    report.add(
        "pod_overhead_private_kb",
        sum(m.private_kb for m in monitors) / n + extra,
        "kB",
        reference=("container_private_kb", sum(m.private_kb for m in own) / n),
    )
    report.add("pod_files_kb", file_kb, "kB")
    report.sizes["idle_pods"] = n


# --- setup and cleanup -----------------------------------------------------------------------


@contextlib.contextmanager
def temporary_node(where: str | None) -> Iterator[Node]:
    """A node in a fresh directory; everything it started is removed on the way out."""
    work = Path(tempfile.mkdtemp(prefix="edgenode-bench-sandbox-", dir=where))
    owner = os.getpid()
    node: Node | None = None
    try:
        work.chmod(0o755)
        check_searchable(work)
        rt = require("runc", detect())
        assert rt.binary is not None
        state = work / "state"
        images = ImageStore(state / "images")
        ensure_busybox(images)
        image = images.resolve(IMAGE)  # unpacked here, not in the first timed start
        bundle = work / "raw-bundle"
        bundle.mkdir()
        prefix = f"bench-{secrets.token_hex(3)}-"
        sandbox = Sandbox(state, images)
        node = Node(work, prefix, sandbox, image, runtime_argv("runc", rt.binary, None), bundle)
        config = raw_config(sandbox, image, f"{prefix}raw")
        check_equivalent(config, sandbox, f"{prefix}probe")
        (bundle / "config.json").write_text(json.dumps(config, sort_keys=True))
        yield node
    finally:
        if os.getpid() == owner:  # not in a forked copy of this process (see `handle_signals`)
            with signals_ignored():
                if node is not None:
                    clean_up(node)
                shutil.rmtree(work, ignore_errors=True)


def clean_up(node: Node) -> None:
    """Delete every pod and container the benchmark left (after an error or interruption)."""
    sb = node.sandbox
    for name in sb.pods():
        try:
            sb.delete_pod(name, grace_s=0)
        except Exception as exc:
            log.warning("bench_pod_not_deleted", pod=name, error=str(exc))
    # Monitors of pods that never finished being created or started: found by their directory.
    marker = str(sb.pods_dir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        monitor = bool(argv) and b"edgenode-monitor" in argv[0]
        if monitor and any(a.startswith(marker) for a in argv):
            log.warning("bench_monitor_killed", pid=int(proc.name))
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
    listed = subprocess.run(
        [*node.runtime, "list", "--quiet"], capture_output=True, text=True, timeout=30, check=False
    )
    for cid in listed.stdout.split():
        if cid.startswith(node.prefix):
            log.warning("bench_container_deleted", id=cid)
            delete_raw(node, cid)
    for cid in list(node.raw_live):
        delete_raw(node, cid)
    if os.path.isdir(NETNS_DIR):
        for ns in os.listdir(NETNS_DIR):
            if ns.startswith(node.netns_prefix):
                log.warning("bench_netns_removed", netns=ns)
                netns.remove(ns)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Cleanup is not to be cut short by a second Ctrl-C."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def handle_signals(owner: int) -> None:
    """Ctrl-C and SIGTERM unwind through the cleanup, in this process only.

    pyroute2 forks helpers (to create a network namespace, to talk netlink inside one) that
    inherit these handlers and a copy of this process's stack; it stops them with SIGTERM, and
    Ctrl-C reaches them too. There the handler must just exit, or the copy's cleanup would
    delete the live node's pods and files."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


# --- output ----------------------------------------------------------------------------------


def machine(runc_version: str | None) -> dict[str, Any]:
    return {
        **base_machine(),
        "kernel": platform.release(),
        "runc": runc_version or "unknown",
        "cgroups": cgroup_mode(),
    }


def show(report: Report, facts: dict[str, Any], where: str, elapsed: float, *, quick: bool) -> None:
    title = "edgenode sandbox benchmark (real runc)"
    if quick:
        title += " (--quick: too few runs to judge the target)"
    sizes = ", ".join(f"{k}={v:,}" for k, v in report.sizes.items())
    footer = [
        f"machine: {describe_machine(facts)}, {facts['runc']}, cgroups {facts['cgroups']}; "
        f"state under {where}",
        f"sizes: {sizes} (starts interleaved raw, edgenode, after one warm-up of each); "
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
    netns_prefix: str


def run(sizes: Sizes, where: str | None) -> Outcome:
    report = Report()
    with temporary_node(where) as node:
        samples = bench_start(node, sizes, report)
        bench_memory(node, sizes, report)
        return Outcome(
            report, samples, str(node.work.parent), node.prefix, str(node.work), node.netns_prefix
        )


def log_to_stderr() -> None:
    """Warnings (of the image store, of cleanup) on stderr: stdout is for the table or JSON."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="3 runs, 2 idle pods (a smoke run)")
    parser.add_argument("--runs", type=int, help="timed starts of each kind (default 20)")
    parser.add_argument("--pods", type=int, help="idle pods for the memory figure (default 5)")
    parser.add_argument("--dir", help="where to create the temporary state (default: $TMPDIR)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("runs containers with runc: run it as root")
    base = QUICK if args.quick else Sizes()
    sizes = Sizes(
        runs=base.runs if args.runs is None else args.runs,
        pods=base.pods if args.pods is None else args.pods,
    )
    if sizes.runs < 1 or sizes.pods < 1:
        parser.error("--runs and --pods must be at least 1")
    log_to_stderr()
    handle_signals(os.getpid())
    t0 = time.perf_counter()
    try:
        if not args.json:
            with Console(stderr=True).status("running the sandbox benchmark…"):
                outcome = run(sizes, args.dir)
        else:
            outcome = run(sizes, args.dir)
    except KeyboardInterrupt:
        print("interrupted; what the benchmark had made is removed", file=sys.stderr)
        return 130
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
            quick=args.quick,
            seconds=elapsed,
        )
        out["figures"] = report.rows()
        print(json.dumps(out))
    else:
        show(report, facts, outcome.where, elapsed, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
