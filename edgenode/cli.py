"""The `edgenode` command: one entry point, each verb's module imported only when it runs.

Client verbs (`edgenode.verbs`) talk to the node's daemon over its socket and import little,
so `edgenode get pods` starts quickly; offline verbs (`edgenode.offline`) load the object
model, the store and the sandbox; the cluster's identity verbs (init, token, join, credential)
are `edgenode.clusterverbs`, the mesh's `edgenode.meshverbs` and the lab's `edgenode.labcli`.
Shell completion: ``eval "$(_EDGENODE_COMPLETE=bash_source edgenode)"`` (zsh_source,
fish_source for the other shells).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from edgenode import __version__

COMMANDS: dict[str, str] = {
    "up": "edgenode.upverb:up",
    "apply": "edgenode.verbs:apply",
    "get": "edgenode.verbs:get",
    "describe": "edgenode.verbs:describe",
    "delete": "edgenode.verbs:delete",
    "edit": "edgenode.verbs:edit",
    "set": "edgenode.verbs:set_",
    "history": "edgenode.verbs:history",
    "diff": "edgenode.verbs:diff",
    "rollback": "edgenode.verbs:rollback",
    "restart": "edgenode.verbs:restart",
    "logs": "edgenode.verbs:logs",
    "workflow": "edgenode.verbs:workflow",
    "why": "edgenode.verbs:why",
    "image": "edgenode.verbs:image",
    "validate": "edgenode.offline:validate",
    "init": "edgenode.clusterverbs:init",
    "token": "edgenode.clusterverbs:token",
    "join": "edgenode.clusterverbs:join",
    "credential": "edgenode.clusterverbs:credential",
    "demo": "edgenode.offline:demo",
    "lab": "edgenode.labcli:lab",
    "nodes": "edgenode.meshverbs:nodes",
    "rollout": "edgenode.rolloutverbs:rollout",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgenode")
def cli() -> None:
    """edgenode: a container orchestrator for the edge, with no control plane.

    Start a node with `edgenode up`; the other verbs talk to it over its socket
    (--socket or EDGENODE_SOCKET; default /run/edgenode/edgenode.sock). Exit codes:
    0 done, 1 failed, 2 invalid input, 3 insecure setting not confirmed, 4 not found,
    5 refused by the store (a field another manager owns), 69 daemon unreachable.
    """


def main() -> None:
    cli()
