"""`edgenode demo` (what `make up` runs): nodes with the example workloads, and a tour.

With ``--nodes N`` (N > 1; `make up` asks for 3) it first brings up the lab ``demo``: N node
daemons, each in its own network namespace on one bridge, one cluster (edgenode.lab); waits
until they have found each other and shows the mesh; the rest then talks to node n1, and the
last node shows that it holds the same objects. With one node it starts this machine's node
daemon in the background (unless one already answers on the demo
socket), labels the node as the examples expect, applies `examples/` through the daemon's
API, waits until the pods this node may run are running, shows them, edits one in place
(only its changed container restarts, in the same network namespace), shows its history, a
diff, a rollback and the update's workflow, and says what to try next. Running it again is
safe: unchanged manifests write nothing. `edgenode demo --down` (`make down`) stops the
daemon, removes the pods (they outlive their daemon by design) and the demo's state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from edgenode._protocol import ApiError
from edgenode.client import Connection

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_LABELS = {"example.com/disk": "ssd"}
"""The examples' backup pod asks for an SSD node: the demo node plays one."""
START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 120.0


class DemoError(RuntimeError):
    pass


def _edgenode() -> str:
    """The edgenode command as it was run (make runs .venv/bin/edgenode), else the one
    installed beside this Python."""
    if os.path.basename(sys.argv[0]) == "edgenode":
        return sys.argv[0]
    beside = Path(sys.executable).with_name("edgenode")
    return str(beside) if beside.exists() else "edgenode"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _answers(socket: str) -> bool:
    try:
        with Connection(socket, timeout=5) as conn:
            conn.call("ping")
    except ApiError:
        return False
    return True


def start_daemon(state_dir: Path, socket: str, node: str | None, out: Console) -> None:
    if _answers(socket):
        out.print(f"the node daemon already runs on {socket}")
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir.parent, os.stat(state_dir.parent).st_mode | 0o011)
    log = open(state_dir / "daemon.log", "ab")  # noqa: SIM115 - handed to the daemon
    argv = [_edgenode(), "up", "--state-dir", str(state_dir), "--socket", socket]
    process = subprocess.Popen(
        [*argv, *(["--name", node] if node else [])],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # a daemon: it outlives this command
    )
    log.close()
    (state_dir / "daemon.pid").write_text(f"{process.pid}\n")
    with out.status("starting the node daemon (it builds the busybox image once)..."):
        _wait(
            lambda: (process.poll() is None and _answers(socket)) or process.poll() is not None,
            START_TIMEOUT_S,
            "the daemon",
        )
    if process.poll() is not None:
        tail = (state_dir / "daemon.log").read_text(errors="replace").splitlines()[-5:]
        raise DemoError("the node daemon did not start:\n  " + "\n  ".join(tail))
    out.print(f"node daemon running (pid {process.pid}), logs in {state_dir / 'daemon.log'}")


DEMO_LAB = "demo"
"""The lab `edgenode demo --nodes N` runs (see edgenode.lab): `edgenode --lab demo ...`."""


def start_lab(nodes: int, out: Console, lab_name: str = DEMO_LAB) -> str:
    """Bring up (or find running) the demo's lab of `nodes` nodes; the first node's socket."""
    from edgenode.lab import Lab  # noqa: PLC0415 - namespaces and nftables only here

    lab = Lab(lab_name, progress=lambda line: out.print(f"  {line}"))
    if lab.answering("n1"):
        out.print(f"the demo's lab already runs ({', '.join(lab.nodes())})")
    else:
        with out.status(f"bringing up {nodes} nodes, each in its own network namespace..."):
            lab.up(nodes)
        out.print(f"{nodes} node daemons running in lab {lab_name!r} (edgenode lab status)")
    names = lab.nodes()

    def formed() -> bool:
        for node in names:
            with Connection(lab.socket(node)) as api:
                rows = api.call("nodes")
            if {r["name"] for r in rows if str(r["state"]).startswith("alive")} != set(names):
                return False
        return True

    with out.status("waiting for the nodes to find each other (mDNS, QUIC)..."):
        _wait(formed, START_TIMEOUT_S, "the mesh to form")
    from edgenode.fastcli import table  # noqa: PLC0415
    from edgenode.meshverbs import node_rows  # noqa: PLC0415

    with Connection(lab.socket(names[-1])) as api:
        where = f"--lab {lab_name} --node {names[-1]}"
        out.print(f"\nthe mesh as {names[-1]} sees it (edgenode nodes {where}):")
        out.print(table(node_rows(api.call("nodes"), now=time.time())) + "\n")
    return lab.socket("n1")


