"""`edgenode lab`: a mesh of nodes on this machine, one network namespace each, and faults.

Every verb works on the lab named by --lab (env EDGENODE_LAB, default ``lab``); see
`edgenode.lab` for how a lab is made and docs/lab.md for a walk through. Client verbs reach a
lab node with ``--node NAME`` (``edgenode get pods --node n2``). Exit codes: 0 done, 1 failed
(the message says what was left), 2 invalid input (nothing was changed).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NoReturn, TypeVar

import click

from edgenode.client import DEFAULT_LAB
from edgenode.fastcli import table
from edgenode.lab import Lab, LabError, LabInputError

F = TypeVar("F", bound=Callable[..., Any])

lab_option = click.option(
    "--lab",
    "lab_name",
    envvar="EDGENODE_LAB",
    show_envvar=True,
    default=DEFAULT_LAB,
    show_default=True,
    metavar="NAME",
    help="The lab to work on.",
)


def _lab(verb: str, name: str, *, quiet: bool = False) -> Lab:
    if os.geteuid() != 0:
        click.echo(
            f"edgenode lab {verb}: a lab needs root (network namespaces, nftables); run as "
            "root; nothing was changed",
            err=True,
        )
        raise SystemExit(1)
    try:
        return Lab(name, progress=None if quiet else click.echo)
    except LabError as exc:
        _fail(verb, exc)


def _fail(verb: str, exc: LabError) -> NoReturn:
    click.echo(f"edgenode lab {verb}: {exc}", err=True)
    raise SystemExit(2 if isinstance(exc, LabInputError) else 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lab() -> None:
    """A lab: N nodes on this machine, each in its own network namespace on one bridge, one
    daemon each, one cluster; with partitions, packet loss, crashes and restarts on demand.

    \b
      edgenode lab up --nodes 3
      edgenode get nodes --node n2
      edgenode lab partition n1 n2,n3
      edgenode lab heal
      edgenode lab down
    """


@lab.command()
@click.option("--nodes", type=int, default=3, show_default=True, help="How many nodes.")
@click.option(
    "--daemon-arg",
    "daemon_args",
    multiple=True,
    metavar="ARG",
    help="An extra argument for every node's `edgenode up` (repeatable, in order).",
)
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for a daemon."
)
@lab_option
def up(nodes: int, daemon_args: tuple[str, ...], timeout: float, lab_name: str) -> None:
    """Make the lab and start its daemons; returns when every daemon answers.

    Refused if a lab of this name exists (even in part): `edgenode lab down` it first, or
    name another with --lab. If a daemon does not come up, the lab is left for its log to be
    read.
    """
    the_lab = _lab("up", lab_name)
    try:
        the_lab.up(nodes, extra_daemon_args=daemon_args, timeout=timeout)
    except LabError as exc:
        _fail("up", exc)


@lab.command()
@lab_option
def down(lab_name: str) -> None:
    """Remove the lab: daemons (TERM, then KILL), their pods, namespaces, rules, files.

    Works on whatever part of the lab exists; running it again does nothing.
    """
    the_lab = _lab("down", lab_name)
    try:
        removed = the_lab.down()
    except LabError as exc:
        _fail("down", exc)
    click.echo(f"lab {lab_name}: " + ("removed" if removed else "nothing to remove"))


@lab.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@lab_option
def status(output: str, lab_name: str) -> None:
    """One line per node: namespace, daemon, whether it answers, link, loss, partition."""
    the_lab = _lab("status", lab_name)
    try:
        nodes = the_lab.status()
    except LabError as exc:
        _fail("status", exc)
    if output == "json":
        click.echo(json.dumps([asdict(n) for n in nodes], indent=2))
        return
    rows = [["NODE", "NETNS", "PID", "DAEMON", "ANSWERS", "LINK", "LOSS", "GROUP", "ADDRESS"]]
    for n in nodes:
        rows.append(
            [
                n.node,
                n.netns if n.netns_exists else f"{n.netns} (missing)",
                str(n.pid or "-"),
                "running" if n.running else "stopped",
                "yes" if n.answering else "no",
                "up" if n.link_up else "down",
                f"{n.loss}%",
                str(n.group or "-"),
                n.address,
            ]
        )
    click.echo(table(rows))


@lab.command()
@click.argument("groups", nargs=-1, required=True, metavar="NODE[,NODE]...")
@lab_option
def partition(groups: tuple[str, ...], lab_name: str) -> None:
    """Cut the lab into groups (comma-separated nodes): no packet crosses between groups,
    multicast included. A node named in no group is alone. Replaces any partition."""
    the_lab = _lab("partition", lab_name)
    try:
        full = the_lab.partition([[n for n in g.split(",") if n] for g in groups])
    except LabError as exc:
        _fail("partition", exc)
    click.echo("partitioned: " + " | ".join(",".join(g) for g in full))


@lab.command()
@lab_option
def heal(lab_name: str) -> None:
    """End every partition and bring every link up (packet loss stays: lab loss --all 0)."""
    the_lab = _lab("heal", lab_name)
    try:
        the_lab.heal()
    except LabError as exc:
        _fail("heal", exc)
    click.echo("healed")


@lab.command()
@click.argument("args", nargs=-1, required=True, metavar="[NODE] PERCENT")
@click.option("--all", "everywhere", is_flag=True, help="Every packet crossing the bridge.")
@lab_option
def loss(args: tuple[str, ...], everywhere: bool, lab_name: str) -> None:
    """Drop PERCENT of the packets entering and leaving NODE (both directions); with --all,
    of every packet (replacing per-node loss). 0 clears."""
    expected = 1 if everywhere else 2
    if len(args) != expected or not args[-1].isdigit():
        form = "--all PERCENT" if everywhere else "NODE PERCENT"
        click.echo(f"edgenode lab loss: expected {form}, got {' '.join(args)!r}", err=True)
        raise SystemExit(2)
    the_lab = _lab("loss", lab_name)
    node = None if everywhere else args[0]
    try:
        the_lab.loss(node, int(args[-1]))
    except LabError as exc:
        _fail("loss", exc)
    click.echo(f"loss {args[-1]}% on {node or 'every link'}")


@lab.command()
@click.argument("node")
@click.option(
    "--signal",
    "sig",
    default="KILL",
    show_default=True,
    metavar="NAME",
    help="KILL (a crash: pods keep running) or TERM (a clean stop), or another signal.",
)
@lab_option
def kill(node: str, sig: str, lab_name: str) -> None:
    """Signal NODE's daemon and wait until it has gone; its pods keep running."""
    try:
        number = signal.Signals[f"SIG{sig.upper().removeprefix('SIG')}"]
    except KeyError:
        click.echo(f"edgenode lab kill: --signal: no signal {sig!r}; nothing was done", err=True)
        raise SystemExit(2) from None
    the_lab = _lab("kill", lab_name)
    try:
        pid = the_lab.kill(node, number)
    except LabError as exc:
        _fail("kill", exc)
    click.echo(f"{node}: daemon {pid} ended by {number.name}")


