"""The mesh for real: one daemon process per node, each in its own network namespace, on a
lab bridge; nodes find each other with nothing but the cluster credential (mDNS, neighbours).

One 5-node lab serves the module (bringing one up costs seconds); each test leaves it healed
and with every daemon running, so the next starts from a whole mesh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import wait_for
from labkit import apply, call, named_lab

from edgenode.client import Connection
from edgenode.lab import NETNS_DIR, Lab, edgenode_argv

NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with named_lab("m") as lab:
        lab.up(len(NODES))
        yield lab


def alive_seen_by(lab: Lab, node: str) -> set[str]:
    return {r["name"] for r in call(lab, node, "nodes") if str(r["state"]).startswith("alive")}


def all_see_all(lab: Lab, nodes: list[str]) -> Callable[[], bool]:
    return lambda: all(alive_seen_by(lab, n) >= set(nodes) for n in nodes)


def converged(lab: Lab, nodes: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        states = [call(lab, n, "mesh", digest=True) for n in nodes]
        vv = [s["versionVector"] for s in states]
        digests = {s["stateDigest"] for s in states}
        return all(v == vv[0] for v in vv) and len(digests) == 1

    return check


def manifest(names: list[str], *, replicas: int = 0) -> str:
    """PinnedDeployments named `names`; with no replicas (the default) nothing runs for them."""
    doc = (
        "apiVersion: edgenode/v1\nkind: PinnedDeployment\nmetadata: {{name: {name}}}\n"
        "spec:\n  versions:\n    v1:\n      replicas: {replicas}\n      template:\n"
        "        spec:\n          containers:\n"
        '            c: {{image: "busybox:latest", command: ["sleep", "3600"]}}\n'
    )
    return "---\n".join(doc.format(name=n, replicas=replicas) for n in names)


def get(lab: Lab, node: str, name: str) -> dict[str, Any] | None:
    out = lab.cli(node, "get", "pinneddeployment", name, "-o", "json")
    if out.returncode != 0:
        return None
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_five_nodes_form_a_mesh_with_only_the_cluster_credential(lab: Lab) -> None:
    # No seeds, no addresses: each daemon was started with its credential alone.
    assert not any(a.startswith("--seed") for a in lab.extra_daemon_args())
    wait_for(all_see_all(lab, NODES), timeout=30, what="every node to see all five alive")
    # Any verb reaches a lab node, the options before the verb or after it.
    env = {k: v for k, v in os.environ.items() if k not in ("EDGENODE_SOCKET", "EDGENODE_NODE")}
    out = subprocess.run(
        [*edgenode_argv(), "--lab", lab.name, "--node", "n3", "nodes"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split()[:2] == ["NAME", "STATE"]
    assert sorted(r.split()[0] for r in rows[1:]) == NODES
    assert all("alive" in r for r in rows[1:])


def test_a_change_applied_on_one_node_is_visible_on_every_node(lab: Lab) -> None:
    wait_for(all_see_all(lab, NODES), timeout=30, what="the mesh")
    apply(lab, "n1", manifest(["visible"]))
    wait_for(
        lambda: all(get(lab, n, "visible") is not None for n in NODES),
        timeout=10,
        what="the change on every node",
    )
    # Every read verb answers from any node: history and describe on a node that did not apply.
    history = lab.cli("n4", "history", "pinneddeployment/visible")
    assert history.returncode == 0 and "admin-n1" in history.stdout, history
    described = lab.cli("n5", "describe", "pinneddeployment/visible")
    assert described.returncode == 0 and "visible" in described.stdout, described


POD = """apiVersion: edgenode/v1
kind: Pod
metadata: {name: greeter}
spec:
  node: n1
  containers:
    main:
      image: busybox
      command: ["sh", "-c", "echo hello from the pod; exec sleep 3600"]
