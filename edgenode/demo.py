"""`edgenode demo`: the main job until the node daemon lands.

Validates the example manifests, applies them to a node's versioned store, edits a pod in
place, and shows its history, a diff and a rollback, the way later milestones will through the
daemon. Running it again is safe: unchanged manifests write nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgenode.local import default_node_name, open_store
from edgenode.objects import Manifest, load_manifests
from store import Op, Revision

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
        rolled = store.rollback(kind, name, before)
        assert rolled.committed is not None
        out.print(
            f"rollback {kind}/{name} to revision {before}: written as revision "
            f"{rolled.committed.revision} (history is never rewritten)\n"
        )
        out.print(history_table(f"history {kind}/{name}", store.history(kind, name)[-4:]))
        vv = ", ".join(f"{o}: {s}" for o, s in store.version_vector().items())
        out.print(f"\nversion vector {{{vv}}}")
    out.rule("next")
    out.print(
        "The store keeps every revision: run `make up` again and the examples stay unchanged.\n"
        "Try: edit a manifest under examples/ and run `make up` again; "
        "`edgenode validate -f FILE` checks a manifest.\n"
        "The node daemon, sandboxed pods and the mesh follow; `make down` removes this state."
    )
