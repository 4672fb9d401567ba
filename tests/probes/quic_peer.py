"""A node's transport in a process of its own, driven by JSON lines for tests.

Usage: ``python tests/probes/quic_peer.py STATE_DIR [--host H] [--key FILE] [--config JSON]``.

It starts a `Transport` for the identity in STATE_DIR (with ``--key``: that private key in place
of node.key, to play a node holding someone else's credential) and prints one JSON object a line
on stdout: ``ready`` (port, node), ``message`` (channel, sender, data as hex), ``peer_up`` /
``peer_down``, ``dialled`` / ``dial_failed`` (reason), ``stats``, and ``log`` for each refusal
it logs. It reads commands, one JSON object a line, on stdin: ``dial`` (host, port),
``address`` (peer, host, port), ``send`` (peer, channel, data as hex, reliable, count: answers
``sent`` with how many were accepted), ``stats``, ``quit``. Logs go to stderr as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip._membership_wire import NodeId
from gossip.transport import (
    NodeIdentity,
    PeerDown,
    PeerUp,
    Transport,
    TransportConfig,
    TransportError,
)


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    state = Path(args.state)
    identity = NodeIdentity.load(state)
    if args.key is not None:  # a node presenting a credential whose key it does not hold
        key = Ed25519PrivateKey.from_private_bytes(Path(args.key).read_bytes())
        identity = replace(identity, key=key)
    config = replace(TransportConfig(), **json.loads(args.config))

    def on_message(channel: str, sender: NodeId, data: bytes) -> None:
        emit(event="message", channel=channel, sender=sender, data=data.hex())

    def on_peer(event: PeerUp | PeerDown) -> None:
        kind = "peer_up" if isinstance(event, PeerUp) else "peer_down"
        emit(event=kind, node=event.node)

    transport = Transport(identity, config, on_message=on_message, on_peer=on_peer)
    port = await transport.start(args.host, 0)
    emit(event="ready", port=port, node=identity.node_id)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "dial":
            try:
                node = await transport.dial(cmd["host"], cmd["port"])
                emit(event="dialled", node=node)
            except TransportError as exc:
                emit(event="dial_failed", reason=str(exc))
        elif op == "address":
            transport.set_address(NodeId(cmd["peer"]), cmd["host"], cmd["port"])
        elif op == "send":
            data = bytes.fromhex(cmd["data"])
            sent = sum(
                transport.send(NodeId(cmd["peer"]), cmd["channel"], data, reliable=cmd["reliable"])
                for _ in range(cmd.get("count", 1))
            )
            emit(event="sent", count=sent)
        elif op == "stats":
            emit(event="stats", peers=sorted(transport.peers()), **asdict(transport.stats))
        elif op == "quit":
            break
    await transport.close()


def echo(_logger: Any, _name: str, fields: Any) -> Any:
    """Refusals also go to stdout, as ``log`` events, for tests to wait on."""
    if fields.get("event") in ("peer_refused", "refused_by_peer"):
        emit(event="log", log=fields["event"], reason=fields.get("reason", ""))
    return fields


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state")
    parser.add_argument("--host", default="::")
    parser.add_argument("--key", default=None)
    parser.add_argument("--config", default="{}")
    args = parser.parse_args()
    structlog.configure(
        processors=[echo, structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
