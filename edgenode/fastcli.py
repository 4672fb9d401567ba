"""The plainest forms of the busiest verbs, without loading click; and what all verbs print.

``edgenode get pods`` and ``edgenode apply -f FILE`` are what scripts and operators run most;
importing click alone takes longer than the rest of such a call. `run` recognises exactly
these forms (``get KIND [NAME] [-o FORMAT] [--socket PATH]``, ``apply -f FILE...
[--confirm-insecure NAME]... [--socket PATH]`` when no one is at a terminal to answer a
question; either with ``--node NAME [--lab LAB]`` in place of ``--socket``) and answers them
with the standard library; anything else, help and errors included, goes to the full CLI
(`edgenode.verbs`), which prints with the same functions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edgenode._protocol import EXIT_INVALID, ApiError
from edgenode.client import Connection, lab_any_socket, lab_socket

OUTPUTS = ("table", "wide", "json", "yaml", "name")


def read_files(files: Sequence[str]) -> list[dict[str, str]]:
    out = []
    for name in files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as exc:
            print(f"edgenode apply: {name}: cannot read it: {exc.strerror}", file=sys.stderr)
            raise SystemExit(EXIT_INVALID) from None
        out.append({"name": "<stdin>" if name == "-" else name, "text": text})
    return out


def print_applied(results: Iterable[dict[str, Any]]) -> None:
    for r in results:
        line = f"{r['ref']} {r['result']}"
        if r["result"] != "unchanged":
            line += f" (revision {r['revision']})"
        if r.get("insecure"):
            line += f"; insecure: {', '.join(r['insecure'])} (confirmed)"
        print(line)


def _status(o: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = o.get("status") or {}
    return status


def _pod_ready(o: dict[str, Any]) -> str:
    """Ready containers of all; a status from before readiness counts the running ones."""
    containers = (o.get("spec") or {}).get("containers") or {}
    ready = sum(
        1
        for c in (_status(o).get("containers") or {}).values()
        if c.get("ready", c.get("state") == "running") is True
    )
    return f"{ready}/{len(containers)}"


def _restarts(o: dict[str, Any]) -> str:
    return str(sum(c.get("restarts", 0) for c in (_status(o).get("containers") or {}).values()))


def _address(o: dict[str, Any]) -> str:
    """The pod's own IPv6 address (routed across the mesh), from its node's report."""
    return str((_status(o).get("addresses") or {}).get("ipv6") or "<none>")


def _ports(o: dict[str, Any]) -> str:
    """`http=8080,dns=53/udp`: each named port of each container (tcp unless said); for a
    host-ports pod the node's port it holds, from its status (`?` until allocated)."""
    spec = o.get("spec") or {}
    held = _status(o).get("hostPorts") or {}
    host_ports = spec.get("network") == "host-ports"
    cells = []
    for c in (spec.get("containers") or {}).values():
        for name, port in sorted(((c or {}).get("ports") or {}).items()):
            proto = (port or {}).get("protocol", "tcp")
            number = held.get(name, "?") if host_ports else (port or {}).get("containerPort", "?")
            cells.append(f"{name}={number}" + ("" if proto == "tcp" else f"/{proto}"))
    return ",".join(cells) or "<none>"


def _versions_ready(o: dict[str, Any]) -> str:
    """`v1 2/2 v2 0/1`: each version's ready replicas of those it should have."""
    versions = (o.get("spec") or {}).get("versions") or {}
    seen = ((o.get("status") or {}).get("versions")) or {}
    return " ".join(
        f"{v} {(seen.get(v) or {}).get('ready', 0)}/{(body or {}).get('replicas', 0)}"
        for v, body in sorted(versions.items())
    )


def _rollout_cell(o: dict[str, Any]) -> str:
    rollout = (o.get("spec") or {}).get("rollout")
    if rollout:
        paused = " (paused)" if rollout.get("paused") else ""
        return f"to {rollout.get('to')}{paused}"
    last = (o.get("status") or {}).get("rollout")
    return f"{last.get('state')} ({last.get('to')})" if last else "-"


COLUMNS: dict[str, list[tuple[str, Callable[[dict[str, Any]], str]]]] = {
    "Pod": [
        ("NAME", lambda o: o["metadata"]["name"]),
        ("READY", _pod_ready),
        ("PHASE", lambda o: _status(o).get("phase", "Pending")),
        ("RESTARTS", _restarts),
        ("REVISION", lambda o: str(o["metadata"]["revision"])),
        ("NODE", lambda o: (o.get("assignment") or {}).get("node") or "<none>"),
    ],
    "Node": [
        ("NAME", lambda o: o["metadata"]["name"]),
        ("PHASE", lambda o: _status(o).get("phase", "Unknown")),
        ("REVISION", lambda o: str(o["metadata"]["revision"])),
        (
            "LABELS",
            lambda o: (
                ",".join(f"{k}={v}" for k, v in (o["metadata"].get("labels") or {}).items())
                or "<none>"
            ),
        ),
    ],
    "PinnedDeployment": [
        ("NAME", lambda o: o["metadata"]["name"]),
        ("READY", _versions_ready),
        ("ROLLOUT", _rollout_cell),
        ("REVISION", lambda o: str(o["metadata"]["revision"])),
    ],
}
WIDE: dict[str, list[tuple[str, Callable[[dict[str, Any]], str]]]] = {
    "Pod": [
        ("ADDRESS", _address),
        (
            "IMAGES",
            lambda o: ",".join(
                c.get("image", "") for c in ((o.get("spec") or {}).get("containers") or {}).values()
            ),
        ),
        ("PORTS", _ports),
        ("MESSAGE", lambda o: _status(o).get("message", "")),
    ],
}


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def dump(value: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(value, indent=2, sort_keys=False))
    else:
        import yaml  # noqa: PLC0415

        print(yaml.safe_dump(value, sort_keys=False).rstrip())


