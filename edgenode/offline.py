"""The verbs that work on a node's state directly, without its daemon.

`validate` and `demo` never need a daemon; `apply`, `describe` and the `image` verbs run here
when given ``--state-dir`` (a node being prepared, or whose daemon is stopped), and through the
daemon otherwise (`edgenode.verbs`). Imported only when such a verb runs: it loads the object
model, the store and the sandbox, which the client path avoids.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
import structlog
from rich.console import Console
from rich.table import Table

from edgenode import demo as _demo
from edgenode import local
from edgenode._confirm import Unconfirmed, parse_confirmations, unconfirmed
from edgenode._protocol import EXIT_FAILED as EXIT_STORE
from edgenode._protocol import EXIT_INVALID, EXIT_UNCONFIRMED, ApiError
from edgenode.client import DEFAULT_STATE_DIR
from edgenode.objects import FieldProblem, Manifest, ManifestError, duplicate_problems
from edgenode.objects.manifest import load_manifests
from edgenode.verbs import color_line
from sandbox._image import ImageNotFoundError
from sandbox.busybox import BusyboxMissingError, build_image
from sandbox.images import Image, ImageStore, ImageStoreError, normalize_name
from store import LocalStoreError, Store, StoreError

_manifest_files = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="A YAML manifest file (one or many documents); - reads standard input. Repeatable.",
)


@click.group()
def cli() -> None:
    """The offline verbs (mounted into `edgenode.cli`'s group one by one)."""


@cli.command()
@_manifest_files
def validate(files: tuple[str, ...]) -> None:
    """Check manifests without applying them: every problem of every file, with its line.

    Prints one line per valid object and exits 0; otherwise prints the problems to stderr
    and exits 2.
    """
    manifests: list[Manifest] = []
    problems: list[FieldProblem] = []
    bad_files = 0
    for name in files:
        try:
            found = load_manifests(name)
        except ManifestError as exc:
            problems.extend(exc.problems)
            bad_files += 1
            continue
        if not found:
            source = "<stdin>" if name == "-" else name
            problems.append(
                FieldProblem.whole(
                    source,
                    expected="at least one object",
                    actual="no YAML documents with content",
                    hint="Nothing was applied; check that this is the file you meant.",
                )
            )
            bad_files += 1
            continue
        manifests.extend(found)
    duplicates = duplicate_problems(manifests)
    problems.extend(duplicates)
    duplicated = {(p.source, p.document) for p in duplicates}
    for m in manifests:
        if (m.source, m.index) not in duplicated:
            click.echo(f"ok  {m.ref}  ({m.source}, document {m.index})")
    if problems:
        for problem in problems:
            click.echo(problem.render(), err=True)
        count = len(problems)
        click.echo(
            f"{count} problem{'s' if count != 1 else ''} found; nothing was applied.", err=True
        )
        raise SystemExit(EXIT_INVALID)


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/var/lib/edgenode-demo"),
    show_default=True,
    help="The demo node's state (store, images, pods).",
)
@click.option(
    "--socket",
    "socket_path",
    default="/run/edgenode-demo/edgenode.sock",
    show_default=True,
    help="The demo node's API socket.",
)
@click.option("--node", default=None, help="The node's name (default: the host name).")
@click.option(
    "--examples",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder of example manifests (default: the repository's examples/).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="More than 1: a mesh of this many nodes in network namespaces (the lab 'demo').",
)
@click.option(
    "--lab",
    "lab_name",
    default="demo",
    show_default=True,
    help="With --nodes: the name of the demo's lab.",
)
@click.option("--down", is_flag=True, help="Stop the demo's nodes and pods; remove their state.")
def demo(
    *,
    state_dir: Path,
    socket_path: str,
    node: str | None,
    examples: Path | None,
    nodes: int,
    lab_name: str,
    down: bool,
) -> None:
    """The main job: a node (its daemon in the background) running the example workloads,
    then a tour: an edit in place, its history, diff, rollback and workflow."""
    if down:
        for name in _demo.down(state_dir, socket_path):
            click.echo(f"pod {name} stopped and deleted")
        _demo.remove(state_dir)
        click.echo(f"removed {state_dir}")
        from edgenode.lab import Lab  # noqa: PLC0415

        for line in Lab(lab_name).down():
            click.echo(f"lab {lab_name}: removed {line}")
        return
    folder = examples or _demo.EXAMPLES
    problems: list[FieldProblem] = []
    for f in sorted(folder.glob("*.yaml")):
        try:
            load_manifests(f)
        except ManifestError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems:
            click.echo(problem.render(), err=True)
        click.echo(f"{len(problems)} problem(s) in the examples; nothing was started.", err=True)
        raise SystemExit(EXIT_INVALID)
    from edgenode.lab import LabError  # noqa: PLC0415

    try:
        _demo.run(
            state_dir,
            socket=socket_path,
            node=node,
            examples=folder,
            nodes=nodes,
            lab_name=lab_name,
        )
    except (_demo.DemoError, ApiError, LabError) as exc:
        click.echo(f"edgenode demo: {exc}", err=True)
        raise SystemExit(getattr(exc, "exit", 1)) from None


# -- edgenode image ------------------------------------------------------------------------------

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    envvar="EDGENODE_STATE_DIR",
    show_default=True,
    show_envvar=True,
    help="The node's state directory: its key (node.key), versioned store (store/), images "
    "(images/).",
)
"""``--state-dir`` as every verb on a node's state takes it (`edgenode.clusterverbs` too)."""


