"""The CLI's side of the local API: connect to the daemon's socket, ask, read the answer.

Kept to the standard library (json, socket) so that a verb like ``edgenode get pods`` starts
quickly: the daemon validates, renders and decides; the client only carries the request and
prints what comes back.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgenode._protocol import EXIT_INVALID, EXIT_UNAVAILABLE, ApiError, decode, encode

DEFAULT_SOCKET = "/run/edgenode/edgenode.sock"
DEFAULT_STATE_DIR = Path("/var/lib/edgenode")
_ids = itertools.count(1)


LAB_RUN_DIR = "/run/edgenode-lab"
"""Where labs (`edgenode lab`) keep runtime state: ``<lab>/lab.json``, ``<lab>/<node>.sock``."""
DEFAULT_LAB = "lab"


def socket_path(given: str | None = None) -> str:
    return given or os.environ.get("EDGENODE_SOCKET") or DEFAULT_SOCKET


def lab_name(given: str | None = None) -> str:
    """The lab a verb means: --lab, else EDGENODE_LAB, else "lab"."""
    return given or os.environ.get("EDGENODE_LAB") or DEFAULT_LAB


def _lab_nodes(lab: str | None) -> tuple[str, str, list[str]]:
    """(name, runtime folder, nodes) of a lab on this machine, or `ApiError` (exit 2)."""
    name = lab_name(lab)
    run = os.path.join(LAB_RUN_DIR, name)
    try:
        with open(os.path.join(run, "lab.json"), encoding="utf-8") as f:
            nodes = [str(n) for n in json.load(f)["nodes"]]
    except FileNotFoundError:
        raise ApiError(
            f"there is no lab {name!r} on this machine ({run}/lab.json does not "
            f"exist); start it with `edgenode lab up --lab {name}`, or name another lab with "
            "--lab / EDGENODE_LAB (with --state-dir, --node names the node instead); nothing "
            "was sent",
            EXIT_INVALID,
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            f"lab {name!r}: {run}/lab.json is unreadable ({exc}); nothing was sent",
            EXIT_INVALID,
        ) from None
    return name, run, nodes


def lab_socket(node: str, lab: str | None = None) -> str:
    """The socket of node `node` of a lab on this machine (`edgenode lab`), or `ApiError`
    (exit 2) naming the lab and its nodes when it has no such node."""
    name, run, nodes = _lab_nodes(lab)
    if node not in nodes:
        raise ApiError(
            f"lab {name!r} has no node {node!r}; its nodes: {', '.join(nodes)}; nothing was sent",
            EXIT_INVALID,
        )
    return os.path.join(run, f"{node}.sock")


def lab_any_socket(lab: str | None = None) -> str:
    """The socket of the first node of a lab, in the lab's order, whose daemon accepts a
    connection: every node holds the same state and takes edits, so a verb given a lab but no
    node talks to that one. `ApiError`: exit 69 when none answers, naming the lab's nodes;
    exit 2 when there is no such lab."""
    name, run, nodes = _lab_nodes(lab)
    for node in nodes:
        path = os.path.join(run, f"{node}.sock")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            continue
        finally:
            probe.close()
        return path
    raise ApiError(
        f"lab {name!r}: none of its nodes' daemons answers ({', '.join(nodes)}); start one "
        f"with `edgenode lab start NODE --lab {name}`, or name a node with --node; nothing "
        "was sent",
        EXIT_UNAVAILABLE,
    )


class Connection:
    def __init__(self, path: str | None = None, *, timeout: float | None = 600.0) -> None:
        self.path = socket_path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            hint = (
                "is the daemon running? start it with `edgenode up`"
                if isinstance(exc, FileNotFoundError | ConnectionRefusedError)
                else "the socket is root's: run as root"
                if isinstance(exc, PermissionError)
                else "check the daemon"
            )
            raise ApiError(
                f"cannot reach the edgenode daemon at {self.path}: {exc.strerror or exc}; {hint} "
                "(or point --socket / EDGENODE_SOCKET at its socket)",
                EXIT_UNAVAILABLE,
            ) from None
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, verb: str, args: dict[str, Any]) -> int:
        rid = next(_ids)
        self._sock.sendall(encode({"id": rid, "verb": verb, "args": args}))
        return rid

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ApiError(f"the daemon at {self.path} closed the connection", EXIT_UNAVAILABLE)
        return decode(line)

    def call(self, verb: str, **args: Any) -> Any:
        """The verb's result, or `ApiError` with the daemon's message and exit code."""
        return self._finish(self._send(verb, args), None)

    def stream(self, verb: str, **args: Any) -> Iterator[Any]:
        """The verb's items as they come; its final answer ends the iteration."""
        rid = self._send(verb, args)
        while True:
            message = self._read()
            if "item" in message:
                yield message["item"]
                continue
            self._finish(rid, message)
            return

    def _finish(self, rid: int, message: dict[str, Any] | None) -> Any:
        message = message if message is not None else self._read()
        if message.get("ok"):
            return message.get("result")
        error = message.get("error") or {}
        raise ApiError(str(error.get("message", "the daemon failed")), int(error.get("exit", 1)))


def call(verb: str, *, socket: str | None = None, **args: Any) -> Any:
    """One request on a new connection."""
    with Connection(socket) as conn:
        return conn.call(verb, **args)
