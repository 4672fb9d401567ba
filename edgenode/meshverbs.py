"""Client verbs about the mesh: `edgenode nodes`."""

from __future__ import annotations

import time
from typing import Any

import click

from edgenode.fastcli import dump, table
from edgenode.verbs import request, socket_option


def _ago(seconds: float | None, now: float) -> str:
    if seconds is None:
        return "never"
    age = max(0.0, now - seconds)
    if age < 1:
        return "now"
    if age < 120:
        return f"{age:.0f}s ago"
    if age < 7200:
        return f"{age / 60:.0f}m ago"
    return f"{age / 3600:.0f}h ago"


def node_rows(nodes: list[dict[str, Any]], *, now: float) -> list[list[str]]:
    rows = [["NAME", "STATE", "ADDRESSES", "LAST SEEN", "BEHIND"]]
    for n in nodes:
        behind = n.get("behind")
        rows.append(
            [
                str(n["name"]),
                str(n["state"]),
                ",".join(n.get("addresses") or []) or "-",
                _ago(n.get("lastSeen"), now),
                "?" if behind is None else f"{behind} behind" if behind else "in sync",
            ]
        )
    return rows


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@socket_option
def nodes(output: str, socket_path: str | None) -> None:
    """The nodes of the mesh as this node sees them: state, addresses, when last heard from,
    and how many of this node's changes each one still lacks."""
    result: list[dict[str, Any]] = request(socket_path, "nodes")
    if output != "table":
        dump(result, output)
        return
    click.echo(table(node_rows(result, now=time.time())))
