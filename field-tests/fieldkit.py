"""What every field scenario needs: a lab of its own, event-driven waits that say how long
they took, the mesh's own view of itself, and one JSON line of figures per scenario.

The labs and API calls are tests/labkit.py's (that directory goes on the import path here, so
field tests share one way of running a lab with the rest of the suite). Every wait polls at a
short interval and returns the seconds it took: a figure is the time until the property held,
never the length of a sleep. `report` prints the scenario's figures as one JSON line (shown
by ``pytest -s``) and appends it to the file named by ``EDGENODE_FIELD_REPORT``, if set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from labkit import call, named_lab

from edgenode._protocol import ApiError
from edgenode.lab import Lab

__all__ = [
    "Lab",
    "alive_seen_by",
    "all_see_all",
    "apply_text",
    "call",
    "converged",
    "deployments",
    "get",
    "log_events",
    "named_lab",
    "percentile",
    "pod",
    "report",
    "waited",
]

REPORT_ENV = "EDGENODE_FIELD_REPORT"


def report(scenario: str, **figures: Any) -> dict[str, Any]:
    """Print the scenario's figures as one JSON line; append it to $EDGENODE_FIELD_REPORT."""
    line = json.dumps({"scenario": scenario, **figures}, sort_keys=False)
    print(line)
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    return {"scenario": scenario, **figures}


def waited(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll `check` every `interval` seconds until it holds; the seconds that took. Fails,
    naming `what`, after `timeout` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# -- the mesh as the nodes see it ------------------------------------------------------------


def alive_seen_by(lab: Lab, node: str) -> set[str]:
    """The nodes `node` holds alive (itself included)."""
    return {r["name"] for r in call(lab, node, "nodes") if str(r["state"]).startswith("alive")}


def all_see_all(lab: Lab, nodes: Iterable[str]) -> bool:
    wanted = set(nodes)
    return all(alive_seen_by(lab, n) >= wanted for n in wanted)


def converged(lab: Lab, nodes: Iterable[str]) -> bool:
    """Whether `nodes` hold the same changes (version vectors) and the same folded state.
    The state digest folds every object, so it is asked for only once the vectors agree."""
    wanted = list(nodes)
    vectors = [call(lab, n, "mesh")["versionVector"] for n in wanted]
    if any(v != vectors[0] for v in vectors):
        return False
    states = [call(lab, n, "mesh", digest=True) for n in wanted]
    return all(s["versionVector"] == vectors[0] for s in states) and (
        len({s["stateDigest"] for s in states}) == 1
    )


# -- objects ---------------------------------------------------------------------------------

DEPLOYMENT = (
    "apiVersion: edgenode/v1\nkind: PinnedDeployment\nmetadata: {{name: {name}}}\n"
    "spec:\n  versions:\n    v1:\n      replicas: 0\n      template:\n        spec:\n"
    "          containers:\n"
    '            c: {{image: "busybox:latest", command: ["sleep", "{arg}"]}}\n'
)


def deployments(names: Iterable[str], *, arg: str = "3600") -> str:
    """PinnedDeployments named `names` with no replicas (nothing runs for them), whose one
    container sleeps `arg`: a field to edit."""
    return "---\n".join(DEPLOYMENT.format(name=n, arg=arg) for n in names)


def pod(name: str, **spec: Any) -> str:
    """A Pod manifest (JSON, which is YAML): `spec` fields, and one busybox container that
    sleeps for an hour."""
    sleeper = {"image": "busybox", "command": ["sh", "-c", "exec sleep 3600"]}
    doc = {
        "apiVersion": "edgenode/v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {**spec, "containers": {"main": sleeper}},
    }
    return json.dumps(doc)


def apply_text(lab: Lab, node: str, text: str) -> list[dict[str, Any]]:
    """Apply manifest `text` through node's API, as its local operator; each object's outcome."""
    out: list[dict[str, Any]] = call(lab, node, "apply", files=[{"name": "field", "text": text}])
    return out


def get(lab: Lab, node: str, kind: str, name: str) -> dict[str, Any] | None:
    """The object as `node` holds it; None if it holds none of that name."""
    try:
        [doc] = call(lab, node, "get", kind=kind, name=name)
    except ApiError:
        return None
    return dict(doc)


def log_events(lab: Lab, node: str, event: str) -> list[dict[str, Any]]:
    """The daemon log's JSON lines of `event`, oldest first."""
    found = []
    for line in lab.log_path(node).read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            found.append(entry)
    return found
