"""The client verbs: each sends one request to the node's daemon and prints the answer.

Imports only click and the standard library (plus YAML for ``-o yaml`` and ``edit``), so a
verb starts in well under 150 ms. ``-o json`` is a stable interface: an object has ``kind``,
``metadata.name``, ``metadata.revision`` (an integer), ``spec`` and ``status`` (with
``status.phase`` for pods and nodes); ``history -o json`` lists revisions with ``revision``,
``author``, ``manager``, ``time`` (seconds since the epoch), ``fields``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from edgenode._protocol import EXIT_INVALID, EXIT_UNCONFIRMED, ApiError
from edgenode.client import DEFAULT_STATE_DIR, Connection, lab_any_socket, lab_socket
from edgenode.fastcli import OUTPUTS, dump, print_applied, print_objects, read_files, table

# --node and --lab select a lab node's daemon (`edgenode lab`). Their eager callbacks (and
# --state-dir's) note what was given in ctx.meta; --socket's callback, which runs after every
# eager one, turns it into the socket. Precedence: --socket, then --node (from the command line,
# and only without --state-dir, where --node names the node), then --lab alone (from the
# command line: the lab's first node that answers), then EDGENODE_SOCKET.
_NODE = "edgenode.lab_node"
_LAB = "edgenode.lab"
_LAB_GIVEN = "edgenode.lab_given"
_STATE_DIR = "edgenode.state_dir"
_DAEMONS = ("up",)
"""Commands that are a daemon: their --socket is where they listen; no --node redirects it."""
F = TypeVar("F", bound=Callable[..., Any])


def _remember(key: str, *, command_line_only: bool = False) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        source = ctx.get_parameter_source(param.name or "")
        if value is not None and (not command_line_only or source is ParameterSource.COMMANDLINE):
            ctx.meta[key] = value
        return value

    return callback


def _remember_lab(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--lab from anywhere names the lab; from the command line it also picks a daemon."""
    if value is not None:
        ctx.meta[_LAB] = value
        if ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
            ctx.meta[_LAB_GIVEN] = True
    return value


def _resolve_socket(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The socket a client verb talks to: --socket; a lab's node (--node, with --lab or its
    default); a lab given on the command line alone: its first node that answers."""
    node = ctx.meta.get(_NODE)
    if ctx.meta.get(_STATE_DIR) is not None or (node is None and not ctx.meta.get(_LAB_GIVEN)):
        return value
    given = "--node" if node is not None else "--lab"
    if value is not None and ctx.get_parameter_source("socket_path") is ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--socket and {given} both name a daemon; give one of them")
    try:
        if node is None:
            return lab_any_socket(ctx.meta.get(_LAB))
        return lab_socket(str(node), ctx.meta.get(_LAB))
    except ApiError as exc:
        if exc.exit != EXIT_INVALID:  # the lab exists, but no node of it answers
            fail(ctx.info_name or "", exc)
        raise click.BadParameter(exc.message, ctx=ctx, param_hint=f"'{given}'") from None


_socket = click.option(
    "--socket",
    "socket_path",
    envvar="EDGENODE_SOCKET",
    show_envvar=True,
    default=None,
    metavar="PATH",
    callback=_resolve_socket,
    help="The daemon's socket (default /run/edgenode/edgenode.sock).",
)
_lab = click.option(
    "--lab",
    "lab_name",
    envvar="EDGENODE_LAB",
    show_envvar=True,
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_remember_lab,
    metavar="NAME",
    help="Talk to a lab (edgenode lab): with --node, that node (default lab: lab); alone, "
    "the first of its nodes whose daemon answers.",
)
_lab_node = click.option(
    "--node",
    "lab_node",
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_remember(_NODE),
    metavar="NAME",
    help="Talk to node NAME of a lab (edgenode lab) instead of this machine's daemon.",
)


def socket_option(f: F) -> F:
    """--socket, and for client verbs --node and --lab (a lab node's socket)."""
    params = getattr(f, "__click_params__", [])
    f = _socket(f)
    if getattr(f, "__name__", "") in _DAEMONS:
        return f
    f = _lab(f)
    return f if any(p.name == "node" for p in params) else _lab_node(f)


offline_state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    is_eager=True,
    callback=_remember(_STATE_DIR),
    help="Work on this state directory directly, without the daemon (a node being prepared, "
    "or whose daemon is stopped).",
)
node_option = click.option(
    "--node",
    default=None,
    envvar="EDGENODE_NODE",
    metavar="NAME",
    is_eager=True,
    callback=_remember(_NODE, command_line_only=True),
    help="With --state-dir: the node's name; without: talk to node NAME of a lab (edgenode lab).",
)
output_option = click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table")


