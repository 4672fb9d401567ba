"""`edgenode up`: run this node's daemon in the foreground.

Its options are the daemon's settings: where its state and socket are, its name, the timers of
its reconciler, its mesh (QUIC port, seeds, discovery), what it offers pods (cpu, memory, the
range of host ports), and when it replaces the pods of lost nodes. Everything else it needs is
in its state directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from edgenode.client import DEFAULT_STATE_DIR
from edgenode.verbs import socket_option

MAX_CLOCK_OFFSET_S = 10 * 365 * 86400
"""The largest --clock-offset either way: ten years, in seconds."""


def _port_range(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A click callback that checks a host port range (`30000-32767`)."""
    from sandbox._ports import PortRangeError, parse_range  # noqa: PLC0415

    try:
        parse_range(value)
    except PortRangeError as exc:
        raise click.BadParameter(f"{exc}. Nothing was started.") from None
    return value


def _quantity(kind: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A click callback that checks a cpu or memory quantity as the pod schema does."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        from edgenode.objects._errors import QuantityError  # noqa: PLC0415
        from edgenode.objects._quantity import cpu_millis, memory_bytes  # noqa: PLC0415

        try:
            (cpu_millis if kind == "cpu" else memory_bytes)(value)
        except QuantityError as exc:
            raise click.BadParameter(f"{value!r}: {exc}") from None
        return value

    return check


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    envvar="EDGENODE_STATE_DIR",
    help="The node's state: store, images, pods, workflow records.",
)
@socket_option
@click.option("--name", default=None, help="The node's name (default: the host name).")
@click.option(
    "--resync", type=float, default=10.0, show_default=True, help="Seconds between full syncs."
)
@click.option(
    "--restart-backoff",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds before restarting a container that exited quickly; doubles each time.",
)
@click.option(
    "--restart-backoff-max",
    type=float,
    default=300.0,
    show_default=True,
    help="The longest wait between restarts, in seconds.",
)
@click.option(
    "--listen-port",
    type=click.IntRange(1, 65535),
    default=7946,
    show_default=True,
    help="UDP port of the node's QUIC endpoint (the mesh runs when the node has cluster "
    "credentials: edgenode init, or edgenode join).",
)
@click.option(
    "--seed",
    "seeds",
    multiple=True,
    metavar="HOST:PORT",
    help="A peer to contact at start and after outages (for sites joined over a WAN); "
    "repeatable. On a LAN nodes find each other without it.",
)
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    metavar="NAME",
    help="Discover peers on this interface only; repeatable (default: every interface).",
)
@click.option("--no-mdns", is_flag=True, help="Neither announce nor browse mDNS.")
@click.option("--no-neighbor-discovery", is_flag=True, help="Do not dial IPv6 neighbours.")
@click.option(
    "--cpu",
    callback=_quantity("cpu"),
    metavar="QUANTITY",
    help="CPU this node offers to pods (2, 1500m); default: all its cores.",
)
@click.option(
    "--memory",
    callback=_quantity("memory"),
    metavar="QUANTITY",
    help="Memory this node offers to pods (8Gi); default: all of it (MemTotal).",
)
@click.option(
    "--takeover",
    type=click.Choice(["majority", "any"]),
    default="majority",
    show_default=True,
    help="When this node replaces the pods of lost nodes: only while it sees a majority of "
    "the cluster's nodes alive (a node cut off keeps its own pods and takes no others), or "
    "whenever it sees their node lost.",
)
@click.option(
    "--host-ports",
    default="30000-32767",
    show_default=True,
    callback=_port_range,
    metavar="FIRST-LAST",
    help="The ports this node allocates to pods with network: host-ports, each to one pod "
    "(docs/host-ports.md).",
)
@click.option(
    "--clock-offset",
    type=click.FloatRange(-MAX_CLOCK_OFFSET_S, MAX_CLOCK_OFFSET_S),
    default=0.0,
    show_default=True,
    envvar="EDGENODE_CLOCK_OFFSET_S",
    metavar="SECONDS",
    help="Seconds added to the wall clock this node stamps its changes with and judges peers' "
    "clocks and credentials by; for tests of clock drift and long absences (a lab restarts a "
    "node with it to have weeks pass). Leave it at 0 on real nodes: fix the clock instead.",
)
def up(
    *,
    state_dir: Path,
    socket_path: str | None,
    name: str | None,
    resync: float,
    restart_backoff: float,
    restart_backoff_max: float,
    listen_port: int,
    seeds: tuple[str, ...],
    interfaces: tuple[str, ...],
    no_mdns: bool,
    no_neighbor_discovery: bool,
    cpu: str | None,
    memory: str | None,
    takeover: str,
    host_ports: str,
    clock_offset: float,
) -> None:
    """Run this node's daemon in the foreground (JSON logs on stderr).

    SIGTERM or SIGINT stops it; pods keep running and the next start adopts them.
    """
    # structlog loads rich for its console renderer when rich is installed; the daemon logs
    # JSON and never draws, so it goes without (about 6 MB of its memory).
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from edgenode.run import run_daemon  # noqa: PLC0415

    raise SystemExit(
        run_daemon(
            state_dir,
            name,
            socket_path=socket_path,
            resync_s=resync,
            backoff=(restart_backoff, restart_backoff_max),
            mesh={
                "port": listen_port,
                "seeds": seeds,
                "interfaces": interfaces,
                "mdns": not no_mdns,
                "neighbor_discovery": not no_neighbor_discovery,
            },
            capacity={k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None},
            majority=takeover == "majority",
            host_ports=host_ports,
            clock_offset_s=clock_offset,
        )
    )
