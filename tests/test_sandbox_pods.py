"""Pods with real runc: lifecycle, exit codes, restart policy, logs, restart in place and
in-place update keeping the pod's sandbox, adoption after a daemon restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from sandboxkit import LocalImages, make_rootfs, require_runc

from sandbox import logs, netns
from sandbox._lifecycle import Backoff
from sandbox._spec import ContainerDef, PodDef
from sandbox.pods import PodNotFoundError, PodState, Sandbox, SandboxError
from sandbox.runtimes import Runtime, RuntimeUnavailableError

FAST = Backoff(initial_s=0.2, max_s=1.0, reset_s=600.0)
IDLE = ("sh", "-c", "trap 'exit 0' TERM; echo started; sleep 1000 & wait")
"""Runs until stopped, and stops at SIGTERM (as pid 1, a shell ignores signals it does not
trap)."""


@pytest.fixture(scope="module")
def images() -> Iterator[LocalImages]:
    require_runc()
    root = Path(tempfile.mkdtemp(prefix="edgenode-test-pods-"))
    try:
        root.chmod(0o755)
        yield LocalImages({"busybox": make_rootfs(root / "busybox")})
    finally:
        shutil.rmtree(root)


@contextmanager
def supervised(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The node's supervision, as the daemon will run it: the restart policy every 50 ms."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(0.05):
            sandbox.supervise()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sandbox
    finally:
        done.set()
        thread.join()


@pytest.fixture
def node(images: LocalImages) -> Iterator[Sandbox]:
    state = Path(tempfile.mkdtemp(prefix="edgenode-test-node-"))
    sandbox = Sandbox(state, images, backoff=FAST)
    try:
        with supervised(sandbox):
            yield sandbox
    finally:
        for name in sandbox.pods():
            sandbox.delete_pod(name, grace_s=0)
        shutil.rmtree(state)


def one(name: str, command: tuple[str, ...], **pod: object) -> PodDef:
    return PodDef(
        name=name,
        containers={"main": ContainerDef(image="busybox", command=command)},
        **pod,  # type: ignore[arg-type]
    )


def wait_for(what: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def log_text(node: Sandbox, pod: str, container: str = "main") -> list[str]:
    return [
        line.text for line in logs.read(node.pods_dir / pod / "containers" / container / "logs")
    ]


def netns_addresses(state: PodState) -> set[str]:
    assert state.netns is not None
    with IPRoute(netns=os.path.basename(state.netns)) as ipr:
        return {a.get("IFA_ADDRESS") for a in ipr.get_addr(family=10)}


def add_address(state: PodState, address: str) -> None:
    assert state.netns is not None
    with IPRoute(netns=os.path.basename(state.netns)) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.addr("add", index=lo, address=address, prefixlen=128)


def test_pod_runs_with_both_streams_logged_and_delete_removes_its_sandbox(node: Sandbox) -> None:
    state = node.run_pod(one("hello", ("sh", "-c", "echo out; echo err >&2; exec sleep 1000")))
    # (sleep as pid 1 ignores SIGTERM: deleted with no grace period below)
    main = state.containers["main"]
    assert main.state == "running" and main.pid is not None and main.image_digest
    assert state.netns is not None and os.path.exists(state.netns)
    assert state.ids is not None and state.ids.base >= 1 << 20
    wait_for(lambda: {"out", "err"} <= set(log_text(node, "hello")))
    streams = {line.text: line.stream for line in node.logs("hello", "main")}
    assert streams == {"out": "stdout", "err": "stderr"}
    status = Path(f"/proc/{main.pid}/status").read_text()
    host_uid = int(next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1])
    assert host_uid == state.ids.base + 1000  # non-root inside, an unprivileged id outside
    node.delete_pod("hello", grace_s=0)
    assert not os.path.exists(state.netns)
    assert "hello" not in node.ids.ranges()
    with pytest.raises(PodNotFoundError, match="pod hello does not exist on this node"):
        node.state("hello")


def test_exit_code_is_kept_and_never_policy_does_not_restart(node: Sandbox) -> None:
    node.run_pod(one("fails", ("sh", "-c", "exit 3"), restart_policy="never"))
    wait_for(lambda: node.state("fails").containers["main"].state == "exited")
    main = node.state("fails").containers["main"]
    assert (main.exit_code, main.restarts, main.pid) == (3, 0, None)


def test_on_failure_restarts_a_failing_container_with_backoff(node: Sandbox) -> None:
    node.run_pod(one("flaky", ("sh", "-c", "echo try; exit 1"), restart_policy="on-failure"))

    def backing_off_after_two_restarts() -> bool:
        main = node.state("flaky").containers["main"]
        return main.restarts >= 2 and main.state == "backoff"

    wait_for(backing_off_after_two_restarts)
    main = node.state("flaky").containers["main"]
    assert main.exit_code == 1 and main.next_start_at is not None
    assert log_text(node, "flaky").count("try") >= 3


def test_on_failure_leaves_a_successful_container_exited(node: Sandbox) -> None:
    node.run_pod(one("done", ("true",), restart_policy="on-failure"))
    wait_for(lambda: node.state("done").containers["main"].state == "exited")
    assert node.state("done").containers["main"].exit_code == 0


def test_stop_sends_sigterm_first(node: Sandbox) -> None:
    script = "trap 'echo bye; exit 7' TERM; echo ready; while true; do sleep 0.1; done"
    node.run_pod(one("polite", ("sh", "-c", script), grace_s=30))
    wait_for(lambda: "ready" in log_text(node, "polite"))
    started = time.monotonic()
    main = node.stop_pod("polite").containers["main"]
    assert (main.state, main.exit_code) == ("stopped", 7)
    assert time.monotonic() - started < 10
    assert "bye" in log_text(node, "polite")


def test_stop_kills_after_the_grace_period(node: Sandbox) -> None:
    # pid 1 ignores SIGTERM unless it handles it: only SIGKILL ends this one.
    node.run_pod(one("stubborn", ("sleep", "1000"), grace_s=30))
    started = time.monotonic()
    main = node.stop_pod("stubborn", grace_s=0.5).containers["main"]
    took = time.monotonic() - started
    assert (main.state, main.exit_code) == ("stopped", 128 + signal.SIGKILL)
    assert 0.5 <= took < 10
    assert node.start_pod("stubborn").containers["main"].state == "running"


def test_kill_delivers_a_signal_and_the_policy_restarts(node: Sandbox) -> None:
    first = node.run_pod(one("victim", IDLE)).containers["main"]
    node.kill("victim", "main", "KILL")
    wait_for(lambda: node.state("victim").containers["main"].restarts == 1)
    wait_for(lambda: node.state("victim").containers["main"].state == "running")
    again = node.state("victim").containers["main"]
    assert again.pid != first.pid and again.exit_code is None


def test_restart_in_place_keeps_network_namespace_address_and_ids(node: Sandbox) -> None:
    before = node.run_pod(one("web", IDLE))
    add_address(before, "fd00:e:1::10")
    after = node.restart_pod("web")
    assert after.containers["main"].pid != before.containers["main"].pid
    assert after.containers["main"].restarts == 1
    assert (after.netns_inode, after.ids) == (before.netns_inode, before.ids)
    assert "fd00:e:1::10" in netns_addresses(after)


def two(web_env: dict[str, str], memory: int = 64 << 20) -> PodDef:
    script = ("sh", "-c", "trap 'exit 0' TERM; echo X=$X; sleep 1000 & wait")
    return PodDef(
        name="duo",
        containers={
            "web": ContainerDef(image="busybox", command=script, env=web_env),
            "side": ContainerDef(image="busybox", command=IDLE, memory_bytes=memory),
        },
    )


def cgroup_value(pid: int, controller: str, name: str) -> str:
    """A cgroup v1 file of the process's cgroup (this node's cgroups are hybrid)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    path = next(x.split(":", 2)[2] for x in lines if x.split(":")[1] == controller)
    return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()