def print_objects(kind: str, name: str | None, objects: list[dict[str, Any]], output: str) -> None:
    if output in ("json", "yaml"):
        dump(objects[0] if name else objects, output)
        return
    if output == "name":
        for o in objects:
            print(f"{o['kind'].lower()}/{o['metadata']['name']}")
        return
    if not objects:
        print(f"No {kind} on this node.", file=sys.stderr)
        return
    print(object_table(objects, wide=output == "wide"))


def object_table(objects: Sequence[dict[str, Any]], *, wide: bool = False) -> str:
    """The table `edgenode get` prints for objects of one kind (not empty); `wide`: `-o wide`."""
    real = objects[0]["kind"]
    columns = COLUMNS.get(real, COLUMNS["PinnedDeployment"][:1]) + (
        WIDE.get(real, []) if wide else []
    )
    rows = [[title for title, _ in columns]]
    rows += [[fn(o) for _, fn in columns] for o in objects]
    return table(rows)


def _parse(argv: Sequence[str]) -> tuple[str, dict[str, list[str]], list[str]] | None:
    """(verb, options, positionals) for the forms `run` handles, else None."""
    if not argv or argv[0] not in ("get", "apply"):
        return None
    options: dict[str, list[str]] = {}
    positionals: list[str] = []
    known = {
        "get": {"-o", "--output", "--socket", "--node", "--lab"},
        "apply": {"-f", "--filename", "--confirm-insecure", "--socket", "--node", "--lab"},
    }[argv[0]]
    rest = list(argv[1:])
    while rest:
        word = rest.pop(0)
        if word.startswith("-") and word != "-":
            key, eq, value = word.partition("=")
            if key not in known:
                return None
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            options.setdefault(key, []).append(value)
        else:
            positionals.append(word)
    return argv[0], options, positionals


def _socket(options: dict[str, list[str]]) -> str | None:
    """The socket the options name (None: the default); "" when the full CLI must explain."""
    sockets = options.get("--socket") or []
    nodes = options.get("--node") or []
    labs = options.get("--lab") or []
    if not nodes and not labs:
        return sockets[-1] if sockets else None
    if sockets:
        return ""
    try:
        if not nodes:
            return lab_any_socket(labs[-1])
        return lab_socket(nodes[-1], labs[-1] if labs else None)
    except ApiError:
        return ""


def run(argv: Sequence[str]) -> int | None:
    """Answer `argv` if it is one of the plain forms (the exit code), else None."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    verb, options, positionals = parsed
    socket = _socket(options)
    if socket == "":
        return None  # --socket with a lab's node, or no such node: the full CLI says so
    try:
        if verb == "get":
            output = (options.get("-o", []) + options.get("--output", []) or ["table"])[-1]
            if output not in OUTPUTS or not 1 <= len(positionals) <= 2:
                return None
            kind = positionals[0]
            name = positionals[1] if len(positionals) == 2 else None
            with Connection(socket) as conn:
                objects = conn.call("get", kind=kind, name=name)
            print_objects(kind, name, objects, output)
            return 0
        files = options.get("-f", []) + options.get("--filename", [])
        if positionals or not files or sys.stdin.isatty():
            return None  # a question may need asking: the full CLI does that
        confirm = options.get("--confirm-insecure", [])
        with Connection(socket) as conn:
            results = conn.call("apply", files=read_files(files), confirm=confirm)
        print_applied(results)
        return 0
    except ApiError as exc:
        print(f"edgenode {verb}: {exc.message}", file=sys.stderr)
        return exc.exit


TARGETS = ("--node", "--lab")
"""Options that name which daemon a verb talks to; they may also come before the verb."""


def hoist_targets(args: Sequence[str]) -> list[str]:
    """`args` with --node/--lab given before the verb moved after it, where every verb reads
    them: ``--node n2 get pods`` is ``get pods --node n2``."""
    lead: list[str] = []
    rest = list(args)
    while rest:
        key = rest[0].partition("=")[0]
        if key not in TARGETS:
            break
        if "=" in rest[0]:
            lead.append(rest.pop(0))
        elif len(rest) >= 2:
            lead += [rest.pop(0), rest.pop(0)]
        else:
            break  # `edgenode --node`: the full CLI explains what is missing
    if not lead or not rest:
        return [*lead, *rest]
    return [*rest, *lead]


def main() -> None:
    """The `edgenode` command: a plain get or apply here, everything else in `edgenode.cli`."""
    args = hoist_targets(sys.argv[1:])
    code = run(args)
    if code is not None:
        sys.exit(code)
    from edgenode.cli import cli  # noqa: PLC0415 - click, only when needed

    cli(args=args)
