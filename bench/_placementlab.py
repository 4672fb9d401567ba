"""The real-lab figures of bench/placement.py: how fast a lost node is noticed and replaced.

A lab of N nodes (one daemon per network namespace, default membership timers) runs one
``reschedule`` pod (``lostAfter: LOST_AFTER_S``) per sample. Each sample kills the daemon of the
node the pod runs on (SIGKILL: a crash), then reads what happened from the daemons' own
records, so polling adds nothing to the figures:

- ``detect_dead_s``: from the kill to the first ``member_dead`` event of the victim in a
  survivor's log (the mesh has declared it dead; the declaration then spreads). Also
  ``detect_dead_all_s``: until the last survivor holds it dead. Reference
  ``leave_seen_s``: the same, for a clean stop (SIGTERM: the daemon announces it leaves), on the
  same lab: what the mesh needs to tell the others when nothing has to be detected.
- ``replacement_start_s``: from the moment the taker's ``lostAfter`` expires (its own
  ``member_dead`` event plus ``lostAfter``) to the replacement's container start (the
  ``started_at`` its monitor records as it launches the container). Reference
  ``pod_start_s``: from an apply of a new pod to its container start on whatever node places
  it, on the same lab.

The victim is started again after each sample and the next waits until every node sees every
other alive.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._report import Report
from edgenode._protocol import ApiError
from edgenode.client import Connection
from edgenode.lab import Lab

LOST_AFTER_S = 2
POD = """apiVersion: edgenode/v1
kind: Pod
metadata: {{name: {name}}}
spec:
  onNodeLoss: {{policy: reschedule, lostAfter: {lost}s}}
  terminationGracePeriodSeconds: 0
  containers:
    main: {{image: busybox, command: ["sh", "-c", "exec sleep 3600"]}}
"""


def _call(lab: Lab, node: str, verb: str, **args: Any) -> Any:
    with Connection(lab.socket(node)) as conn:
        return conn.call(verb, **args)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _all_alive(lab: Lab, nodes: list[str]) -> bool:
    try:
        views = [_call(lab, n, "nodes") for n in nodes]
    except (ApiError, OSError):
        return False
    return all(
        len(v) == len(nodes) and all(str(r["state"]).startswith("alive") for r in v) for v in views
    )


def _apply(lab: Lab, node: str, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        out = lab.cli(node, "apply", "-f", f.name, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"apply on {node}: {out.stderr}")
    finally:
        os.unlink(f.name)


def _started_at(lab: Lab, node: str, pod: str) -> float | None:
    """When the pod's container process started on `node` (its monitor's record), or None."""
    path = lab.state_dir(node) / "pods" / pod / "containers" / "main" / "status.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    at = raw.get("started_at")
    return float(at) if raw.get("state") == "running" and isinstance(at, int | float) else None


def _assigned(lab: Lab, viewer: str, pod: str) -> str | None:
    try:
        [doc] = _call(lab, viewer, "get", kind="pod", name=pod)
    except (ApiError, ValueError):
        return None
    node = (doc.get("assignment") or {}).get("node")
    return str(node) if node else None


def _events(log: Path, event: str, node: str, since: float) -> list[float]:
    """Wall-clock times of `event` about `node` in a daemon's log, after `since`."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == event and rec.get("node") == node:
            at = datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00")).timestamp()
            if at >= since:
                out.append(at)
    return out


def _seen(
    lab: Lab, survivors: list[str], event: str, victim: str, since: float
) -> dict[str, float]:
    seen: dict[str, float] = {}
    for n in survivors:
        times = _events(lab.log_path(n), event, victim, since)
        if times:
            seen[n] = min(times)
    return seen


def _one_loss(lab: Lab, nodes: list[str], i: int) -> tuple[float, float, float]:
    """(detect first, detect all, replacement start) of one crash."""
    pod = f"moves-{i}"
    _apply(lab, nodes[0], POD.format(name=pod, lost=LOST_AFTER_S))
    _wait(lambda: any(_started_at(lab, n, pod) for n in nodes), 60, f"{pod} running")
    victim = next(n for n in nodes if _started_at(lab, n, pod))
    survivors = [n for n in nodes if n != victim]
    killed = time.time()
    lab.kill(victim)
    _wait(
        lambda: len(_seen(lab, survivors, "member_dead", victim, killed)) == len(survivors),
        60,
        f"every survivor to hold {victim} dead",
    )
    dead = _seen(lab, survivors, "member_dead", victim, killed)

    def replaced() -> bool:
        taker = _assigned(lab, survivors[0], pod)
        return taker in survivors and _started_at(lab, taker, pod) is not None

    _wait(replaced, 60, f"{pod} replaced")
    taker = _assigned(lab, survivors[0], pod)
    assert taker is not None
    started = _started_at(lab, taker, pod)
    assert started is not None
    lab.start(victim)
    _wait(lambda: _all_alive(lab, nodes), 60, f"{victim} back")
    first = min(dead.values()) - killed
    return first, max(dead.values()) - killed, started - (dead[taker] + LOST_AFTER_S)