def memory_limit(pid: int) -> int:
    return int(cgroup_value(pid, "memory", "memory.limit_in_bytes"))


def test_memory_cpu_and_pids_limits_are_enforced_by_the_cgroup(node: Sandbox) -> None:
    limited = ContainerDef(
        image="busybox", command=IDLE, memory_bytes=48 << 20, cpu_millis=250, pids=64
    )
    pid = node.run_pod(PodDef(name="limited", containers={"main": limited})).containers["main"].pid
    assert pid is not None
    assert memory_limit(pid) == 48 << 20
    assert cgroup_value(pid, "cpu", "cpu.cfs_quota_us") == "25000"
    assert cgroup_value(pid, "cpu", "cpu.cfs_period_us") == "100000"
    assert cgroup_value(pid, "pids", "pids.max") == "64"


def test_in_place_update_restarts_only_the_changed_container(node: Sandbox) -> None:
    before = node.run_pod(two({"X": "1"}))
    add_address(before, "fd00:e:1::20")
    result = node.update_pod(two({"X": "2"}))
    assert result.actions == {"side": "keep", "web": "recreate"}
    after = result.pod
    assert after.containers["side"].pid == before.containers["side"].pid
    assert after.containers["web"].pid != before.containers["web"].pid
    assert after.netns_inode == before.netns_inode
    assert "fd00:e:1::20" in netns_addresses(after)
    wait_for(lambda: "X=2" in log_text(node, "duo", "web"))
    assert node.definition("duo").containers["web"].env == {"X": "2"}