def _stdin_is_tty() -> bool:
    """Whether someone at a terminal can answer a question (tests replace this)."""
    return sys.stdin.isatty()


def request(socket_path: str | None, verb: str, **args: Any) -> Any:
    """The daemon's answer, or exit with its message and exit code."""
    try:
        with Connection(socket_path) as conn:
            return conn.call(verb, **args)
    except ApiError as exc:
        fail(verb, exc)


def fail(verb: str, exc: ApiError) -> Any:
    click.echo(f"edgenode {verb}: {exc.message}", err=True)
    raise SystemExit(exc.exit)


# -- apply, get, describe, delete -------------------------------------------------------------


def _send_with_confirmation(
    socket_path: str | None, verb: str, confirm: list[str], ask: bool, **args: Any
) -> Any:
    """Send; if an insecure setting is not confirmed and someone is at a terminal, ask about
    each, and send again with the ones they confirmed."""
    try:
        with Connection(socket_path) as conn:
            return conn.call(verb, confirm=confirm, **args)
    except ApiError as exc:
        if exc.exit != EXIT_UNCONFIRMED or not ask:
            fail(verb, exc)
        import re  # noqa: PLC0415 - the common path does not need it

        names = sorted(set(re.findall(r"--confirm-insecure=([a-z-]+)", exc.message)))
        click.echo(exc.message.rsplit("\n", 1)[0], err=True)
        for name in names:
            try:
                yes = click.confirm(f"Apply with {name} anyway?", default=False, err=True)
            except click.Abort:
                yes = False
            if not yes:
                click.echo(
                    "Not confirmed; nothing was applied. To apply without questions: "
                    + " ".join(f"--confirm-insecure={n}" for n in names),
                    err=True,
                )
                raise SystemExit(EXIT_UNCONFIRMED) from None
        return request(socket_path, verb, confirm=[*confirm, *names], **args)


@click.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="A YAML manifest (one or many documents); - reads standard input.",
)
@click.option(
    "--confirm-insecure",
    "confirmations",
    multiple=True,
    metavar="NAME[,NAME]",
    help="Confirm that this apply may turn on the relaxation NAME. Repeatable.",
)
@socket_option
@offline_state_dir
@node_option
@click.pass_context
def apply(
    ctx: click.Context,
    *,
    files: tuple[str, ...],
    confirmations: tuple[str, ...],
    socket_path: str | None,
    state_dir: Path | None,
    node: str | None,
) -> None:
    """Create or update objects from manifests; prints what changed, object by object.

    Every file is validated first and nothing is applied if anything is wrong. A change that
    turns on an insecure setting (which the manifest must acknowledge in spec.acknowledge)
    needs --confirm-insecure=NAME, or a yes at a terminal. Applying the same files again
    changes nothing.

    \b
    Exit codes:
      0  applied, or nothing to change
      2  invalid input (a manifest, a --confirm-insecure name); nothing was applied
      3  an insecure setting was not confirmed; nothing was applied
      5  refused by the store (a field another manager owns)
      69 the daemon could not be reached
    """
    if state_dir is not None:
        from edgenode import offline  # noqa: PLC0415

        ctx.invoke(
            offline.apply, files=files, confirmations=confirmations, state_dir=state_dir, node=node
        )
        return
    ask = _stdin_is_tty() and "-" not in files
    results = _send_with_confirmation(
        socket_path, "apply", list(confirmations), ask, files=read_files(files)
    )
    print_applied(results)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@output_option