def _image_store(state_dir: Path) -> ImageStore:
    return ImageStore(state_dir / "images")


def _image_failed(exc: Exception) -> NoReturn:
    hint = "; the store belongs to root: run as root" if isinstance(exc, PermissionError) else ""
    click.echo(f"edgenode image: {exc}{hint}", err=True)
    raise SystemExit(EXIT_INVALID)


def _image_verb(run: Callable[[], str]) -> None:
    """Run one image verb: print its one-line result, or its error and exit 2."""
    try:
        line = run()
    except (ImageStoreError, ImageNotFoundError, BusyboxMissingError, OSError) as exc:
        _image_failed(exc)
    click.echo(line)


def _describe(image: Image) -> str:
    names = ", ".join(image.names) or "<none>"
    return f"{names}  {image.digest}  ({_human_size(image.size)})"


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@cli.group()
def image() -> None:
    """Images on this node: import archives made elsewhere, pull when online, list, remove.

    Images live in STATE_DIR/images (see docs/images.md). A node needs no network: on a
    machine that has one, `skopeo copy docker://REF oci-archive:FILE` makes an archive that
    `edgenode image import FILE` takes.
    """
    # The verbs print their own results; the store's info logs would only repeat them.
    # Warnings go to stderr; whatever logging was configured before comes back afterwards.
    saved = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )
    click.get_current_context().call_on_close(lambda: structlog.configure(**saved))


@image.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "--name",
    default=None,
    metavar="NAME[:TAG]",
    help="Name it this (default: the name in the archive, else the file's stem; tag :latest).",
)
@state_dir_option
def image_import(file: str, name: str | None, state_dir: Path) -> None:
    """Import an OCI archive, an OCI layout directory (DIR[:TAG]) or a docker-archive."""
    _image_verb(lambda: "imported " + _describe(_image_store(state_dir).import_file(file, name)))


@image.command("pull")
@click.argument("reference", metavar="REF")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds the whole pull may take.",
)
@state_dir_option
def image_pull(reference: str, timeout: float, state_dir: Path) -> None:
    """Copy REF from its registry (busybox means docker.io/library/busybox:latest)."""
    store = ImageStore(state_dir / "images", pull_timeout_s=timeout)
    _image_verb(lambda: "pulled " + _describe(store.pull(reference)))


