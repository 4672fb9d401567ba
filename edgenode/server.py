"""The local API's server: a root-only unix socket, one JSON line per request.

Each connection is served in order; a handler that blocks (the store, the sandbox) runs in a
worker thread. A peer's bad bytes get an error answer and the connection is closed; nothing a
client sends can crash the daemon (STYLE.md §1). The socket's directory is created mode 0700
and the socket 0600: only root talks to the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog

from edgenode._protocol import EXIT_FAILED, EXIT_PROTOCOL, MAX_LINE, ApiError, decode, encode

if TYPE_CHECKING:
    from edgenode.daemon import Daemon

log = structlog.get_logger("edgenode.server")


async def serve(daemon: Daemon, path: str) -> asyncio.AbstractServer:
    from edgenode.handlers import Handlers  # noqa: PLC0415

    handlers = Handlers(daemon)
    handlers.verbs["nodes"] = lambda _args: _nodes(daemon)
    handlers.verbs["mesh"] = lambda args: _mesh(daemon, bool(args.get("digest")))
    if daemon.mesh is not None:
        daemon.mesh.answer = handlers.dispatch  # peers' read verbs for the pods running here
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left by a daemon that did not stop cleanly

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_client(handlers, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("api_client_failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path=path, limit=MAX_LINE)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


async def _serve_client(
    handlers: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            writer.write(encode({"ok": False, "error": {"message": "line too long", "exit": 76}}))
            await writer.drain()
            return
        except asyncio.IncompleteReadError:
            return
        rid: Any = None
        try:
            request = decode(line)
            rid = request.get("id")
            verb = request.get("verb")
            args = request.get("args") or {}
            if not isinstance(verb, str) or not isinstance(args, dict):
                raise ApiError("expected {'verb': str, 'args': object}", EXIT_PROTOCOL)
            log.debug("api_request", verb=verb)
            result = await handlers.dispatch(verb, args)
            if isinstance(result, AsyncIterator):
                async for item in result:
                    writer.write(encode({"id": rid, "item": item}))
                    await writer.drain()
                result = None
            writer.write(encode({"id": rid, "ok": True, "result": result}))
        except ApiError as exc:
            error = {"message": exc.message, "exit": exc.exit}
            writer.write(encode({"id": rid, "ok": False, "error": error}))
        except Exception as exc:
            log.exception("api_handler_failed")
            writer.write(
                encode(
                    {
                        "id": rid,
                        "ok": False,
                        "error": {"message": f"the daemon failed: {exc!r}", "exit": EXIT_FAILED},
                    }
                )
            )
        await writer.drain()


async def _nodes(daemon: Daemon) -> list[dict[str, Any]]:
    """The mesh as this node sees it; a lone node (no cluster) lists only itself."""
    if daemon.mesh is not None and daemon.mesh.started:
        return daemon.mesh.nodes()  # on the loop: the mesh is not thread-safe
    return [
        {
            "name": daemon.name,
            "state": "alive (this node; no mesh: not in a cluster)",
            "addresses": [],
            "port": 0,
            "lastSeen": None,
            "behind": 0,
        }
    ]


async def _mesh(daemon: Daemon, digest: bool) -> dict[str, Any]:
    """The node's replication state (version vector, optional state digest, counters)."""
    if daemon.mesh is None or not daemon.mesh.started:
        raise ApiError(f"node {daemon.name} is not in a mesh (no cluster credentials)", EXIT_FAILED)
    return daemon.mesh.state(digest=digest)
