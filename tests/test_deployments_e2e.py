"""PinnedDeployments on a real daemon: its pods written from its template, edited in place,
added and removed per version; a rollout in visible steps, paused, resumed and aborted.

One daemon (a lone node), real runc, the real CLI; pods are busybox sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from daemonkit import Node, running_node, wait_for

DEPLOYMENT = """apiVersion: edgenode/v1
kind: PinnedDeployment
metadata: {{name: web}}
spec:
  versions:
    v1:
      replicas: {v1}
      template:
        spec:
          containers:
            main: {{image: busybox, command: ["sh", "-c", "echo {greeting}; exec sleep 3600"]}}
    v2:
      replicas: {v2}
      template:
        spec:
          containers:
            main: {{image: busybox, command: ["sh", "-c", "echo v2; exec sleep 3600"]}}
"""


@pytest.fixture
def node() -> Iterator[Node]:
    with running_node("dep-node") as n:
        yield n


def apply(node: Node, *, v1: int, v2: int, greeting: str = "v1") -> None:
    node.ok("apply", "-f", "-", input=DEPLOYMENT.format(v1=v1, v2=v2, greeting=greeting))


def pods(node: Node) -> dict[str, dict[str, Any]]:
    out = json.loads(node.ok("get", "pods", "-o", "json"))
    return {p["metadata"]["name"]: p for p in out}


def running(node: Node) -> set[str]:
    return {n for n, p in pods(node).items() if (p.get("status") or {}).get("phase") == "Running"}


def counts(node: Node) -> dict[str, int]:
    doc = node.get("pinneddeployment/web")
    return {v: b["replicas"] for v, b in doc["spec"]["versions"].items()}


def test_a_deployments_pods_follow_its_template_and_counts(node: Node) -> None:
    apply(node, v1=2, v2=1)
    wait_for(
        lambda: running(node) == {"web-v1-0", "web-v1-1", "web-v2-0"},
        timeout=60,
        what="the three pods running",
    )
    first = pods(node)["web-v1-0"]
    assert first["metadata"]["labels"]["edgenode.io/version"] == "v1"
    assert first["metadata"]["annotations"]["edgenode.io/owner"] == "pinneddeployment/web"
    # The pods are written as the user, in their history.
    history = json.loads(node.ok("history", "pod/web-v1-0", "-o", "json"))
    assert history[0]["manager"] == "user" and history[0]["created"]

    # A template edit updates that version's pods in place, and only them.
    v2_before = pods(node)["web-v2-0"]["metadata"]["revision"]
    apply(node, v1=2, v2=1, greeting="hello again")
    wait_for(
        lambda: "hello again" in node.cli("logs", "pod/web-v1-1").stdout,
        timeout=60,
        what="web-v1-1 restarted in place with the new command",
    )
    flows = node.ok("workflow", "pod/web-v1-1")
    assert "pod.update" in flows
    assert pods(node)["web-v2-0"]["metadata"]["revision"] == v2_before

    # Counts: v1 down to 1 removes its highest replica only; v2 up adds one.
    apply(node, v1=1, v2=2, greeting="hello again")
    wait_for(
        lambda: set(pods(node)) == {"web-v1-0", "web-v2-0", "web-v2-1"},
        timeout=30,
        what="web-v1-1 gone, web-v2-1 there",
    )
    wait_for(lambda: "web-v2-1" in running(node), timeout=60, what="web-v2-1 running")

    # A deployment's pod is not edited by hand: the deployment would undo it.
    refused = node.cli("set", "pod/web-v1-0", "spec.containers.main.image=busybox:other")
    assert refused.returncode != 0 and "belongs to pinneddeployment/web" in refused.stderr
    assert node.cli("delete", "pod/web-v1-0").returncode != 0

    # The deployment's status counts what runs.
    wait_for(
        lambda: (
            (node.get("pinneddeployment/web").get("status") or {}).get("versions", {})
            == {
                "v1": {"replicas": 1, "running": 1, "ready": 1},
                "v2": {"replicas": 2, "running": 2, "ready": 2},
            }
        ),
        timeout=30,
        what="the deployment's status",
    )
    table = node.ok("get", "pinneddeployments")
    assert "v1 1/1 v2 2/2" in table

    node.ok("delete", "pinneddeployment/web")
    wait_for(lambda: pods(node) == {}, timeout=30, what="its pods deleted with it")


def test_a_rollout_moves_replicas_in_steps_and_an_abort_restores_the_counts(node: Node) -> None:
    apply(node, v1=3, v2=0)
    wait_for(lambda: len(running(node)) == 3, timeout=60, what="three v1 pods")
    out = node.cli("rollout", "web", "--to", "v2", "--step", "2", "--timeout", "120")
    assert out.returncode == 0, out.stderr
    # Every step is an explicit edit of the counts, in the deployment's history.
    assert counts(node) == {"v1": 0, "v2": 3}
    assert "rollout" not in node.get("pinneddeployment/web")["spec"]
    history = json.loads(node.ok("history", "pinneddeployment/web", "-o", "json"))
    steps = [r for r in history if any("replicas" in f for f in r["fields"])]
    assert len(steps) >= 4, steps  # v2 +2, v1 -2, v2 +1, v1 -1
    wait_for(
        lambda: running(node) == {"web-v2-0", "web-v2-1", "web-v2-2"},
        timeout=60,
        what="three v2 pods, no v1",
    )
    assert "every one of 3 replicas runs v2" in out.stdout

    # Back towards v1, paused after its first step, then aborted: the counts come back.
    started = node.cli("rollout", "web", "--to", "v1", "--no-wait")
    assert started.returncode == 0, started.stderr
    node.ok("rollout", "pause", "web")
    status = json.loads(node.ok("rollout", "status", "web", "-o", "json"))
    assert status["rollout"]["paused"] is True and status["rollout"]["to"] == "v1"
    aborted = node.ok("rollout", "abort", "web")
    assert "back to v1 0, v2 3" in aborted
    assert counts(node) == {"v1": 0, "v2": 3}
    final = json.loads(node.ok("rollout", "status", "web", "-o", "json"))
    assert final["rollout"] is None and final["last"]["state"] == "aborted"
    wait_for(
        lambda: running(node) == {"web-v2-0", "web-v2-1", "web-v2-2"},
        timeout=60,
        what="only v2 pods after the abort",
    )


def test_rollout_refusals_name_the_deployment_the_field_and_what_to_do(node: Node) -> None:
    apply(node, v1=1, v2=0)
    unknown = node.cli("rollout", "web", "--to", "v9", "--no-wait")
    assert unknown.returncode == 2
    assert "--to: expected one of its versions (v1, v2), got 'v9'" in unknown.stderr
    missing = node.cli("rollout", "nope", "--to", "v2", "--no-wait")
    assert missing.returncode == 4 and "pinneddeployment/nope does not exist" in missing.stderr
    idle = node.cli("rollout", "pause", "web")
    assert idle.returncode == 2 and "no rollout under way" in idle.stderr