@image.command("ls")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
@state_dir_option
def image_ls(output: str, state_dir: Path) -> None:
    """List the images: one row per name."""
    try:
        images = _image_store(state_dir).list()
    except (ImageStoreError, OSError, ValueError) as exc:
        _image_failed(exc)
    if output == "json":
        click.echo(json.dumps([i.to_json() for i in images], indent=2))
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("NAME", overflow="fold")
    for column in ("DIGEST", "SIZE", "CREATED"):
        table.add_column(column, no_wrap=True)
    for i in images:
        created = i.created.strftime("%Y-%m-%d %H:%M") if i.created else "-"
        row = [i.digest.removeprefix("sha256:")[:12], _human_size(i.size), created]
        for name in i.names or ("<none>",):
            table.add_row(name, *row)
    Console(highlight=False).print(table)


@image.command("rm")
@click.argument("reference", metavar="REF")
@state_dir_option
def image_rm(reference: str, state_dir: Path) -> None:
    """Remove a name, or by sha256:DIGEST the image; unused blobs go with it."""
    _image_verb(lambda: "removed " + _removed(_image_store(state_dir), reference))


def _removed(store: ImageStore, reference: str) -> str:
    before = store.remove(reference)
    still = [i for i in store.list() if i.digest == before.digest]
    if still:
        kept = ", ".join(still[0].names) or "<none>"
        return f"{normalize_name(reference)} (image {before.digest[7:19]} keeps {kept})"
    return _describe(before)


@image.command("build-busybox")
@click.option("--name", default="busybox:latest", show_default=True, help="Name the image this.")
@state_dir_option
def image_build_busybox(name: str, state_dir: Path) -> None:
    """Build the busybox image from this node's busybox-static (no network) and add it."""
    _image_verb(lambda: "built " + _describe(build_image(_image_store(state_dir), name)))


# -- edgenode apply, edgenode describe -----------------------------------------------------------

_node_option = click.option(
    "--node",
    default=None,
    envvar="EDGENODE_NODE",
    show_envvar=True,
    help="The node's name (default: the host name); its store remembers the name it was made with.",
)


def _stdin_is_tty() -> bool:
    """Whether someone at a terminal can answer a question (tests replace this)."""
    return sys.stdin.isatty()


def _open_store(verb: str, state_dir: Path, node: str | None, *, create: bool) -> Store:
    try:
        return local.open_store(state_dir, node, create=create)
    except local.StateDirError as exc:
        click.echo(f"edgenode {verb}: {exc}", err=True)
        raise SystemExit(EXIT_STORE) from None
    except StoreError as exc:
        hint = " (--node or EDGENODE_NODE names the node)" if node is None else ""
        click.echo(f"edgenode {verb}: {exc}{hint}", err=True)
        raise SystemExit(EXIT_STORE) from None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def _confirm_interactively(missing: list[Unconfirmed]) -> bool:
    """Ask about each unconfirmed relaxation; True only if every answer is yes."""
    for u in missing:
        r = u.relaxation
        question = f"{u.ref} adds {r.name} ({r.where}): {r.what}. Apply anyway?"
        try:
            if not click.confirm(question, default=False, err=True):
                return False
        except click.Abort:  # end of input or ^C: no
            click.echo("", err=True)
            return False
    return True


def _outcome_line(outcome: local.Outcome) -> str:
    line = f"{outcome.ref} {outcome.result}"
    if outcome.result != "unchanged":
        line += f" (revision {outcome.revision})"
    if outcome.added:
        line += f"; insecure: {', '.join(outcome.added)} (confirmed)"
    return line


