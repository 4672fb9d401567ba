"""The node end to end: a real daemon (`edgenode up`), the real CLI, runc and the busybox
image. Mutable pods, history, ownership, restart, logs, workflows, autonomy across a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonkit import EDGENODE, Node, running_node, wait_for

POD = """\
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 5
  containers:
    web:
      image: busybox
      command: [sh, -c, "echo hello $GREETING; trap 'exit 0' TERM; sleep 1000 & wait"]
      env: {GREETING: world}
"""


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with running_node() as n:
        yield n


def manifest(node: Node, name: str, text: str) -> str:
    path = node.root / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def phase(node: Node, ref: str) -> str:
    out = node.cli("get", *ref.split("/"), "-o", "json")
    if out.returncode != 0:
        return "absent"
    return str(json.loads(out.stdout).get("status", {}).get("phase", "Pending"))


def running(node: Node, ref: str) -> None:
    wait_for(lambda: phase(node, ref) == "Running", timeout=30, what=f"{ref} running")


def netns_inode(node: Node, pod: str) -> int:
    record = json.loads((node.state_dir / "pods" / pod / "pod.json").read_text())
    return os.stat(record["netns"]).st_ino


def container_pid(node: Node, pod: str, container: str) -> int:
    status = node.state_dir / "pods" / pod / "containers" / container / "status.json"
    return int(json.loads(status.read_text())["pid"])


def test_apply_runs_a_pod_and_applying_again_changes_nothing(node: Node) -> None:
    path = manifest(node, "web", POD)
    assert node.ok("apply", "-f", path) == "Pod/web created (revision 1)\n"
    running(node, "pod/web")
    assert node.ok("apply", "-f", path) == "Pod/web unchanged\n"
    doc = node.get("pod/web")
    assert doc["kind"] == "Pod" and doc["metadata"]["name"] == "web"
    assert isinstance(doc["metadata"]["revision"], int)
    assert doc["status"]["phase"] == "Running" and doc["spec"]["containers"]["web"]
    table = node.ok("get", "pods")
    assert table.splitlines()[0].split()[:3] == ["NAME", "READY", "PHASE"]
    assert "web" in table and "1/1" in table
    wait_for(lambda: "hello world" in node.ok("logs", "pod/web"), what="the pod's output")


def test_set_updates_the_pod_in_place_with_history_diff_and_rollback(node: Node) -> None:
    running(node, "pod/web")
    inode, first_pid = netns_inode(node, "web"), container_pid(node, "web", "web")
    before = node.get("pod/web")["metadata"]["revision"]
    out = node.ok("set", "pod/web", "spec.containers.web.env.GREETING=edge")
    assert out.startswith("Pod/web configured (revision ")
    wait_for(lambda: "hello edge" in node.ok("logs", "pod/web"), what="the new env in effect")
    running(node, "pod/web")
    assert netns_inode(node, "web") == inode  # same pod identity: same network namespace
    assert container_pid(node, "web", "web") != first_pid
    history = json.loads(node.ok("history", "pod/web", "-o", "json"))
    edit = next(r for r in history if "spec.containers.web.env.GREETING" in r["fields"])
    assert set(edit) >= {"revision", "author", "manager", "time", "fields"}
    assert edit["manager"] == "user" and edit["author"] == node.name
    diff = node.ok("diff", "pod/web", str(before))
    assert "~ spec.containers.web.env.GREETING: 'world' -> 'edge'" in diff
    rolled = node.ok("rollback", "pod/web", str(before))
    assert f"rolled back to revision {before} as revision" in rolled
    wait_for(lambda: node.ok("logs", "pod/web", "--tail", "1").strip() == "hello world")
    assert netns_inode(node, "web") == inode


def test_applying_a_changed_command_updates_the_pod_in_place(node: Node) -> None:
    running(node, "pod/web")
    inode = netns_inode(node, "web")
    changed = POD.replace("echo hello $GREETING;", "echo changed $GREETING;")
    out = node.ok("apply", "-f", manifest(node, "web-changed", changed))
    assert out.startswith("Pod/web configured (revision ")
    wait_for(lambda: "changed world" in node.ok("logs", "pod/web"), what="the new command")
    assert netns_inode(node, "web") == inode
    node.ok("apply", "-f", manifest(node, "web", POD))  # and back
    wait_for(lambda: node.ok("logs", "pod/web", "--tail", "1").strip() == "hello world")


def test_logs_follow_streams_until_the_container_ends(node: Node) -> None:
    ticker = """\
    kind: Pod
    metadata: {name: ticker}
    spec:
      restartPolicy: never
      containers:
        main:
          image: busybox
          command: [sh, -c, "for i in 1 2 3; do echo tick-$i; sleep 0.3; done"]
    """
    node.ok("apply", "-f", manifest(node, "ticker", ticker))
    wait_for((node.state_dir / "pods" / "ticker").exists, what="the ticker pod")
    out = node.ok("logs", "pod/ticker", "-f")
    assert out.split() == ["tick-1", "tick-2", "tick-3"]
    assert yaml_phase(node, "pod/ticker") == "Succeeded"
    node.ok("delete", "pod/ticker")


def yaml_phase(node: Node, ref: str) -> str:
    import yaml

    def settled() -> bool:
        doc = yaml.safe_load(node.ok("get", *ref.split("/"), "-o", "yaml"))
        return doc["status"].get("phase") in ("Succeeded", "Failed")

    wait_for(settled, what=f"{ref} finished")
    doc = yaml.safe_load(node.ok("get", *ref.split("/"), "-o", "yaml"))
    return str(doc["status"]["phase"])


def test_images_are_listed_through_the_daemon(node: Node) -> None:
    table = node.ok("image", "ls").splitlines()
    assert table[0].split() == ["NAME", "DIGEST", "SIZE", "CREATED"]
    assert any(line.startswith("busybox:latest") for line in table)
    listed = json.loads(node.ok("image", "ls", "-o", "json"))
    assert any("busybox:latest" in i["names"] for i in listed)
    missing = node.cli("image", "rm", "nosuch:1")
    assert missing.returncode == 4 and "nosuch" in missing.stderr


def test_a_user_writing_status_is_refused_naming_the_owner(node: Node) -> None:
    out = node.cli("set", "pod/web", "status.phase=Failed")
    assert out.returncode == 5, out.stderr
    assert "status" in out.stderr and f"node:{node.name}" in out.stderr


def test_restart_restarts_in_place(node: Node) -> None:
    running(node, "pod/web")
    inode, pid = netns_inode(node, "web"), container_pid(node, "web", "web")
    restarts = node.get("pod/web")["status"]["containers"]["web"]["restarts"]
    assert node.ok("restart", "pod/web").startswith("pod/web restarted")
    assert container_pid(node, "web", "web") != pid and netns_inode(node, "web") == inode
    wait_for(
        lambda: node.get("pod/web")["status"]["containers"]["web"]["restarts"] == restarts + 1,
        what="the restart counted in status",
    )


def test_workflow_draws_the_last_run_as_text_dot_and_mermaid(node: Node) -> None:
    text = node.ok("workflow", "pod/web")
    assert "Pod/web" in text and "critical chain" in text
    assert "✓ containers.restart" in text
    assert "digraph" in node.ok("workflow", "pod/web", "--dot")
    assert node.ok("workflow", "pod/web", "--mermaid").startswith("flowchart")


def test_edit_writes_one_change_through_the_editor(node: Node) -> None:
    editor = node.root / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/GREETING: world/GREETING: edited/' \"$1\"\n")
    editor.chmod(0o755)
    before = node.get("pod/web")["metadata"]["revision"]
    env = {**node.env(), "EDITOR": str(editor)}
    done = subprocess.run(
        [EDGENODE, "edit", "pod/web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Pod/web configured (revision ")
    history = json.loads(node.ok("history", "pod/web", "-o", "json"))
    assert next(r["fields"] for r in history if r["revision"] > before) == [
        "spec.containers.web.env.GREETING"
    ]


def test_delete_stops_the_pod_and_removes_its_sandbox(node: Node) -> None:
    path = manifest(node, "gone", POD.replace("name: web", "name: gone"))
    node.ok("apply", "-f", path)
    running(node, "pod/gone")
    netns = json.loads((node.state_dir / "pods" / "gone" / "pod.json").read_text())["netns"]
    assert node.ok("delete", "pod/gone").startswith("Pod/gone deleted")
    wait_for(lambda: not (node.state_dir / "pods" / "gone").exists(), what="the pod removed")
    assert not os.path.exists(netns)
    assert node.cli("get", "pod", "gone").returncode == 4


def test_the_api_socket_is_roots_alone(node: Node) -> None:
    import stat

    assert stat.S_IMODE(os.stat(node.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(node.socket)).st_mode) == 0o700


def test_a_node_step_from_the_hooks_directory_runs_in_every_pod_start(node: Node) -> None:
    hooks = node.state_dir / "hooks"
    hooks.mkdir(exist_ok=True)
    audit = hooks / "audit.sh"
    audit.write_text(
        '#!/bin/sh\nread ctx\necho "{\\"annotations\\": {\\"audited\\": \\"yes\\"}}"\n'
    )
    audit.chmod(0o755)
    config = hooks / "workflow.yaml"
    config.write_text("steps:\n  audit: {run: audit.sh, after: containers.start}\n")
    try:
        path = manifest(node, "audited", POD.replace("name: web", "name: audited"))
        node.ok("apply", "-f", path)
        running(node, "pod/audited")
        text = node.ok("workflow", "pod/audited")
        assert "✓ node.audit" in text and "audited=yes" in text
    finally:
        config.unlink()
        node.ok("delete", "pod/audited")


def test_sigterm_stops_the_daemon_cleanly_and_pods_keep_running(node: Node) -> None:
    running(node, "pod/web")
    pid = container_pid(node, "web", "web")
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(60) == 0
    node.process = None
    assert '"event": "daemon_stopped"' in node.log()
    assert not os.path.exists(node.socket) and Path(f"/proc/{pid}").exists()
    node.start()
    running(node, "pod/web")
    assert container_pid(node, "web", "web") == pid


def test_shell_completion_is_available() -> None:
    done = subprocess.run(
        [EDGENODE],
        env={**os.environ, "_EDGENODE_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "complete" in done.stdout and "_EDGENODE_COMPLETE" in done.stdout


def test_a_killed_daemon_restarted_without_network_finds_everything(node: Node) -> None:
    running(node, "pod/web")
    pid = container_pid(node, "web", "web")
    history = node.ok("history", "pod/web", "-o", "json")
    runs_before = node.ok("workflow", "pod/web")
    node.stop(signal.SIGKILL)
    # The pod runs on without its daemon ...
    assert Path(f"/proc/{pid}").exists()
    # ... and a new daemon (this node has no network to lose) adopts it, state intact.
    node.start()
    running(node, "pod/web")
    assert container_pid(node, "web", "web") == pid
    assert node.ok("history", "pod/web", "-o", "json") == history
    assert node.ok("workflow", "pod/web") == runs_before
