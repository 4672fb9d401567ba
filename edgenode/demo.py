"""`edgenode demo` (what `make up` runs): nodes with the example workloads, and a tour.

With ``--nodes N`` (N > 1; `make up` asks for 3) it first brings up the lab ``demo``: N node
daemons, each in its own network namespace on one bridge, one cluster (edgenode.lab); waits
until they have found each other and shows the mesh; the rest then talks to node n1, and the
last node shows that it holds the same objects. With one node it starts this machine's node
daemon in the background (unless one already answers on the demo socket). Either way it
labels the nodes as the examples expect (the first has an SSD, the last a sensor), applies
`examples/` through the daemon's API, waits until every pod placement can place runs (or, a
one-shot one, has ended) on its node, shows them with `get pods -o wide` (node, address,
ports) and why any other waits, edits one in place (only its changed container restarts, in
the same network namespace), shows its diff, workflow, a rollback and its history, and says
what to try next with the node names and addresses of this run. Running it again is safe:
unchanged manifests write nothing. `edgenode demo --down` (`make down`) stops the daemons,
removes the pods (they outlive their daemon by design), the demo's state and its lab.
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

from edgenode._expand import expand
from edgenode._protocol import ApiError
from edgenode.client import Connection
from edgenode.fastcli import object_table

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_LABELS = {"example.com/disk": "ssd"}
"""The examples' backup pod asks for an SSD node: the demo's first node plays one."""
SENSOR_LABELS = {"example.com/sensor": "thermo"}
"""The examples' best-effort sensor-reader asks for a node with a sensor: the demo's last
node (the only one, with one node) plays it."""
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
        names = _label_nodes(api, name, nodes, lab_name, out)
        files = sorted(examples.glob("*.yaml"))
        sent = [{"name": str(f), "text": f.read_text()} for f in files]
        for r in api.call("apply", files=sent, confirm=[]):
            rev = "" if r["result"] == "unchanged" else f" (revision {r['revision']})"
            out.print(f"  apply {r['ref']}: {r['result']}{rev}")
        where = "on the mesh" if nodes > 1 else "on this node"
        with out.status(f"waiting for the pods to be placed and to run {where}..."):
            _wait(lambda: _settled(api), RUN_TIMEOUT_S, "the pods to run")
        out.print(f"\nwhat runs where (edgenode get pods -o wide{_on(nodes, lab_name, name)}):")
        out.print(_pods(api))
        if nodes > 1:
            _replicated(lab_name, out)
        _tour(api, out)
        pods = {p["metadata"]["name"]: p for p in api.call("get", kind="pods")}
    prog = _edgenode()
    out.rule("next")
    if nodes > 1:
        _next_on_mesh(prog, lab_name, names, pods, out)
        return
    env = f"EDGENODE_SOCKET={socket}"
    out.print(
        f"The node keeps running. Talk to it with {env} {prog} ...; try:\n"
        f"  {prog} get pods -o wide                 what runs, its phase, address and ports\n"
        f"  {prog} set pod/web spec.containers.web.env.SITE_NAME=mine   edit in place\n"
        f"  {prog} history pod/web / diff pod/web 1 / rollback pod/web 1\n"
        f"  {prog} workflow pod/web [--mermaid]     the last lifecycle run, drawn\n"
        f"  {prog} why pod/probe                    why a pod does not run here\n"
        f"  {prog} logs pod/backup-once             a container's output\n"
        f"  {prog} describe node/{name}             what the sandbox has and lacks\n"
        "Stop the daemon and the pods keep running; `make up` again adopts them. "
        "`make down` removes everything."
    )


def _on(nodes: int, lab_name: str, node: str) -> str:
    """The CLI options that reach `node` of the demo (none for the single node's socket)."""
    return f" --lab {lab_name} --node {node}" if nodes > 1 else ""


def _label_nodes(api: Connection, first: str, nodes: int, lab_name: str, out: Console) -> list[str]:
    """Label the nodes as the examples expect (the first has a disk, the last a sensor);
    the nodes' names."""
    names = [first]
    if nodes > 1:
        from edgenode.lab import Lab  # noqa: PLC0415

        names = Lab(lab_name).nodes()
    plan: dict[str, dict[str, str]] = {}
    plan.setdefault(names[0], {}).update(DEMO_LABELS)
    plan.setdefault(names[-1], {}).update(SENSOR_LABELS)
    for node, labels in plan.items():
        # Another node's Node object arrives by gossip; the mesh has formed, so it is close.
        _wait(_exists(api, "node", node), START_TIMEOUT_S, f"node/{node}")
        api.call(
            "set",
            ref=f"node/{node}",
            assignments=[
                f"metadata.labels.{k.replace('.', chr(92) + '.')}={v}" for k, v in labels.items()
            ],
        )
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        out.print(f"node [bold]{node}[/] labelled {shown}")
    out.print()
    return names


def _exists(api: Connection, kind: str, name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(api.call("get", kind=kind, name=name))
        except ApiError:
            return False

    return check


def _next_on_mesh(
    prog: str, lab_name: str, names: list[str], pods: dict[str, dict[str, Any]], out: Console
) -> None:
    lab = f"--lab {lab_name}"

    def node_of(pod: str) -> str:
        return str(((pods.get(pod) or {}).get("assignment") or {}).get("node") or names[0])

    web_node, sensor_node = node_of("web"), node_of("sensor-reader")
    on_web = f"{lab} --node {web_node}"
    address = (((pods.get("web") or {}).get("status") or {}).get("addresses") or {}).get("ipv6")
    others = [n for n in names if n != web_node]
    other = next((n for n in others if n != sensor_node), others[0])
    lines = [
        f"The mesh keeps running; every verb reaches a node with {lab} --node NAME. Try:",
        f"  {prog} set pod/web spec.containers.web.env.SITE_NAME=mine {on_web}",
        "      edit in place: one container restarts, the pod keeps its address",
        f"  {prog} history pod/web {on_web}",
        f"  {prog} workflow pod/web {on_web}",
        "      every revision and who wrote it; the last lifecycle run on its node, drawn",
    ]
    if address:
        lines += [
            f"  {prog} lab exec {lab} {other} -- ping -6 -c 3 {address}",
            f"      reach pod web on {web_node} from {other}: routed on the LAN, no overlay",
        ]
    lines += [
        f"  {prog} lab kill {web_node} {lab}",
        f"  {prog} get pods -o wide {lab} --node {other}",
        f"      {web_node} is declared dead within about 5 s; 30 s later (lostAfter) web "
        "starts on another node: its policy is reschedule",
    ]
    if sensor_node != web_node:
        lines += [
            f"  {prog} lab kill {sensor_node} {lab}",
            "      sensor-reader's policy is best-effort: it stays with its node, and runs "
            "again when the node does",
        ]
    lines += [
        f"  {prog} lab start NODE {lab}     a node comes back; a duplicate resolves per onReturn",
        f"  {prog} lab partition n1 n2,n3 {lab}   split the mesh; `lab heal {lab}` mends it",
        "`make down` removes the mesh, its pods and its state.",
    ]
    out.print("\n".join(lines))


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


def _settled(api: Connection) -> bool:
    """Every pod of the examples exists, and each one placed runs (a one-shot one has ended)
    on its node, as the node reports; one that cannot be placed says why."""
    pods = {p["metadata"]["name"]: p for p in api.call("get", kind="pods")}
    for deployment in api.call("get", kind="pinneddeployments"):
        if not set(expand(deployment)) <= set(pods):
            return False  # its replicas are not written yet

    def settled(p: dict[str, Any]) -> bool:
        phase = p.get("status", {}).get("phase")
        replica = "edgenode.io/owner" in (p["metadata"].get("annotations") or {})
        if replica or p["spec"].get("restartPolicy", "always") == "always":
            return bool(phase == "Running")  # a service (a deployment's replicas are)
        return phase in ("Succeeded", "Failed")  # a one-shot pod: until it has finished

    for name, p in pods.items():
        if (p.get("assignment") or {}).get("node") is None:
            if not any("waits for a node" in line for line in api.call("why", ref=f"pod/{name}")):
                return False  # placement has not decided yet
        elif not settled(p):
            return False
    return bool(pods)


def _pods(api: Connection) -> str:
    """`get pods -o wide`, and below it why each pod that does not run does not."""
    pods = api.call("get", kind="pods")
    lines = [object_table(pods, wide=True)]
    for p in pods:
        name = p["metadata"]["name"]
        if p.get("status", {}).get("phase") not in ("Running", "Succeeded"):
            lines.append(f"  why pod/{name}: {api.call('why', ref=f'pod/{name}')[0]}")
    return "\n".join(lines)


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
