"""`edgenode up`: logging, signals and the event loop around the daemon."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import structlog

from edgenode.client import socket_path as default_socket


def configure_logging() -> None:
    """JSON lines on stderr, one event per line, with a UTC timestamp."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    # aioquic logs every connection's negotiation at INFO, in its own text format: the mesh
    # logs what matters (peer_up, peer_refused) as JSON events instead.
    logging.getLogger("quic").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def run_daemon(
    state_dir: Path,
    name: str | None,
    *,
    socket_path: str | None,
    resync_s: float,
    backoff: tuple[float, float] = (10.0, 300.0),
    mesh: dict[str, Any] | None = None,
    capacity: dict[str, str] | None = None,
    majority: bool = True,
    host_ports: str | None = None,
    clock_offset_s: float = 0.0,
) -> int:
    """Run the daemon until SIGTERM or SIGINT; `host_ports`: the range of host ports it
    allocates (``30000-32767``), already checked by the CLI."""
    configure_logging()
    from edgenode.daemon import Daemon, install_signal_handlers  # noqa: PLC0415
    from sandbox._lifecycle import Backoff  # noqa: PLC0415
    from sandbox._ports import DEFAULT_RANGE, parse_range  # noqa: PLC0415

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        daemon = Daemon(
            state_dir,
            name,
            socket_path=default_socket(socket_path),
            resync_s=resync_s,
            backoff=Backoff(initial_s=backoff[0], max_s=backoff[1]),
            mesh=mesh,
            capacity=capacity,
            majority=majority,
            host_ports=parse_range(host_ports) if host_ports else DEFAULT_RANGE,
            clock_offset_s=clock_offset_s,
        )
        await daemon.run(stop)

    try:
        asyncio.run(main())
    except Exception as exc:
        structlog.get_logger("edgenode").error("daemon_failed", error=str(exc))
        return 1
    return 0
