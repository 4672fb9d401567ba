"""`edgenode demo`: the main job until the node daemon lands.

Validates the example manifests, applies them to a node's versioned store, runs the pods this
node may run in the sandbox (real runc, the locally built busybox image), edits a pod in place
(only its changed container restarts, in the same network namespace), and shows its history,
a diff and a rollback, the way later milestones will through the daemon. Running it again is
safe: unchanged manifests write nothing and running pods stay as they are. `down` stops the
pods and removes the state.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgenode.local import default_node_name, open_store
from edgenode.objects import Manifest, load_manifests
from edgenode.podspec import pod_def, stored_pod
from sandbox.busybox import ensure_busybox
from sandbox.host import features
from sandbox.images import ImageStore
from sandbox.pods import Sandbox
from store import Op, Revision, Store

DEMO_LABELS = {"example.com/disk": "ssd"}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def history_table(title: str, revs: list[Revision]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("rev", "change", "author", "manager", "fields"):
        t.add_column(col)
    for r in revs:
        fields = f"created ({len(r.fields) - 1} fields)" if r.created else ", ".join(r.fields)
        t.add_row(str(r.revision), str(r.change), r.author, r.manager, fields)
    return t


def run(state_dir: Path, *, examples: Path = EXAMPLES, node: str | None = None) -> None:
    out = Console()
    node = node or default_node_name()
    files = sorted(examples.glob("*.yaml"))
    manifests: list[Manifest] = [m for f in files for m in load_manifests(f)]
    out.rule("[bold]edgenode demo[/]: the versioned store")
    out.print(f"{len(manifests)} objects validated in {len(files)} files under {examples}")

    with open_store(state_dir, node) as store:
        out.print(f"node [bold]{node}[/], store {state_dir / 'store'}\n")
        applied = Table(title="apply examples/", title_justify="left")
        for col in ("object", "result", "revision"):
            applied.add_column(col)
        for m in manifests:
            committed = store.put_document(m.kind, m.name, m.document())
            result = "unchanged" if committed is None else "applied"
            current = store.get(m.kind, m.name)
            assert current is not None
            applied.add_row(f"{m.kind}/{m.name}", result, str(current["metadata"]["revision"]))
        out.print(applied)
        sandbox = open_sandbox(state_dir)
        publish_node_status(store, node, out)
        out.print(pods_table(sync_pods(store, sandbox, node), sandbox))

        pod = next((m for m in manifests if m.kind == "Pod"), None)
        if pod is None:
            return
        kind, name = pod.kind, pod.name
        doc: dict[str, Any] = store.get(kind, name) or {}
        container = sorted(doc["spec"]["containers"])[0]
        before = doc["metadata"]["revision"]
        path = ("spec", "containers", container, "env", "GREETING")
        store.commit(kind, name, [Op("set", path, "edited in place")], manager="user")
        out.print(f"\nedit {kind}/{name}: set {'.'.join(path)} (a new revision, same pod)")
        for d in store.diff(kind, name, before):
            out.print(f"  [yellow]{d.change}[/] {d.path}: {d.before!r} -> {d.after!r}")
        show_update(out, sandbox, store, name)
        rolled = store.rollback(kind, name, before)
        assert rolled.committed is not None
        out.print(
            f"rollback {kind}/{name} to revision {before}: written as revision "
            f"{rolled.committed.revision} (history is never rewritten)"
        )
        show_update(out, sandbox, store, name)
        out.print()
        out.print(history_table(f"history {kind}/{name}", store.history(kind, name)[-4:]))
        vv = ", ".join(f"{o}: {s}" for o, s in store.version_vector().items())
        out.print(f"\nversion vector {{{vv}}}")
    out.rule("next")
    # The command as it was run (make runs .venv/bin/edgenode), so the hints can be pasted.
    prog = sys.argv[0] if os.path.basename(sys.argv[0]) == "edgenode" else "edgenode"
    out.print(
        "The store keeps every revision: run `make up` again and the examples stay unchanged.\n"
        f"Try: `{prog} describe pod/web --state-dir {state_dir} --node {node}` (its sandbox "
        f"and insecure settings), `{prog} describe node/{node} --state-dir {state_dir} "
        f"--node {node}` (what the sandbox has and lacks), edit a manifest under examples/ and "
        f"run `make up` again; `{prog} validate -f FILE` checks a manifest.\n"
        "The node daemon and the mesh follow; `make down` stops the pods and removes this state."
    )


def open_sandbox(state_dir: Path) -> Sandbox:
    """The node's sandbox, with the busybox image built from the node's busybox-static."""
    images = ImageStore(state_dir / "images")
    ensure_busybox(images)
    return Sandbox(state_dir, images)


def publish_node_status(store: Store, node: str, out: Console) -> None:
    """Write what this node's sandbox has and lacks into its Node status (describe shows it)."""
    found = features()
    status = {
        "phase": "Ready",
        "sandbox": {k: {"available": f.available, "detail": f.detail} for k, f in found.items()},
    }
    store.put_document("Node", node, {"status": status}, manager=f"node:{node}")
    # The examples' backup pod asks for an SSD node: this node plays one.
    store.put_document("Node", node, {"metadata": {"labels": DEMO_LABELS}}, manager="user")
    missing = [f"{k} ({f.detail})" for k, f in found.items() if not f.available]
    out.print(f"\nsandbox of node {node}: unavailable here: " + "; ".join(missing), highlight=False)


