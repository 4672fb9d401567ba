"""Small JSON tables of a node's sandbox, changed safely by several processes at once.

A table is one small JSON file, changed only under an exclusive lock on a side file
(``<table>.lock``) and replaced atomically (write, fsync, rename, fsync the directory): a crash
leaves either the old table or the new one, never a mix, and two processes changing it at once
see each other's change. `sandbox.idtable` (the pods' id ranges) and `sandbox.porttable` (their
host ports) keep their tables this way.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


class TableCorruptError(RuntimeError):
    """A table's file cannot be read as a table; it was left as it is."""


class JsonTable(Generic[V]):
    """The table at `path`; `what` names it in errors, `check` turns its decoded JSON into the
    table or raises `ValueError` saying what was expected. A missing file is `empty()`."""

    def __init__(
        self, path: Path, *, what: str, check: Callable[[object], V], empty: Callable[[], V]
    ) -> None:
        self.path = path
        self.what = what
        self._check = check
        self._empty = empty
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

    def _read(self) -> V:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return self._empty()
        try:
            return self._check(json.loads(raw))
        except ValueError as exc:
            raise TableCorruptError(
                f"{self.what} {self.path} is unreadable ({exc}); it was left as it is. "
                "Restore it from a backup, or rebuild it from the pods' records"
            ) from None

    def _write(self, table: V) -> None:
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

    def change(self, fn: Callable[[V], tuple[V, T]]) -> T:
        """Apply `fn` (the table -> the new table and a result) under the lock; the new table
        is on disk before the result is returned. If `fn` raises, nothing is written."""
        with self._locked():
            table = self._read()
            new, result = fn(table)
            if new != table:
                self._write(new)
            return result

    def read(self) -> V:
        with self._locked():
            return self._read()
