"""`edgenode why KIND/NAME`: what stops an object from running, the cause first.

It looks, in this order, at what would explain the most: a refused apply (an unconfirmed
insecure setting, an invalid manifest), where the pod is placed, the last workflow's failing
step and its error (an unknown image, a command missing from the image, a user step's veto),
then each container that is not running (crash loop and backoff, exit code), with the last
lines of its log; a line ``Operation not permitted`` in them points at the seccomp filter;
then each running container that is not ready, naming its check, how often it failed in a
row and its last error. A run that failed only at ``health.wait`` applied its change, so it is
told after what the pod's containers say now (it may have become ready since).
The first line always says the verdict.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sandbox._oci import DENIED_SYSCALLS

if TYPE_CHECKING:
    from edgenode.daemon import Daemon

LOG_LINES = 5
NOT_FOUND = 127
"""The exit code of a command that could not be found or executed (the init says why)."""
EPERM_TEXT = ("Operation not permitted", "operation not permitted", "EPERM")


def explain(d: Daemon, kind: str, name: str) -> list[str]:
    ref = f"{kind}/{name}"
    lines: list[str] = []
    refusal = d.state.refusals.get(ref)
    doc = d.store.get(kind, name)
    if doc is None:
        if refusal is not None:
            return [f"{ref} was not applied: {refusal.message}"]
        return [f"{ref} does not exist on this node (see: edgenode get {kind.lower()}s)"]
    if refusal is not None:
        lines.append(f"{ref}: the last apply was refused: {refusal.message}")
    if kind != "Pod":
        revision = doc["metadata"]["revision"]
        return lines or [f"{ref} is at revision {revision}; nothing runs for a {kind} here"]

    assigned = (doc.get("assignment") or {}).get("node")
    unplaceable = d.placement.unparsable.get(name)
    if unplaceable is not None:
        lines.append(f"{ref} cannot be placed: its stored spec is not a valid pod: {unplaceable}")
    wait = d.placement.waiting(name)
    if wait is not None:
        verdict = f"{ref} waits for a node: {wait.message}"
        if assigned is not None:
            verdict = f"{ref} is assigned to node {assigned}, not running now: {wait.message}"
        return [*lines, verdict, *(f"  {n}: {why}" for n, why in wait.nodes.items())]
    if assigned is None:
        return lines or [f"{ref} has no node yet: placement decides at the next round"]
    if assigned != d.name:
        return [*lines, f"{ref} is assigned to node {assigned}, not this node ({d.name})"]

    record = d.flows.recorder.latest(ref)
    waited = None
    if record is not None and d.flows.applied(record):
        waited = (
            f"its {record.workflow} run {record.run_id} stopped waiting at step "
            f"{record.failed_step}: {record.error}"
        )
    elif record is not None and record.outcome == "failed":
        lines.insert(
            0,
            f"{ref}: {record.workflow} failed at step {record.failed_step}: {record.error}",
        )
    if name not in d.sandbox.pods():
        if not lines:
            lines.append(f"{ref} is not created on this node yet (its start is pending)")
        return lines

    state = d.sandbox.state(name)
    waiting = d.state.waiting.get(name, {})
    problems = []
    for cname, c in sorted(state.containers.items()):
        if c.state == "running":
            continue
        w = waiting.get(cname)
        if w is not None:
            problems.append(f"container {cname}: {w.message}")
        elif c.state in ("exited", "stopped"):
            problems.append(f"container {cname}: {c.state} with exit code {c.exit_code}")
        else:
            problems.append(f"container {cname}: {c.state}")
        if c.message and (w is None or c.message not in w.message):
            problems.append(f"  {c.message}")
        said = [x.text for x in d.sandbox.logs(name, cname, tail=LOG_LINES)]
        if c.exit_code == NOT_FOUND:
            command = _command(d, name, cname)
            problems.append(
                f"  command not found in the image: {command!r} (exit code 127); check "
                "command and args against the image's files (edgenode image ls)"
            )
        if said:
            problems.append(f"  its last output: {' | '.join(said)}")
        if any(t in line for line in said for t in EPERM_TEXT):
            problems.append(
                "  an action was refused with EPERM: the sandbox's seccomp filter denies "
                f"{', '.join(DENIED_SYSCALLS[:8])} ... (docs/sandbox.md); if the container must "
                "do it, ask for securityContext.seccomp: unconfined and acknowledge "
                "unconfined-seccomp"
            )
    unready = [
        f"container {cname}: not ready: {where}"
        for cname, where in d.probes.explain(name, state.containers).items()
    ]
    tail = [waited] if waited else []
    if problems:
        if not lines:
            lines.append(f"{ref} is not running: {problems[0].strip()}")
            problems = problems[1:]
        return [*lines, *problems, *unready, *tail]
    if unready:
        if not lines:
            lines.append(f"{ref} is running but not ready: {unready[0]}")
            unready = unready[1:]
        return [*lines, *unready, *tail]
    applied = d.sandbox.meta(name).get("revision")
    since = min((c.started_at or 0 for c in state.containers.values()), default=0)
    ago = f", for {time.time() - since:.0f} s" if since else ""
    n = len(state.containers)
    running = f"{ref} is running and ready: {n}/{n} containers"
    lines.append(f"{running}, revision {applied} applied{ago}")
    if waited:
        lines.append(f"it became ready after {waited}")
    return lines


def _command(d: Daemon, pod: str, container: str) -> str:
    c = d.sandbox.definition(pod).containers[container]
    words = [*(c.command or ()), *(c.args or ())]
    return words[0] if words else "the image's entrypoint"
