"""`edgenode rollout`: move a PinnedDeployment's replicas to one version, in visible steps.

    edgenode rollout NAME --to VERSION [--step N] [--wait-ready] [--no-wait]
    edgenode rollout status NAME
    edgenode rollout pause|resume|abort NAME

The first form writes `spec.rollout` and then follows the rollout until every replica runs
VERSION, printing each step (the rollout goes on in the mesh if this command stops: Ctrl-C
only stops following). Each step is an edit of the versions' `replicas`, written by the node
where the rollout was started, in the deployment's history. `abort` writes back the counts the
rollout began from.
"""

from __future__ import annotations

import time
from typing import Any

import click

from edgenode._protocol import EXIT_FAILED
from edgenode.fastcli import OUTPUTS, dump, table
from edgenode.verbs import request, socket_option

FOLLOW_POLL_S = 0.5
SUBCOMMANDS = ("status", "pause", "resume", "abort")


class RolloutGroup(click.Group):
    """`rollout NAME --to V` and `rollout status NAME` side by side: a first word that is not a
    subcommand is the deployment's name, for the `start` command."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "start", self.commands["start"], args
        return super().resolve_command(ctx, args)


def _versions_table(answer: dict[str, Any]) -> str:
    rows = [["VERSION", "REPLICAS", "RUNNING", "READY"]]
    for v, s in answer["versions"].items():
        rows.append([v, str(s["replicas"]), str(s["running"]), str(s["ready"])])
    return table(rows)


def _rollout_line(answer: dict[str, Any]) -> str:
    r = answer.get("rollout")
    if r is None:
        last = answer.get("last")
        if last:
            outcome = f"{last['state']}, {last['message']}"
            return f"no rollout under way; the last one (to {last['to']}): {outcome}"
        return "no rollout under way"
    ready = ", waiting for readiness" if r.get("waitReady") else ""
    return f"rollout to {r['to']}, {r['step']} at a time{ready}: {r['state']}: {r['message']}"


@click.group(cls=RolloutGroup, invoke_without_command=False)
def rollout() -> None:
    """Move a PinnedDeployment's replicas to one version, step by step (see the subcommands;
    `edgenode rollout NAME --to VERSION` starts one)."""


@rollout.command("start", hidden=True)
@click.argument("name")
@click.option("--to", "to", required=True, metavar="VERSION", help="The version to move to.")
@click.option(
    "--step",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Replicas moved at a time.",
)
@click.option(
    "--wait-ready",
    is_flag=True,
    help="Each step waits until the new replicas are ready, not only running.",
)
@click.option("--no-wait", is_flag=True, help="Return once the rollout is written.")
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop following after this long (the rollout goes on).",
)
@socket_option
def start(
    *,
    name: str,
    to: str,
    step: int,
    wait_ready: bool,
    no_wait: bool,
    timeout: float | None,
    socket_path: str | None,
) -> None:
    """Start (or re-tune) a rollout of NAME to --to VERSION and follow it."""
    done = request(socket_path, "rollout.start", name=name, to=to, step=step, waitReady=wait_ready)
    verb = "started" if done["started"] else "updated"
    click.echo(f"{done['ref']}: rollout to {to} {verb} (revision {done['revision']})")
    if no_wait:
        return
    _follow(socket_path, name, timeout)


def _follow(socket_path: str | None, name: str, timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    said = ""
    try:
        while True:
            answer = request(socket_path, "rollout.status", name=name)
            line = _rollout_line(answer)
            if line != said:
                counts = ", ".join(
                    f"{v} {s['ready']}/{s['replicas']} ready" for v, s in answer["versions"].items()
                )
                click.echo(f"{time.strftime('%H:%M:%S')}  {line}  [{counts}]")
                said = line
            if answer["rollout"] is None:
                last = answer.get("last") or {}
                if last.get("state") == "aborted":
                    raise SystemExit(EXIT_FAILED)
                return
            if deadline is not None and time.monotonic() > deadline:
                click.echo(
                    f"stopped following after {timeout:g} s; the rollout goes on "
                    f"(edgenode rollout status {name})"
                )
                raise SystemExit(EXIT_FAILED)
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; the rollout goes on (edgenode rollout status {name})")
        raise SystemExit(130) from None


@rollout.command("status")
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table")
@socket_option
def status(name: str, output: str, socket_path: str | None) -> None:
    """Each version's replicas, running and ready, and the rollout under way."""
    answer = request(socket_path, "rollout.status", name=name)
    if output in ("json", "yaml"):
        dump(answer, output)
        return
    click.echo(f"pinneddeployment/{name} (revision {answer['revision']})")
    click.echo(_versions_table(answer))
    click.echo(_rollout_line(answer))
    if answer.get("conflicts"):
        click.echo(f"pods held by another owner: {', '.join(answer['conflicts'])}")


def _simple(verb: str, what: str, doc: str) -> click.Command:
    @click.argument("name")
    @socket_option
    def command(name: str, socket_path: str | None) -> None:
        done = request(socket_path, f"rollout.{verb}", name=name)
        extra = ""
        if verb == "abort":
            extra = ": back to " + ", ".join(f"{v} {n}" for v, n in done["restored"].items())
        click.echo(f"{done['ref']}: rollout {what} (revision {done['revision']}){extra}")

    command.__doc__ = doc
    return click.command(verb)(command)


for _verb, _what, _doc in (
    ("pause", "paused", "Pause the rollout of NAME: no further step until it is resumed."),
    ("resume", "resumed", "Resume the paused rollout of NAME."),
    (
        "abort",
        "aborted",
        "Abort the rollout of NAME: its versions get back the replicas they had when it began.",
    ),
):
    rollout.add_command(_simple(_verb, _what, _doc))