def run(
    state_dir: Path,
    *,
    socket: str,
    examples: Path = EXAMPLES,
    node: str | None = None,
    nodes: int = 1,
    lab_name: str = DEMO_LAB,
) -> None:
    out = Console(highlight=False, soft_wrap=True)
    if nodes > 1:
        out.rule(f"[bold]edgenode demo[/]: a mesh of {nodes} nodes, the example workloads")
        socket = start_lab(nodes, out, lab_name)
    else:
        out.rule("[bold]edgenode demo[/]: one node, the example workloads")
        start_daemon(state_dir, socket, node, out)
    with Connection(socket) as api:
        name = api.call("ping")["node"]
        labels = ",".join(f"{k}={v}" for k, v in DEMO_LABELS.items())
        api.call(
            "set",
            ref=f"node/{name}",
            assignments=[
                f"metadata.labels.{k.replace('.', chr(92) + '.')}={v}"
                for k, v in DEMO_LABELS.items()
            ],
        )
        out.print(f"node [bold]{name}[/] labelled {labels}\n")
        files = sorted(examples.glob("*.yaml"))
        sent = [{"name": str(f), "text": f.read_text()} for f in files]
        for r in api.call("apply", files=sent, confirm=[]):
            rev = "" if r["result"] == "unchanged" else f" (revision {r['revision']})"
            out.print(f"  apply {r['ref']}: {r['result']}{rev}")
        with out.status("waiting for the pods this node runs..."):
            _wait(lambda: _settled(api, name), RUN_TIMEOUT_S, "the pods to run")
        out.print()
        out.print(_pods(api, name))
        if nodes > 1:
            _replicated(lab_name, out)
        _tour(api, out)
    prog = _edgenode()
    env = f"EDGENODE_SOCKET={socket}"
    out.rule("next")
    out.print(
        f"The node keeps running. Talk to it with {env} {prog} ...; try:\n"
        f"  {prog} get pods -o wide                 what runs, its phase and message\n"
        f"  {prog} set pod/web spec.containers.web.env.SITE_NAME=mine   edit in place\n"
        f"  {prog} history pod/web / diff pod/web 1 / rollback pod/web 1\n"
        f"  {prog} workflow pod/web [--mermaid]     the last lifecycle run, drawn\n"
        f"  {prog} why pod/probe                    why a pod does not run here\n"
        f"  {prog} logs pod/backup-once             a container's output\n"
        f"  {prog} describe node/{name}             what the sandbox has and lacks\n"
        "Stop the daemon and the pods keep running; `make up` again adopts them. "
        "`make down` removes everything."
    )
    if nodes > 1:
        lab = f"--lab {lab_name}"
        out.print(
            f"The mesh: any verb reaches another node with {lab} --node NAME, e.g.\n"
            f"  {prog} nodes {lab} --node n2             the mesh as n2 sees it\n"
            f"  {prog} lab partition n1 n2,n3 {lab}       split it; `lab heal {lab}` mends it\n"
            f"  {prog} lab kill n3 {lab}                   and watch `nodes` declare it dead\n"
            f"  {prog} lab status {lab}"
        )


