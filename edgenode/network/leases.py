"""The node's pod address leases, persisted (`edgenode.network._leases` decides them).

``<state>/network/leases.json``, changed under a lock and replaced atomically
(`sandbox.tables`): a pod's lease survives its restarts, in-place updates and the daemon's
restarts, and two processes allocating at once never get the same one.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from edgenode.network import _leases
from edgenode.network._leases import Lease
from sandbox.tables import JsonTable


class LeaseTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = JsonTable[_leases.Table](
            path, what="pod address table", check=_leases.check, empty=_leases.empty
        )

    def allocate(self, pod: str, *, foreign: Collection[int] = ()) -> Lease:
        """`pod`'s lease: the one it has, or a new one (persisted before returning)."""
        return self._file.change(lambda t: _leases.allocate(t, pod, foreign=foreign))

    def move_ipv4(self, pod: str, *, foreign: Collection[int]) -> Lease:
        return self._file.change(lambda t: _leases.move_ipv4(t, pod, foreign=foreign))

    def release(self, pod: str) -> None:
        self._file.change(lambda t: (_leases.release(t, pod), None))

    def leases(self) -> dict[str, Lease]:
        return _leases.leases(self._file.read())

    def get(self, pod: str) -> Lease | None:
        return self.leases().get(pod)