@cli.command()
@_manifest_files
@click.option(
    "--confirm-insecure",
    "confirmations",
    multiple=True,
    metavar="NAME[,NAME]",
    help="Confirm that this apply may turn on the relaxation NAME (run-as-root, host-path, ...). "
    "Repeatable; takes comma-separated names too.",
)
@state_dir_option
@_node_option
def apply(
    files: tuple[str, ...],
    confirmations: tuple[str, ...],
    state_dir: Path,
    node: str | None,
) -> None:
    """Create or update objects in this node's store from manifests.

    Every file is validated first; if anything is wrong, every problem is printed and nothing
    is applied. A change that turns on a relaxation of the sandbox (an insecure setting, which
    the manifest must also acknowledge in spec.acknowledge) needs --confirm-insecure=NAME, or a
    yes when asked at a terminal. Every object is checked before any is written. Prints one
    line per object: created, configured or unchanged.

    \b
    Exit codes:
      0  applied, or nothing to change
      1  the node's store could not be opened or written
      2  invalid input (a manifest, a --confirm-insecure name, an object apply may not
         create); nothing was applied. Also when the store refuses a change while
         writing: the objects printed before it were applied, the rest were not
      3  an insecure setting was not confirmed; nothing was applied
    """
    manifests, problems = local.read_manifests(files)
    confirmed, bad_names = parse_confirmations(confirmations)
    if problems or bad_names:
        for problem in problems:
            click.echo(problem.render(), err=True)
        for bad in bad_names:
            click.echo(bad, err=True)
        count = len(problems) + len(bad_names)
        click.echo(f"{_plural(count, 'problem')} found; nothing was applied.", err=True)
        raise SystemExit(EXIT_INVALID)
    with _open_store("apply", state_dir, node, create=True) as store:
        planned = local.plan(store, manifests)
        refused = local.creation_refusals(planned)
        if refused:
            for line in refused:
                click.echo(line, err=True)
            click.echo(f"{_plural(len(refused), 'problem')} found; nothing was applied.", err=True)
            raise SystemExit(EXIT_INVALID)
        missing = unconfirmed((p.insecure for p in planned), confirmed)
        # No blanket --yes: each insecure setting is confirmed by its name, or at a terminal.
        if missing:
            # A manifest read from standard input leaves no one there to answer.
            if not _stdin_is_tty() or "-" in files:
                for u in missing:
                    click.echo(u.render(), err=True)
                click.echo(
                    f"{_plural(len(missing), 'insecure setting')} not confirmed; nothing was "
                    "applied.",
                    err=True,
                )
                raise SystemExit(EXIT_UNCONFIRMED)
            if not _confirm_interactively(missing):
                flags = " ".join(sorted({u.flag for u in missing}))
                click.echo(
                    f"Not confirmed; nothing was applied. To apply without questions: {flags}",
                    err=True,
                )
                raise SystemExit(EXIT_UNCONFIRMED)
        try:
            for outcome in local.write(store, planned):
                click.echo(_outcome_line(outcome))
        except StoreError as exc:
            click.echo(f"edgenode apply: {exc}", err=True)
            click.echo(
                "The objects listed above were applied; this one and any after it were not.",
                err=True,
            )
            raise SystemExit(
                EXIT_INVALID if isinstance(exc, LocalStoreError) else EXIT_STORE
            ) from None


@cli.command()
@click.argument("ref", metavar="KIND/NAME")
@state_dir_option
@_node_option
def describe(ref: str, state_dir: Path, node: str | None) -> None:
    """Show one object for people: metadata, spec, status, and its security.

    KIND is pod, pinneddeployment or node (plurals and po, pd, no work too). The Security
    section lists the sandbox defaults in force and each relaxation with the field asking for
    it and the revision that turned it on; for a node, what its sandbox has and lacks.

    \b
    Exit codes:
      0  shown
      1  the node's store could not be opened
      2  no such object (similar names are listed)
    """
    try:
        kind, name = local.resolve_ref(ref)
    except local.UnknownObjectError as exc:
        click.echo(f"edgenode describe: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    with _open_store("describe", state_dir, node, create=False) as store:
        try:
            description = local.describe(store, kind, name, state_dir=state_dir)
        except local.UnknownObjectError as exc:
            click.echo(f"edgenode describe: {exc}", err=True)
            raise SystemExit(EXIT_INVALID) from None
    render_description(Console(highlight=False, soft_wrap=True), description)


def render_description(out: Console, d: local.Description) -> None:
    """Print a description, with what is unavailable or insecure in colour on a terminal."""
    del out  # the text is plain; colour is added per line
    for line in local.describe_lines(d):
        click.echo(color_line(line))