@socket_option
def get(kind: str, name: str | None, output: str, socket_path: str | None) -> None:
    """List objects of KIND (pods, nodes, pinneddeployments), or show one.

    -o json and -o yaml print the objects (a list without NAME); -o wide adds columns.
    """
    objects: list[dict[str, Any]] = request(socket_path, "get", kind=kind, name=name)
    print_objects(kind, name, objects, output)


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@socket_option
@offline_state_dir
@node_option
@click.pass_context
def describe(
    ctx: click.Context,
    *,
    ref: str,
    socket_path: str | None,
    state_dir: Path | None,
    node: str | None,
) -> None:
    """Show one object for people: metadata, spec, status, and its security."""
    if state_dir is not None:
        from edgenode import offline  # noqa: PLC0415

        ctx.invoke(offline.describe, ref=ref, state_dir=state_dir, node=node)
        return
    for line in request(socket_path, "describe", ref=ref).splitlines():
        click.echo(color_line(line))


def color_line(line: str) -> str:
    """A describe line, with what the node's sandbox lacks in red."""
    if ": unavailable" in line:
        head, _, tail = line.partition(": unavailable")
        return head + ": " + click.style("unavailable", fg="red", bold=True) + tail
    return line


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@socket_option
def delete(ref: str, socket_path: str | None) -> None:
    """Delete an object (a new revision: history keeps it); its pod stops and goes."""
    result = request(socket_path, "delete", ref=ref)
    click.echo(f"{result['ref']} deleted (revision {result['revision']})")


