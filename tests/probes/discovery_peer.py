"""A node's discovery as its own process, for tests: prints each sighting as a JSON line.

Runs `gossip.discovery.Discovery` until SIGTERM/SIGINT or until stdin closes, then closes it
(mDNS goodbyes) and prints ``{"event": "closed"}``. Logs go to stderr.

    python tests/probes/discovery_peer.py --cluster C --node n1 --port 7000 [--no-mdns]
        [--no-nd] [--nd-interval 1] [--seed host:port ...] [--interface eth0 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import structlog

from gossip.discovery import Discovery, DiscoveryConfig, Sighting

STARTED = time.monotonic()


def say(**fields: object) -> None:
    """One JSON line; ``t`` is seconds since this process started."""
    print(json.dumps({**fields, "t": round(time.monotonic() - STARTED, 3)}), flush=True)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def stop_when_closed() -> None:
        if not sys.stdin.readline():
            stop.set()

    # A pipe's closing (the test gone) stops us; a file or /dev/null cannot be watched.
    with contextlib.suppress(OSError, ValueError):
        loop.add_reader(sys.stdin.fileno(), stop_when_closed)

    def on_sighting(s: Sighting) -> None:
        say(event="sighting", host=s.host, port=s.port, source=s.source, node=s.node_id)

    discovery = Discovery(
        cluster=args.cluster,
        node_id=args.node,
        port=args.port,
        config=DiscoveryConfig(
            mdns=not args.no_mdns,
            neighbor_discovery=not args.no_nd,
            interfaces=tuple(args.interface),
            nd_interval_s=args.nd_interval,
            seed_interval_s=args.seed_interval,
            address_check_s=args.address_check,
        ),
        seeds=args.seed,
        on_sighting=on_sighting,
    )
    await discovery.start()
    say(event="ready", node=args.node)
    await stop.wait()
    await discovery.close()
    say(event="closed", node=args.node)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-mdns", action="store_true")
    parser.add_argument("--no-nd", action="store_true")
    parser.add_argument("--nd-interval", type=float, default=10.0)
    parser.add_argument("--seed-interval", type=float, default=30.0)
    parser.add_argument("--address-check", type=float, default=10.0)
    parser.add_argument("--seed", action="append", default=[])
    parser.add_argument("--interface", action="append", default=[])
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    level = logging.DEBUG if args.debug else logging.INFO
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )
    asyncio.run(main(args))