def _replicated(lab_name: str, out: Console) -> None:
    """Show that every node holds the same objects: the last node answers for the pods."""
    from edgenode.lab import Lab  # noqa: PLC0415

    lab = Lab(lab_name)
    last = lab.nodes()[-1]
    with Connection(lab.socket(last)) as api:
        pods = sorted(p["metadata"]["name"] for p in api.call("get", kind="pods"))
    out.print(
        f"\n{last} holds the same desired state "
        f"(edgenode get pods --lab {lab_name} --node {last}): "
        f"{', '.join(pods)}; every node places pods with the same function over that state, "
        "and each runs what is assigned to it (the NODE column)."
    )


def _settled(api: Connection, node: str) -> bool:
    pods = api.call("get", kind="pods")
    mine = [p for p in pods if (p.get("assignment") or {}).get("node") == node]

    def settled(p: dict[str, Any]) -> bool:
        phase = p.get("status", {}).get("phase")
        replica = "edgenode.io/owner" in (p["metadata"].get("annotations") or {})
        if replica or p["spec"].get("restartPolicy", "always") == "always":
            return bool(phase == "Running")  # a service (a deployment's replicas are)
        return phase in ("Succeeded", "Failed")  # a one-shot pod: until it has finished

    return bool(mine) and all(settled(p) for p in mine)


def _pods(api: Connection, node: str) -> str:
    rows = [["POD", "PHASE", "NODE", "WHY (if not running)"]]
    for p in api.call("get", kind="pods"):
        name = p["metadata"]["name"]
        phase = p.get("status", {}).get("phase", "Pending")
        where = (p.get("assignment") or {}).get("node") or "-"
        why = "" if phase in ("Running", "Succeeded") else api.call("why", ref=f"pod/{name}")[0]
        rows.append([name, phase, where, why])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=False)) + "  " + r[3]
        for r in rows
    )


def _tour(api: Connection, out: Console) -> None:
    before = api.call("get", kind="pod", name="web")[0]
    rev = before["metadata"]["revision"]
    before_run = _run_line(api, "web")
    out.print("\n[bold]edit pod/web in place[/]: set spec.containers.web.env.GREETING")
    api.call("set", ref="pod/web", assignments=["spec.containers.web.env.GREETING=hello"])

    def updated() -> bool:
        line = _run_line(api, "web")
        ended = "succeeded" in line or "failed" in line
        return line != before_run and line.startswith("pod.update") and ended

    _wait(updated, RUN_TIMEOUT_S, "the in-place update")
    for d in api.call("diff", ref="pod/web", a=rev):
        if d["path"].startswith("spec."):  # the node's status moved too; the edit is this
            out.print(f"  {d['change']} {d['path']}: {d['before']!r} -> {d['after']!r}")
    out.print(api.call("workflow", ref="pod/web", format="text"))
    rolled = api.call("rollback", ref="pod/web", revision=rev)
    out.print(f"rollback pod/web to revision {rev}: written as revision {rolled['revision']}")
    rows = api.call("history", ref="pod/web")[-4:]
    for r in rows:
        fields = "created" if r["created"] else ", ".join(r["fields"])
        out.print(f"  rev {r['revision']:>3}  {r['manager']:<10} {fields}")


def _run_line(api: Connection, pod: str) -> str:
    """The first line of the pod's last workflow run: its name, id and outcome."""
    return str(api.call("workflow", ref=f"pod/{pod}", format="text")).splitlines()[0]


def down(state_dir: Path, socket: str, out: Console | None = None) -> list[str]:
    """Stop the demo's daemon and remove its pods; the caller removes the state."""
    out = out or Console(highlight=False)
    pid_file = state_dir / "daemon.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        try:
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 60, "the daemon")
            out.print(f"node daemon (pid {pid}) stopped")
        except ProcessLookupError:
            pass
    if not (state_dir / "pods").exists():
        return []
    from sandbox.images import ImageStore  # noqa: PLC0415
    from sandbox.pods import Sandbox  # noqa: PLC0415

    sandbox = Sandbox(state_dir, ImageStore(state_dir / "images"))
    names = sandbox.pods()
    for name in names:
        sandbox.delete_pod(name, grace_s=1)
    return names


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def remove(state_dir: Path) -> None:
    shutil.rmtree(state_dir, ignore_errors=True)