def _one_leave(lab: Lab, nodes: list[str]) -> float:
    victim = nodes[-1]
    survivors = nodes[:-1]
    stopped = time.time()
    lab.kill(victim, signal.SIGTERM)
    _wait(
        lambda: len(_seen(lab, survivors, "member_left", victim, stopped)) == len(survivors),
        60,
        f"every survivor to see {victim} leave",
    )
    seen = _seen(lab, survivors, "member_left", victim, stopped)
    lab.start(victim)
    _wait(lambda: _all_alive(lab, nodes), 60, f"{victim} back")
    return max(seen.values()) - stopped


def _one_start(lab: Lab, nodes: list[str], i: int) -> float:
    pod = f"fresh-{i}"
    t0 = time.time()
    _apply(lab, nodes[0], POD.format(name=pod, lost=LOST_AFTER_S))
    found: list[float] = []

    def started() -> bool:
        found[:] = [t for n in nodes if (t := _started_at(lab, n, pod)) is not None]
        return bool(found)

    _wait(started, 60, f"{pod} running")
    return found[0] - t0


def node_loss(report: Report, *, nodes: int, samples: int) -> None:
    lab = Lab(f"pbench{os.getpid() % 10000}")
    lab.down()
    try:
        lab.up(nodes)
        names = lab.nodes()
        _wait(lambda: _all_alive(lab, names), 60, "the mesh")
        losses = [_one_loss(lab, names, i) for i in range(samples)]
        leave = statistics.median(_one_leave(lab, names) for _ in range(max(1, samples // 2)))
        start = statistics.median(_one_start(lab, names, i) for i in range(samples))
    finally:
        lab.down()
    first = statistics.median(x[0] for x in losses)
    every = statistics.median(x[1] for x in losses)
    replace = statistics.median(x[2] for x in losses)
    report.add(
        "detect_dead_s",
        first,
        "s",
        target="≤ 6",
        met=first <= 6,
        reference=("leave_seen_s", leave),
    )
    report.add("detect_dead_all_s", every, "s", reference=("leave_seen_s", leave))
    report.add(
        "replacement_start_s",
        replace,
        "s",
        target="≤ 1",
        met=replace <= 1,
        reference=("pod_start_s", start),
    )
    report.sizes.update(lab_nodes=nodes, lab_samples=samples, lost_after_s=LOST_AFTER_S)


def _copies(lab: Lab, nodes: list[str], pod: str) -> list[str]:
    """The nodes whose sandbox runs `pod` now."""
    return [n for n in nodes if _started_at(lab, n, pod) is not None]


def split_views(report: Report, *, nodes: int) -> None:
    """A partition that leaves a minority cut off past `lostAfter`, then its heal.

    The pods of the minority's nodes keep running there while the majority starts
    replacements: ``split_duplicates`` counts the pods that ran twice. ``split_duplicate_s``
    is how long after the heal the last duplicate ran (the returned nodes stop their copies,
    keep-replacement). Reference ``detect_dead_s`` of the same lab: what a view needs to change
    at all."""
    lab = Lab(f"sbench{os.getpid() % 10000}")
    lab.down()
    try:
        lab.up(nodes)
        names = lab.nodes()
        _wait(lambda: _all_alive(lab, names), 60, "the mesh")
        pods = [f"split-{i}" for i in range(2 * nodes)]
        _apply(lab, names[0], "---\n".join(POD.format(name=p, lost=LOST_AFTER_S) for p in pods))
        _wait(lambda: all(_copies(lab, names, p) for p in pods), 90, "every pod running")
        minority = names[: (nodes - 1) // 2]
        majority = [n for n in names if n not in minority]
        theirs = [p for p in pods if _copies(lab, names, p)[0] in minority]
        cut = time.time()
        lab.partition([minority, majority])
        try:
            _wait(
                lambda: all(any(_started_at(lab, n, p) for n in majority) for p in theirs),
                120,
                "the majority to replace the minority's pods",
            )
            doubled = [p for p in theirs if len(_copies(lab, names, p)) > 1]
            dead = _seen(lab, majority, "member_dead", minority[0], cut) if minority else {}
        finally:
            healed = time.time()
            lab.heal()
        _wait(
            lambda: all(len(_copies(lab, names, p)) == 1 for p in pods),
            120,
            "one copy of every pod after the heal",
        )
        # When each duplicate stopped: the first moment only one copy ran.
        over = time.time() - healed
    finally:
        lab.down()
    detect = min(dead.values()) - cut if dead else float("nan")
    report.add(
        "split_duplicate_s",
        over,
        "s",
        reference=("split_detect_dead_s", detect),
    )
    report.add("split_duplicates", float(len(doubled)), "pods")
    report.sizes.update(split_nodes=nodes, split_pods=len(pods), split_minority=len(minority))