def sync_pods(store: Store, sandbox: Sandbox, node: str) -> dict[str, str | None]:
    """Run (or update in place) every stored pod this node may run; a reason for the others.

    Placement comes with the mesh: until then a pod pinned to another node or asking for node
    labels waits, and says so."""
    waiting: dict[str, str | None] = {}
    labels = (store.get("Node", node) or {}).get("metadata", {}).get("labels", {})
    for doc in store.list_objects("Pod"):
        model = stored_pod(doc)
        name = model.metadata.name
        if model.spec.node not in (None, node):
            waiting[name] = f"pinned to node {model.spec.node}"
        elif not model.spec.node_selector.items() <= labels.items():
            wanted = ", ".join(f"{k}={v}" for k, v in model.spec.node_selector.items())
            waiting[name] = f"waits for a node labelled {wanted}"
        else:
            definition = pod_def(name, model.spec)
            if name in sandbox.pods():
                sandbox.update_pod(definition)
            else:
                sandbox.run_pod(definition)
            waiting[name] = None
    return waiting


def pods_table(pods: dict[str, str | None], sandbox: Sandbox) -> Table:
    waiting = [f"{name}: {why}" for name, why in sorted(pods.items()) if why is not None]
    caption = ("not here: " + "; ".join(waiting)) if waiting else None
    t = Table(title="pods in the sandbox", title_justify="left", caption=caption)
    for col in ("pod", "container", "state", "exit", "host ids", "netns"):
        t.add_column(col)
    for name, why in sorted(pods.items()):
        if why is not None:
            continue
        state = sandbox.state(name)
        ids = f"{state.ids.base}.." if state.ids else "node's"
        for c in state.containers.values():
            code = "" if c.exit_code is None else str(c.exit_code)
            t.add_row(name, c.name, c.state, code, ids, str(state.netns_inode))
    return t


def show_update(out: Console, sandbox: Sandbox, store: Store, name: str) -> None:
    """Apply the stored pod to its running sandbox and say what restarted."""
    before = sandbox.state(name)
    model = stored_pod(store.get("Pod", name) or {})
    result = sandbox.update_pod(pod_def(name, model.spec))
    plan = ", ".join(f"{c}: {a}" for c, a in result.actions.items())
    kept = "kept" if result.pod.netns_inode == before.netns_inode else "NEW"
    out.print(
        f"  in place: {plan}; network namespace {kept} (inode {result.pod.netns_inode})",
        highlight=False,
    )


def down(state_dir: Path) -> list[str]:
    """Stop and delete the demo's pods; the caller removes the state directory."""
    if not (state_dir / "pods").exists():
        return []
    sandbox = Sandbox(state_dir, ImageStore(state_dir / "images"))
    names = sandbox.pods()
    for name in names:
        sandbox.delete_pod(name, grace_s=1)
    return names
