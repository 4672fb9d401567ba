"""The node's table of pod id ranges, persisted so that ranges never collide.

The table (pod name -> block number, see `sandbox._ids`) is one small JSON file, changed only
under an exclusive lock on a side file and replaced atomically (write, fsync, rename, fsync the
directory): a crash leaves either the old table or the new one, never a mix, and two processes
allocating at once get different blocks.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sandbox._ids import allocate, block_range, release
from sandbox._oci import IdRange

T = TypeVar("T")


class IdTableCorruptError(RuntimeError):
    pass


class IdTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, int]:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            table = json.loads(raw)
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, int) for k, v in table.items()
            ):
                raise ValueError("expected an object of pod name to block number")
        except ValueError as exc:
            raise IdTableCorruptError(
                f"id range table {self.path} is unreadable ({exc}); it was left as it is. "
                "Restore it from a backup, or rebuild it from the pods' records"
            ) from None
        return table

    def _write(self, table: dict[str, int]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(table, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _change(self, fn: Callable[[dict[str, int]], tuple[dict[str, int], T]]) -> T:
        with self._locked():
            table = self._read()
            new, result = fn(table)
            if new != table:
                self._write(new)
            return result

    def allocate(self, pod: str) -> IdRange:
        """`pod`'s range: the one it has, or the lowest free one (persisted before returning)."""
        return self._change(lambda t: allocate(t, pod))

    def release(self, pod: str) -> None:
        self._change(lambda t: (release(t, pod), None))

    def ranges(self) -> dict[str, IdRange]:
        with self._locked():
            return {pod: block_range(b) for pod, b in self._read().items()}
