"""The node's table of host ports (`network: host-ports`), persisted so that no two pods share one.

The table (pod -> port name -> number, see `sandbox._ports`) is a `sandbox.tables.JsonTable`:
changed under a lock and replaced atomically, so a crash leaves the old table or the new one,
and two processes allocating at once never get the same number. A new port skips the numbers
something already listens on in the node's network (`bound_on_node`): it tries to bind each
candidate, TCP and UDP, IPv4 and IPv6, as a server would, and takes the first one every bind
accepts.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from sandbox._ports import DEFAULT_RANGE, PortRange, allocate, release
from sandbox.tables import JsonTable

PortTableData = dict[str, dict[str, int]]
HELD = frozenset({errno.EADDRINUSE, errno.EACCES})
"""Bind errors that mean the port cannot be had."""


def _ports(raw: object) -> PortTableData:
    if not isinstance(raw, dict) or not all(
        isinstance(pod, str)
        and isinstance(ports, dict)
        and all(isinstance(k, str) and isinstance(v, int) for k, v in ports.items())
        for pod, ports in raw.items()
    ):
        raise ValueError("expected an object of pod name to an object of port name to number")
    return raw


def bound_on_node(port: int) -> bool:
    """Whether something in this network namespace holds `port` (TCP or UDP, IPv4 or IPv6):
    a bind of it, as a server binds (TCP with SO_REUSEADDR, so only a listener or a socket
    bound without it counts, not connections closing in TIME_WAIT), is refused as in use (or
    not allowed). A family the node lacks (no IPv6) is skipped."""
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            try:
                sock = socket.socket(family, kind)
            except OSError:
                continue
            with sock:
                if family == socket.AF_INET6:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if kind == socket.SOCK_STREAM:
                    # As servers bind: a port left in TIME_WAIT by a pod that is gone is free.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    if exc.errno in HELD:
                        return True
                    # EADDRNOTAVAIL and the like: this family has no address to bind here.
    return False


class PortTable:
    def __init__(
        self,
        path: Path,
        port_range: PortRange = DEFAULT_RANGE,
        *,
        bound: Callable[[int], bool] = bound_on_node,
    ) -> None:
        self.path = path
        self.port_range = port_range
        self._bound = bound
        self._table = JsonTable[PortTableData](
            path, what="host port table", check=_ports, empty=dict
        )

    def allocate(self, pod: str, names: Iterable[str]) -> dict[str, int]:
        """`pod`'s ports, exactly `names`: the numbers it has, new ones for new names, names
        it dropped freed (persisted before returning). `PortsExhaustedError` when the range
        has no free number left; then nothing changed."""
        wanted = list(names)
        return self._table.change(
            lambda t: allocate(t, pod, wanted, self.port_range, bound=self._bound)
        )

    def release(self, pod: str) -> None:
        self._table.change(lambda t: (release(t, pod), None))

    def of(self, pod: str) -> dict[str, int]:
        return dict(self._table.read().get(pod, {}))

    def ports(self) -> PortTableData:
        return self._table.read()
