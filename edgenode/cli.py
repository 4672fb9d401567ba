"""The `edgenode` command."""

from __future__ import annotations

from pathlib import Path

import click

from edgenode import __version__
from edgenode import demo as _demo
from edgenode.objects import FieldProblem, Manifest, ManifestError, duplicate_problems
from edgenode.objects.manifest import load_manifests
from store import StoreError

#: Exit status when an input is invalid (nothing was applied).
EXIT_INVALID = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgenode")
def cli() -> None:
    """edgenode: a container orchestrator for the edge, with no control plane."""


@cli.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="A YAML manifest file (one or many documents); - reads standard input. Repeatable.",
)
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
    help="Where the demo node keeps its key and store.",
)
@click.option("--node", default=None, help="The node's name (default: the host name).")
@click.option(
    "--examples",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder of example manifests (default: the repository's examples/).",
)
def demo(state_dir: Path, node: str | None, examples: Path | None) -> None:
    """The main job until the daemon lands: apply the examples to a node's versioned store,
    edit a pod in place, and show its history, a diff and a rollback."""
    try:
        _demo.run(state_dir, node=node, examples=examples or _demo.EXAMPLES)
    except (ManifestError, StoreError) as exc:
        click.echo(f"edgenode demo: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None


def main() -> None:
    cli()