@lab.command()
@click.argument("node")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for it."
)
@lab_option
def start(node: str, timeout: float, lab_name: str) -> None:
    """Start NODE's daemon again; returns when it answers."""
    the_lab = _lab("start", lab_name)
    try:
        the_lab.start(node, timeout=timeout)
    except LabError as exc:
        _fail("start", exc)


@lab.command()
@click.argument("node")
@click.argument("state", type=click.Choice(["up", "down"]))
@lab_option
def link(node: str, state: str, lab_name: str) -> None:
    """Set NODE's link up or down (down: its eth0 loses its carrier)."""
    the_lab = _lab("link", lab_name)
    try:
        the_lab.link(node, up=state == "up")
    except LabError as exc:
        _fail("link", exc)
    click.echo(f"{node}: link {state}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@lab_option
def exec_(node: str, argv: tuple[str, ...], lab_name: str) -> None:
    """Run a command in NODE's network namespace, e.g. `edgenode lab exec n2 -- ip addr`."""
    the_lab = _lab("exec", lab_name, quiet=True)
    try:
        nodes = the_lab.nodes()
    except LabError as exc:
        _fail("exec", exc)
    if node not in nodes:
        _fail(
            "exec",
            LabInputError(f"lab {lab_name!r} has no node {node!r}; its nodes: {', '.join(nodes)}"),
        )
    os.execvp("ip", ["ip", "netns", "exec", the_lab.netns(node), *argv])
