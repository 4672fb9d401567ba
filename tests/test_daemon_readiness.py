"""Readiness end to end: a real daemon probes busybox containers under runc (exec, http, tcp),
publishes each turn of readiness in the pod's status, and says why a pod is not ready.

Each container waits for the test to change it from outside (`runc exec`, as the container's
own user): create the file an exec check tests, start or stop a server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemonkit import Node, running_node, wait_for

from sandbox.images import ImageStore
from sandbox.pods import Sandbox

IDLE = "trap 'exit 0' TERM; mkdir -p /tmp/www; sleep 1000 & wait"


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with running_node("probe-node") as n:
        yield n


def apply(node: Node, name: str, container: str, readiness: str, *, ports: str = "") -> None:
    text = f"""\
    kind: Pod
    metadata: {{name: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        {container}:
          image: busybox
          command: [sh, -c, "{IDLE}"]
          {ports}
          readiness: {readiness}
    """
    path = node.root / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    node.ok("apply", "-f", str(path))


def status(node: Node, pod: str) -> dict[str, Any]:
    out = node.cli("get", "pod", pod, "-o", "json")
    if out.returncode != 0:
        return {}
    found: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return found


def status_when(node: Node, pod: str, *, ready: bool, message: str = "") -> dict[str, Any]:
    """The pod's status once it is running with `ready`, its message containing `message`."""
    seen: dict[str, Any] = {}

    def settled() -> bool:
        nonlocal seen
        seen = status(node, pod)
        return (
            seen.get("phase") == "Running"
            and seen.get("ready") is ready
            and message in (seen.get("message") or "")
        )

    try:
        wait_for(settled, timeout=20, what=f"pod {pod} ready={ready} saying {message!r}")
    except AssertionError:
        raise AssertionError(f"last status: {seen}") from None
    return seen


def in_container(node: Node, pod: str, container: str, script: str) -> str:
    """Run `script` in the container as the node's checks do (its own user and sandbox)."""
    sandbox = Sandbox(node.state_dir, ImageStore(node.state_dir / "images"))
    argv, pid_file = sandbox.exec_argv(pod, container, ["sh", "-c", script])
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    finally:
        pid_file.unlink(missing_ok=True)
    return done.stdout


def failures(line: str) -> int:
    found = re.search(r"failed (\d+) times? in a row", line)
    return int(found[1]) if found else 0


def why(node: Node, pod: str) -> list[str]:
    return node.ok("why", f"pod/{pod}").splitlines()


def test_exec_readiness_turns_ready_when_the_check_passes_and_back_when_it_fails(
    node: Node,
) -> None:
    check = "{exec: {command: [test, -f, /tmp/ready]}, period: 1s, failureThreshold: 1}"
    apply(node, "by-exec", "main", check)
    first = status_when(node, "by-exec", ready=False, message="main: not ready:")
    assert first["message"] == "main: not ready: exec test -f /tmp/ready: exited with code 1"
    assert first["containers"]["main"] == {"state": "running", "restarts": 0, "ready": False}
    in_container(node, "by-exec", "main", "touch /tmp/ready")
    ready = status_when(node, "by-exec", ready=True)
    assert ready["containers"]["main"]["ready"] is True and "message" not in ready
    assert "1/1" in node.ok("get", "pods")
    in_container(node, "by-exec", "main", "rm /tmp/ready")
    status_when(node, "by-exec", ready=False, message="exec test -f /tmp/ready: exited with")
    # Each turn is a change of the node's, in the pod's history.
    history = json.loads(node.ok("history", "pod/by-exec", "-o", "json"))
    turns = [r for r in history if "status.ready" in r["fields"]]
    assert len(turns) >= 2 and {r["manager"] for r in turns} == {f"node:{node.name}"}
    node.ok("delete", "pod/by-exec")


def test_http_readiness_turns_ready_when_the_server_answers_and_back_when_it_stops(
    node: Node,
) -> None:
    apply(
        node,
        "by-http",
        "web",
        "{http: {path: /healthz, port: http}, period: 1s, failureThreshold: 1}",
        ports="ports: {http: {containerPort: 8080}}",
    )
    refused = "web: not ready: http GET /healthz on port 8080: connection refused"
    assert status_when(node, "by-http", ready=False, message=refused)["message"] == refused
    in_container(node, "by-http", "web", "httpd -p 8080 -h /tmp/www")
    status_when(node, "by-http", ready=False, message="on port 8080: HTTP 404 Not Found")
    in_container(node, "by-http", "web", "touch /tmp/www/healthz")
    assert status_when(node, "by-http", ready=True)["containers"]["web"]["ready"] is True
    in_container(node, "by-http", "web", "killall httpd")
    status_when(node, "by-http", ready=False, message=refused)
    node.ok("delete", "pod/by-http")


def test_tcp_readiness_follows_a_listener(node: Node) -> None:
    apply(node, "by-tcp", "db", "{tcp: {port: 9000}, period: 1s, failureThreshold: 1}")
    status_when(node, "by-tcp", ready=False, message="tcp connect to port 9000: connection refused")
    in_container(node, "by-tcp", "db", "nc -ll -p 9000 -e true </dev/null >/dev/null 2>&1 &")
    status_when(node, "by-tcp", ready=True)
    in_container(node, "by-tcp", "db", "killall nc")
    status_when(node, "by-tcp", ready=False, message="tcp connect to port 9000: connection refused")
    node.ok("delete", "pod/by-tcp")


def test_why_names_the_failing_check_its_count_and_last_error(node: Node) -> None:
    check = "{exec: {command: [test, -f, /tmp/ready]}, period: 1s, failureThreshold: 2}"
    apply(node, "unready", "main", check)
    # Failing the same way again and again, it says so once (no status write per check).
    same = "main: not ready: exec test -f /tmp/ready: exited with code 1"
    assert status_when(node, "unready", ready=False, message=same)["message"] == same
    wait_for(lambda: failures(why(node, "unready")[0]) >= 3, what="three failures")
    assert status(node, "unready")["message"] == same
    lines = why(node, "unready")
    assert lines[0].startswith(
        "Pod/unready is running but not ready: container main: not ready: exec test -f "
        "/tmp/ready failed "
    ), lines
    assert "times in a row, the last " in lines[0] and ": exited with code 1;" in lines[0]
    assert any(
        line.startswith("its pod.start run ")
        and "stopped waiting at step health.wait: main: "
        "not ready: exec test -f /tmp/ready: exited with code 1 (2 failures in a row)"
        in line
        for line in lines
    ), lines
    text = node.ok("workflow", "pod/unready")
    assert "✗ health.wait: main: not ready: exec test -f /tmp/ready" in text
    assert "- status.publish skipped" in text


def test_a_pod_that_is_not_ready_keeps_running_and_its_start_is_not_retried(node: Node) -> None:
    status_when(node, "unready", ready=False)
    run = node.ok("workflow", "pod/unready").splitlines()[0]
    pid = json.loads(
        (node.state_dir / "pods" / "unready" / "containers" / "main" / "status.json").read_text()
    )["pid"]
    time.sleep(3)  # longer than the daemon's first retry of a failed workflow (1 s)
    assert node.ok("workflow", "pod/unready").splitlines()[0] == run
    now = json.loads(
        (node.state_dir / "pods" / "unready" / "containers" / "main" / "status.json").read_text()
    )["pid"]
    assert now == pid
    in_container(node, "unready", "main", "touch /tmp/ready")
    status_when(node, "unready", ready=True)
    lines = why(node, "unready")
    assert lines[0].startswith("Pod/unready is running and ready: 1/1 containers")
    assert lines[1].startswith("it became ready after its pod.start run ")


def test_an_update_in_place_probes_the_new_run_afresh(node: Node) -> None:
    status_when(node, "unready", ready=True)
    node.ok("set", "pod/unready", "spec.containers.main.env.EDITED=again")
    # The container starts again with a fresh /tmp: not ready until the file is back.
    status_when(node, "unready", ready=False, message="main: not ready: exec test -f")
    text = node.ok("workflow", "pod/unready")
    assert text.startswith("pod.update Pod/unready") and "✗ health.wait" in text
    in_container(node, "unready", "main", "touch /tmp/ready")
    status_when(node, "unready", ready=True)


def test_a_restarted_daemon_keeps_its_ready_pods_ready(node: Node) -> None:
    status_when(node, "unready", ready=True)
    revision = node.get("pod/unready")["metadata"]["revision"]
    node.stop(signal.SIGTERM)
    node.start()
    wait_for(lambda: '"event": "probing_started"' in node.log(), what="probing again")
    time.sleep(2)  # two periods: a flap would have been written by now
    history = json.loads(node.ok("history", "pod/unready", "-o", "json"))
    later = [r for r in history if r["revision"] > revision and "status.ready" in r["fields"]]
    assert later == [] and status(node, "unready")["ready"] is True
    node.ok("delete", "pod/unready")


def test_an_exec_check_that_outlasts_its_timeout_fails_and_is_killed(node: Node) -> None:
    check = "{exec: {command: [sleep, '7']}, period: 1s, timeout: 1s, failureThreshold: 1}"
    apply(node, "slow-check", "main", check)
    status_when(node, "slow-check", ready=False, message="exec sleep 7: no answer within 1s")
    ps = in_container(node, "slow-check", "main", "ps -o args")
    # At most the check now in flight; none left over from earlier periods.
    assert ps.count("sleep 7") <= 1, ps
    node.ok("delete", "pod/slow-check")


def test_a_container_without_readiness_is_ready_once_it_runs(node: Node) -> None:
    text = """\
    kind: Pod
    metadata: {name: plain}
    spec:
      containers:
        main: {image: busybox, command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]}
    """
    path = node.root / "plain.yaml"
    path.write_text(textwrap.dedent(text))
    node.ok("apply", "-f", str(path))
    found = status_when(node, "plain", ready=True)
    assert found["containers"]["main"]["ready"] is True
    assert node.ok("workflow", "pod/plain").count("✓ health.wait") == 1
    node.ok("delete", "pod/plain")