# -- edit, set ---------------------------------------------------------------------------------


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@click.option("--confirm-insecure", "confirmations", multiple=True, metavar="NAME")
@socket_option
def edit(ref: str, confirmations: tuple[str, ...], socket_path: str | None) -> None:
    """Edit an object's metadata and spec in $EDITOR; saving writes one change."""
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    (obj,) = request(socket_path, "get", kind=ref.split("/", 1)[0], name=ref.split("/", 1)[-1])
    editable = {k: obj[k] for k in ("kind", "metadata", "spec") if k in obj}
    editable["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "revision"}
    before = yaml.safe_dump(editable, sort_keys=False)
    with tempfile.NamedTemporaryFile("w+", suffix=".yaml", prefix="edgenode-edit-") as f:
        f.write(
            f"# Edit {ref} (revision {obj['metadata']['revision']}); saving writes one change.\n"
            "# Status and assignment are the node's and the placement's: they are not here.\n"
            + before
        )
        f.flush()
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        if subprocess.call([*editor.split(), f.name]) != 0:
            click.echo("edgenode edit: the editor failed; nothing was changed.", err=True)
            raise SystemExit(1)
        # Read by name: editors often write a new file and rename it over the old one.
        after_text = Path(f.name).read_text()
    try:
        after = yaml.safe_load(after_text)
    except yaml.YAMLError as exc:
        click.echo(f"edgenode edit: not valid YAML ({exc}); nothing was changed.", err=True)
        raise SystemExit(EXIT_INVALID) from None
    if after == editable:
        click.echo("Edit cancelled: no changes made.")
        return
    ask = _stdin_is_tty()
    results = _send_with_confirmation(
        socket_path, "replace", list(confirmations), ask, ref=ref, document=after
    )
    print_applied(results)


@click.command("set")
@click.argument("ref", metavar="KIND/NAME")
@click.argument("assignments", nargs=-1, required=True, metavar="PATH=VALUE...")
@click.option("--confirm-insecure", "confirmations", multiple=True, metavar="NAME")
@socket_option
def set_(
    ref: str, assignments: tuple[str, ...], confirmations: tuple[str, ...], socket_path: str | None
) -> None:
    """Set fields in one change, e.g. spec.containers.web.env.MODE=debug (values are YAML)."""
    results = _send_with_confirmation(
        socket_path,
        "set",
        list(confirmations),
        _stdin_is_tty(),
        ref=ref,
        assignments=list(assignments),
    )
    print_applied(results)


# -- history, diff, rollback -------------------------------------------------------------------


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@output_option
@socket_option
def history(ref: str, output: str, socket_path: str | None) -> None:
    """Every revision of an object: who wrote it, as which manager, when, which fields."""
    import time  # noqa: PLC0415

    revs: list[dict[str, Any]] = request(socket_path, "history", ref=ref)
    if output in ("json", "yaml"):
        dump(revs, output)
        return
    rows = [["REV", "AUTHOR", "MANAGER", "TIME", "FIELDS"]]
    for r in revs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        fields = (
            f"created ({len(r['fields'])} fields)"
            if r["created"]
            else "deleted"
            if r["deleted"]
            else ", ".join(r["fields"])
        )
        if r.get("conflicts"):
            fields += f"  [conflict: {', '.join(r['conflicts'])}]"
        if r.get("overwritten"):
            fields += f"  [overwritten: {', '.join(r['overwritten'])}]"
        rows.append([str(r["revision"]), r["author"], r["manager"], when, fields])
    click.echo(table(rows))


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@click.argument("a", type=int)
@click.argument("b", type=int, required=False)
@output_option
@socket_option
def diff(ref: str, a: int, b: int | None, output: str, socket_path: str | None) -> None:
    """What changed from revision A to revision B (default: the current one)."""
    diffs: list[dict[str, Any]] = request(socket_path, "diff", ref=ref, a=a, b=b)
    if output in ("json", "yaml"):
        dump(diffs, output)
        return
    if not diffs:
        click.echo("no differences")
    for d in diffs:
        sign = {"added": "+", "removed": "-", "changed": "~"}.get(d["change"], "?")
        click.echo(f"{sign} {d['path']}: {d['before']!r} -> {d['after']!r}")


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@click.argument("revision", type=int)
@socket_option
def rollback(ref: str, revision: int, socket_path: str | None) -> None:
    """Restore revision REVISION's fields as a new revision (history is never rewritten)."""
    r = request(socket_path, "rollback", ref=ref, revision=revision)
    if r["revision"] is None:
        click.echo(f"{r['ref']} already matches revision {revision}: nothing written")
    else:
        click.echo(f"{r['ref']} rolled back to revision {revision} as revision {r['revision']}")
    for s in r.get("skipped") or []:
        click.echo(f"  not restored (another manager's field): {s}", err=True)


# -- pods: restart, logs, workflow, why --------------------------------------------------------


@click.command()
@click.argument("ref", metavar="pod/NAME")
@click.argument("containers", nargs=-1)
@socket_option
def restart(ref: str, containers: tuple[str, ...], socket_path: str | None) -> None:
    """Restart a pod's containers in place (same sandbox, address and ids)."""
    r = request(socket_path, "restart", ref=ref, containers=list(containers) or None)
    if r["outcome"] != "succeeded":
        click.echo(f"edgenode restart: {r['error']} (see: edgenode why {ref})", err=True)
        raise SystemExit(1)
    click.echo(f"{ref} restarted (workflow run {r['run_id']})")


@click.command()
@click.argument("ref", metavar="pod/NAME")
@click.argument("container", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container ends.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@socket_option
def logs(
    *,
    ref: str,
    container: str | None,
    follow: bool,
    tail: int | None,
    timestamps: bool,
    socket_path: str | None,
) -> None:
    """A container's output (stdout and stderr), oldest first."""
    try:
        with Connection(socket_path, timeout=None) as conn:
            for line in conn.stream(
                "logs",
                ref=ref,
                container=container,
                follow=follow,
                tail=tail,
                timestamps=timestamps,
            ):
                click.echo(line)
    except ApiError as exc:
        fail("logs", exc)
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@click.option("--dot", "fmt", flag_value="dot", help="Graphviz DOT.")
@click.option("--mermaid", "fmt", flag_value="mermaid", help="A Mermaid flowchart.")
@click.option("--run", "run_id", default=None, help="A past run (default: the latest).")
@socket_option
def workflow(ref: str, fmt: str | None, run_id: str | None, socket_path: str | None) -> None:
    """The latest lifecycle workflow of an object: its steps, their state and timing, and the
    critical chain; or the graph as DOT or Mermaid."""
    click.echo(
        request(socket_path, "workflow", ref=ref, format=fmt or "text", run_id=run_id).rstrip()
    )


@click.command()
@click.argument("ref", metavar="KIND/NAME")
@socket_option
def why(ref: str, socket_path: str | None) -> None:
    """Why an object is not (or is) running: the failing step and its cause first."""
    lines: list[str] = request(socket_path, "why", ref=ref)
    click.echo("\n".join(lines))


# -- images ------------------------------------------------------------------------------------


@click.group()
def image() -> None:
    """Images on this node: import archives made elsewhere, pull when online, list, remove.

    Through the daemon by default; with --state-dir, on that state directory directly.
    """


def _offline_image(ctx: click.Context, command: str, **kwargs: Any) -> None:
    from edgenode import offline  # noqa: PLC0415

    group = offline.image
    assert isinstance(group, click.Group) and group.callback is not None
    cmd = group.get_command(ctx, command)
    assert cmd is not None
    ctx.invoke(group.callback)  # its logging settings for the verb
    ctx.invoke(cmd, **kwargs)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@image.command("import")
@click.argument("file")
@click.option("--name", default=None, help="Name the image this (default: the archive's).")
@socket_option
@offline_state_dir
@click.pass_context
def image_import(
    ctx: click.Context,
    *,
    file: str,
    name: str | None,
    socket_path: str | None,
    state_dir: Path | None,
) -> None:
    """Import an OCI archive, OCI layout directory or docker-archive FILE."""
    if state_dir is not None:
        _offline_image(ctx, "import", file=file, name=name, state_dir=state_dir)
        return
    r = request(socket_path, "image.import", path=os.path.abspath(file), name=name)
    click.echo(f"imported {', '.join(r['names']) or '<none>'} {r['digest'][:19]}")


@image.command("pull")
@click.argument("reference")
@click.option(
    "--timeout", type=float, default=600.0, show_default=True, help="Give up after seconds."
)
@socket_option
@offline_state_dir
@click.pass_context
def image_pull(
    ctx: click.Context,
    *,
    reference: str,
    timeout: float,
    socket_path: str | None,
    state_dir: Path | None,
) -> None:
    """Copy REF from its registry (needs a network)."""
    if state_dir is not None:
        _offline_image(ctx, "pull", reference=reference, timeout=timeout, state_dir=state_dir)
        return
    r = request(socket_path, "image.pull", reference=reference)
    click.echo(f"pulled {', '.join(r['names'])} {r['digest'][:19]}")


@image.command("ls")
@output_option
@socket_option
@offline_state_dir
@click.pass_context
def image_ls(
    ctx: click.Context, output: str, socket_path: str | None, state_dir: Path | None
) -> None:
    """List the images: one row per name."""
    if state_dir is not None:
        _offline_image(
            ctx, "ls", output="json" if output == "json" else "table", state_dir=state_dir
        )
        return
    images: list[dict[str, Any]] = request(socket_path, "image.ls")
    if output in ("json", "yaml"):
        dump(images, output)
        return
    rows = [["NAME", "DIGEST", "SIZE", "CREATED"]]
    for i in images:
        created = (i.get("created") or "-")[:16].replace("T", " ")
        digest = i["digest"].removeprefix("sha256:")[:12]
        for n in i["names"] or ["<none>"]:
            rows.append([n, digest, _size(int(i["size"])), created])
    click.echo(table(rows))


@image.command("rm")
@click.argument("reference")
@socket_option
@offline_state_dir
@click.pass_context
def image_rm(
    ctx: click.Context, reference: str, socket_path: str | None, state_dir: Path | None
) -> None:
    """Remove a name (or by sha256:DIGEST the image); unused blobs go too."""
    if state_dir is not None:
        _offline_image(ctx, "rm", reference=reference, state_dir=state_dir)
        return
    r = request(socket_path, "image.rm", reference=reference)
    click.echo(f"removed {reference} ({r['digest'][:19]})")


@image.command("build-busybox")
@click.option("--name", default="busybox:latest", show_default=True)
@offline_state_dir
@click.pass_context
def image_build_busybox(ctx: click.Context, name: str, state_dir: Path | None) -> None:
    """Build the busybox image from this node's busybox-static (the daemon does at start)."""
    _offline_image(ctx, "build-busybox", name=name, state_dir=state_dir or DEFAULT_STATE_DIR)
