"""The node's table of pod id ranges, persisted so that ranges never collide.

The table (pod name -> block number, see `sandbox._ids`) is a `sandbox.tables.JsonTable`: one
small JSON file, changed under a lock and replaced atomically, so a crash leaves the old table
or the new one and two processes allocating at once get different blocks.
"""

from __future__ import annotations

from pathlib import Path

from sandbox._ids import allocate, block_range, release
from sandbox._oci import IdRange
from sandbox.tables import JsonTable, TableCorruptError

IdTableCorruptError = TableCorruptError


def _blocks(raw: object) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in raw.items()
    ):
        raise ValueError("expected an object of pod name to block number")
    return raw


class IdTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._table = JsonTable[dict[str, int]](
            path, what="id range table", check=_blocks, empty=dict
        )

    def allocate(self, pod: str) -> IdRange:
        """`pod`'s range: the one it has, or the lowest free one (persisted before returning)."""
        return self._table.change(lambda t: allocate(t, pod))

    def release(self, pod: str) -> None:
        self._table.change(lambda t: (release(t, pod), None))

    def ranges(self) -> dict[str, IdRange]:
        return {pod: block_range(b) for pod, b in self._table.read().items()}
