"""Reboot without network: every daemon and every pod process dies at once, the machines come
back with their links down, and each node runs its pods again on its own.

Three nodes run four pods: one pinned to each node, and one the mesh placed. Then, as a power
loss would: every daemon is SIGKILLed, every pod's monitor and container process is SIGKILLed
and every pod's network namespace is removed (a reboot empties /run/netns). Every node's
bridge port goes down, and the daemons start again. With no peer in sight, each node adopts
its pods (recreating their namespaces) and starts their containers again, each in a new
process. Then the links come back, the mesh forms again and every node holds the same state.

Figures: `answering_s` (the last daemon's start until it answers), `pods_running_s` (the
daemons' start until all four pods run again, each reported by its own node), `rejoin_s`
(links up until all see all alive), `converged_s` (links up until identical state).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from fieldkit import (
    Lab,
    alive_seen_by,
    all_see_all,
    apply_text,
    converged,
    get,
    named_lab,
    pod,
    report,
    waited,
)

NODES = ["n1", "n2", "n3"]
PINNED = {f"boot-{n}": n for n in NODES}


def running_here(lab: Lab, node: str, name: str) -> bool:
    """Whether `node` itself reports pod `name` assigned to it and running."""
    doc: dict[str, Any] = get(lab, node, "pod", name) or {}
    status = doc.get("status") or {}
    assigned = (doc.get("assignment") or {}).get("node")
    return assigned == node and status.get("node") == node and status.get("phase") == "Running"


def run_status(lab: Lab, node: str, name: str) -> dict[str, Any]:
    """The monitor's record of the pod's one container's current run ({} between runs)."""
    path = lab.state_dir(node) / "pods" / name / "containers" / "main" / "status.json"
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return status


def pod_netns(lab: Lab, node: str, name: str) -> str:
    record = json.loads((lab.state_dir(node) / "pods" / name / "pod.json").read_text())
    return str(record["netns"])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def power_loss(lab: Lab, where: dict[str, str]) -> list[int]:
    """What a power loss does to the lab's nodes: every daemon, monitor and container process
    killed, every pod's network namespace gone. The container processes killed."""
    for node in NODES:
        lab.kill(node, signal.SIGKILL)
    killed = []
    for name, node in where.items():
        status = run_status(lab, node, name)
        for pid in (status["monitor_pid"], status["pid"]):
            os.kill(int(pid), signal.SIGKILL)
        killed.append(int(status["pid"]))
        netns = os.path.basename(pod_netns(lab, node, name))
        subprocess.run(["ip", "netns", "delete", netns], check=True, capture_output=True)
    waited(lambda: not any(alive(p) for p in killed), timeout=10, what="the pods' processes gone")
    return killed


def test_after_a_power_loss_every_node_runs_its_pods_again_without_network() -> None:
    with named_lab("fr") as lab:
        lab.up(len(NODES))
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh to form")
        docs = [pod(name, node=node) for name, node in PINNED.items()]
        apply_text(lab, "n1", "\n---\n".join([*docs, pod("boot-placed")]))
        where = dict(PINNED)

        def placed() -> bool:
            found = [n for n in NODES if running_here(lab, n, "boot-placed")]
            where["boot-placed"] = found[0] if found else ""
            return len(found) == 1

        waited(placed, timeout=90, what="the placed pod running")
        waited(
            lambda: all(running_here(lab, n, name) for name, n in where.items()),
            timeout=90,
            what="every pod running",
        )
        before = power_loss(lab, where)
        for node in NODES:
            lab.link(node, up=False)

        starting = time.monotonic()
        for node in NODES:
            lab.start(node)
        answering_s = time.monotonic() - starting

        def running_again() -> bool:
            return all(
                running_here(lab, n, name) and alive(int(run_status(lab, n, name).get("pid") or 0))
                for name, n in where.items()
            )

        waited(running_again, timeout=90, what="every pod running again, links down")
        pods_running_s = time.monotonic() - starting
        after = [int(run_status(lab, n, name)["pid"]) for name, n in where.items()]
        assert not set(after) & set(before), (before, after)  # new processes, all of them
        for name, node in where.items():
            assert os.path.exists(pod_netns(lab, node, name)), name
        for node in NODES:  # no network: each node alone, as far as it knows
            assert alive_seen_by(lab, node) == {node}, node

        lab.heal()
        back = time.monotonic()
        rejoin_s = waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh again")
        waited(lambda: converged(lab, NODES), timeout=60, what="identical state again")
        converged_s = time.monotonic() - back
        assert all(running_here(lab, n, name) for name, n in where.items())
        report(
            "reboot_offline",
            nodes=len(NODES),
            pods=len(where),
            answering_s=round(answering_s, 2),
            pods_running_s=round(pods_running_s, 2),
            rejoin_s=round(rejoin_s, 2),
            converged_s=round(converged_s, 2),
        )