"""


def untimed(text: str) -> str:
    return re.sub(r"for \d+ s\b", "for N s", text)


def test_node_local_read_verbs_answer_from_any_node_by_asking_the_pods_node(lab: Lab) -> None:
    wait_for(all_see_all(lab, NODES), timeout=30, what="the mesh")
    apply(lab, "n4", POD)  # written on n4, pinned to n1: it runs there
    wait_for(
        lambda: "hello from the pod" in lab.cli("n1", "logs", "pod/greeter").stdout,
        timeout=60,
        what="the pod's output on n1",
    )
    logs = lab.cli("n4", "logs", "pod/greeter")
    assert logs.returncode == 0 and "hello from the pod" in logs.stdout, logs
    workflow = lab.cli("n4", "workflow", "pod/greeter")
    assert workflow.returncode == 0 and "pod.start Pod/greeter" in workflow.stdout, workflow
    # n5 relays n1's own explanation (the running time in it may tick between the two asks).
    why = lab.cli("n5", "why", "pod/greeter")
    here = lab.cli("n1", "why", "pod/greeter")
    assert why.returncode == 0 and "is running" in why.stdout, why
    assert untimed(why.stdout) == untimed(here.stdout)
    follow = lab.cli("n4", "logs", "-f", "pod/greeter")
    assert follow.returncode == 2 and "runs on node n1" in follow.stderr, follow
    assert lab.cli("n1", "delete", "pod/greeter").returncode == 0


def test_a_partition_with_writes_on_both_sides_heals_to_identical_state(lab: Lab) -> None:
    wait_for(all_see_all(lab, NODES), timeout=30, what="the mesh")
    apply(lab, "n1", manifest(["contested"]))
    wait_for(converged(lab, NODES), timeout=15, what="convergence before the partition")
    lab.partition([["n1", "n2"], ["n3", "n4", "n5"]])
    try:
        apply(lab, "n1", manifest(["left-side"]))
        apply(lab, "n4", manifest(["right-side"]))
        # Both sides edit the same object while they cannot hear each other.
        apply(lab, "n2", manifest(["contested"], replicas=2))
        apply(lab, "n5", manifest(["contested"], replicas=3))
        wait_for(lambda: get(lab, "n2", "left-side") is not None, timeout=10, what="left side")
        wait_for(lambda: get(lab, "n3", "right-side") is not None, timeout=10, what="right side")
        assert get(lab, "n1", "right-side") is None
        assert get(lab, "n5", "left-side") is None
    finally:
        lab.heal()
    wait_for(converged(lab, NODES), timeout=60, what="identical state on all five after heal")
    for node in NODES:
        assert get(lab, node, "left-side") is not None
        assert get(lab, node, "right-side") is not None
    replicas = {
        n: (get(lab, n, "contested") or {})["spec"]["versions"]["v1"]["replicas"] for n in NODES
    }
    assert len(set(replicas.values())) == 1 and replicas["n1"] in (2, 3), replicas
    history = lab.cli("n3", "history", "pinneddeployment/contested", "-o", "json")
    assert history.returncode == 0, history.stderr
    assert any(r.get("conflicts") or r.get("overwritten") for r in json.loads(history.stdout))


def test_a_node_offline_while_10000_changes_happen_catches_up_receiving_only_the_delta(
    lab: Lab,
) -> None:
    wait_for(all_see_all(lab, NODES), timeout=30, what="the mesh")
    apply(lab, "n2", manifest([f"before-{i}" for i in range(1000)]))
    wait_for(converged(lab, NODES), timeout=60, what="convergence before n5 goes away")
    lab.kill("n5")
    apply(lab, "n1", manifest([f"while-away-{i}" for i in range(10_000)]))
    others = NODES[:4]
    wait_for(converged(lab, others), timeout=120, what="the 10,000 changes on n1-n4")
    lab.start("n5")
    started = time.monotonic()
    wait_for(converged(lab, NODES), timeout=120, what="n5 to catch up")
    took = time.monotonic() - started
    state = call(lab, "n5", "mesh")
    applied = state["applied"]
    received = state["dissemination"]["bytes_received"]
    # Only the delta: the 10,000 changes it missed (and the few the mesh made meanwhile),
    # not the 1,000 it held already; bytes within 1.3x the envelopes it applied.
    assert 10_000 <= applied["changes"] < 10_500, applied
    assert received <= 1.3 * applied["bytes"], (received, applied, state["dissemination"])
    print(f"catch-up: {applied['changes']} changes, {received} bytes, {took:.1f} s")


def test_a_peer_with_another_clusters_credentials_is_refused(lab: Lab) -> None:
    wait_for(all_see_all(lab, NODES), timeout=30, what="the mesh")
    root = Path(tempfile.mkdtemp(prefix="edgenode-foreign-"))
    root.chmod(0o755)  # pods run as unprivileged ids: the state directory must be reachable
    state, sock, logf = root / "state", str(root / "foreign.sock"), root / "foreign.log"
    init = subprocess.run(
        [*edgenode_argv(), "init", "--state-dir", str(state), "--name", "intruder"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    ula, _ = lab.address("n1")
    with open(logf, "wb") as log:
        intruder = subprocess.Popen(
            [
                "nsenter",
                f"--net={NETNS_DIR / lab.netns('n5')}",
                "--",
                *edgenode_argv(),
                "up",
                "--state-dir",
                str(state),
                "--socket",
                sock,
                "--listen-port",
                "7950",
                "--seed",
                f"[{ula}]:7946",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        wait_for(
            lambda: (
                "peer_refused" in lab.log_path("n1").read_text(errors="replace")
                and "intruder" in lab.log_path("n1").read_text(errors="replace")
            ),
            timeout=30,
            what="n1 to refuse the intruder",
        )
        refusals = [
            json.loads(line)
            for line in lab.log_path("n1").read_text(errors="replace").splitlines()
            if '"peer_refused"' in line and "intruder" in line
        ]
        assert refusals and "cluster" in refusals[0]["reason"], refusals
        time.sleep(2)  # what it could have achieved meanwhile
        for node in NODES:
            assert "intruder" not in {r["name"] for r in call(lab, node, "nodes")}
        with Connection(sock) as conn:
            assert {r["name"] for r in conn.call("nodes")} == {"intruder"}
    finally:
        intruder.terminate()
        intruder.wait(30)
        shutil.rmtree(root, ignore_errors=True)