def test_resource_only_update_is_applied_live(node: Sandbox) -> None:
    before = node.run_pod(two({"X": "1"}))
    side_pid = before.containers["side"].pid
    assert side_pid is not None
    assert memory_limit(side_pid) == 64 << 20
    result = node.update_pod(two({"X": "1"}, memory=96 << 20))
    assert result.actions == {"side": "resize", "web": "keep"}
    assert result.pod.containers["side"].pid == side_pid
    assert memory_limit(side_pid) == 96 << 20
    config = json.loads(
        (node.pods_dir / "duo" / "containers" / "side" / "bundle" / "config.json").read_text()
    )
    assert config["linux"]["resources"]["memory"]["limit"] == 96 << 20


def test_logs_rotate_and_tail_reads_across_files(images: LocalImages) -> None:
    state = Path(tempfile.mkdtemp(prefix="edgenode-test-node-"))
    node = Sandbox(state, images, backoff=FAST, log_max_bytes=4096, log_keep=3)
    try:
        script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; sleep 1000"
        node.run_pod(one("chatty", ("sh", "-c", script)))
        directory = state / "pods" / "chatty" / "containers" / "main" / "logs"
        wait_for(lambda: "line-299" in [x.text for x in logs.read(directory, tail=1)])
        assert len(logs.files(directory)) == 4  # the current file and 3 rotated ones
        assert all(p.stat().st_size < 4096 + 200 for p in logs.files(directory))
        tail = [x.text for x in logs.read(directory, tail=50)]
        assert tail == [f"line-{i}" for i in range(250, 300)]
    finally:
        for name in node.pods():
            node.delete_pod(name, grace_s=0)
        shutil.rmtree(state)


def test_follow_yields_lines_as_they_come_until_the_container_ends(node: Sandbox) -> None:
    script = "for i in 1 2 3 4 5; do echo tick-$i; sleep 0.2; done"
    node.run_pod(one("ticker", ("sh", "-c", script), restart_policy="never"))
    seen = [x.text for x in node.logs("ticker", "main", follow=True)]
    assert seen == [f"tick-{i}" for i in range(1, 6)]


def test_a_new_daemon_adopts_running_pods_and_restarts_lost_ones(
    images: LocalImages,
) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="edgenode-test-node-"))
    node = Sandbox(state_dir, images, backoff=FAST)  # no supervision: the daemon is "down"
    try:
        first = node.run_pod(one("kept", IDLE)).containers["main"]
        # A daemon restart: a new Sandbox over the same state sees the same running container.
        again = Sandbox(state_dir, images, backoff=FAST)
        assert again.state("kept").containers["main"].pid == first.pid
        assert again.adopt() == {}
        # A loss of its monitor and container (as in a reboot): seen, then started again.
        status = json.loads((node.log_dir("kept", "main").parent / "status.json").read_text())
        os.kill(status["monitor_pid"], signal.SIGKILL)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        ns = again.state("kept").netns
        assert ns is not None
        netns.remove(os.path.basename(ns))  # a reboot empties /run/netns too
        wait_for(lambda: again.state("kept").containers["main"].state == "backoff")
        lost = again.state("kept").containers["main"]
        assert lost.message is not None
        assert "monitor ended without reporting an exit" in lost.message
        assert again.adopt() == {"kept": ["main"]}
        back = again.state("kept").containers["main"]
        assert back.state == "running" and back.restarts == 1 and back.pid != first.pid
        assert os.path.exists(ns)  # made again where the pod's bundle names it
    finally:
        for name in node.pods():
            node.delete_pod(name, grace_s=0)
        shutil.rmtree(state_dir)


def test_a_missing_runtime_is_refused_before_anything_is_made(node: Sandbox) -> None:
    runtimes = dict(node.runtimes)
    runtimes["gvisor"] = Runtime("gvisor", None, None, False, "runsc is not installed: ...")
    lacking = Sandbox(node.state_dir, node.images, runtimes=runtimes)
    with pytest.raises(RuntimeUnavailableError, match="runtime class gvisor is unavailable"):
        lacking.create_pod(one("secure", IDLE, runtime_class="gvisor"))
    assert lacking.pods() == [] and lacking.ids.ranges() == {}


def test_a_state_directory_the_pods_cannot_reach_is_refused(
    images: LocalImages, tmp_path: Path
) -> None:
    tmp_path.chmod(0o700)
    with pytest.raises(SandboxError, match="not reachable by the pods' user ids"):
        Sandbox(tmp_path / "state", images)


def test_a_line_longer_than_a_chunk_is_logged_in_pieces_and_read_whole(node: Sandbox) -> None:
    script = "yes x | head -c 300000 | tr -d '\\n'; echo; echo after"
    node.run_pod(one("wide", ("sh", "-c", script), restart_policy="never"))
    wait_for(lambda: node.state("wide").containers["main"].state == "exited")
    raw = (node.log_dir("wide", "main") / "container.log").read_text().splitlines()
    assert [line.split(" ")[2] for line in raw] == ["P", "P", "F", "F"]
    assert log_text(node, "wide") == ["x" * 150000, "after"]
