"""LMDB transactions for the store: a write transaction that reports a full map clearly and
keeps the cache of folded states in step with what commits, and a pause of the cyclic garbage
collector for bounded bursts of allocation."""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lmdb

from store._errors import StoreFullError


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector around one bounded burst of allocations.

    Decoding a batch of changes or listing a long history allocates a few objects per item
    and keeps them all alive until the end; with the collector on, the growing set of
    survivors is scanned again and again (decoding a 15,000-change catch-up chunk cost 14-19
    µs a change instead of 8-9; listing 10,000 revisions varied from 40 to 130 ms). What is
    built here holds no reference cycles, so pausing loses nothing; the previous state is
    restored, and the collector runs on its own schedule afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class StateCache:
    """Decoded object states as of the last write transaction this store committed.

    Applying gossip touches the same objects batch after batch; decoding each one's stored state
    again costs more than folding the changes into it. A write transaction *takes* a state out
    (it may then change it in place) and the taken states go back only once the transaction has
    committed, so the cache never holds what was rolled back. LMDB numbers write transactions;
    one that does not follow this cache's last commit means another writer (another process
    or handle) changed the file in between, and the cache is dropped. Bounded, least recently
    used first out. Writers only: reads decode what they read.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[bytes, Any] = OrderedDict()
        self._taken: dict[bytes, Any] = {}
        self._txnid = -1

    def begin(self, txn: Any) -> None:
        self._taken.clear()
        if txn.id() != self._txnid + 1:
            self._states.clear()

    def take(self, key: bytes) -> Any:
        """The cached state of `key` (now this transaction's to change), or None. A state
        this transaction took already is given again, as it has changed it so far."""
        state = self._taken.get(key)
        return state if state is not None else self._states.pop(key, None)

    def keep(self, key: bytes, state: Any) -> None:
        """`state` is what `key` holds once this transaction commits."""
        self._taken[key] = state

    def committed(self, env: Any) -> None:
        self._txnid = env.info()["last_txnid"]
        states = self._states
        states.update(self._taken)
        self._taken.clear()
        while len(states) > self.capacity:
            states.popitem(last=False)

    def dropped(self) -> None:
        self._taken.clear()


class WriteTxn:
    """A write transaction that turns LMDB's MapFullError into a clear `StoreFullError` and
    tells the store's `StateCache` whether it committed."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._txn: Any = None

    def __enter__(self) -> Any:
        # LMDB lets one write transaction run at a time, but the cache's bookkeeping happens
        # after commit, outside LMDB's writer lock: threads of one process (the daemon's API
        # and its reconciler) take this lock for the whole transaction, bookkeeping included.
        self._store._write_lock.acquire()
        try:
            self._txn = self._store._env.begin(write=True)
            self._store._cache.begin(self._txn)
        except BaseException:
            self._store._write_lock.release()
            raise
        return self._txn

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        try:
            self._finish(exc_type)
        finally:
            self._store._write_lock.release()

    def _finish(self, exc_type: type[BaseException] | None) -> None:
        cache = self._store._cache
        if exc_type is not None:
            cache.dropped()
            self._txn.abort()
            if exc_type is lmdb.MapFullError:
                raise full_error(self._store) from None
            return
        try:
            self._txn.commit()
        except lmdb.MapFullError:
            cache.dropped()
            raise full_error(self._store) from None
        except BaseException:
            cache.dropped()
            raise
        cache.committed(self._store._env)


def full_error(store: Any) -> StoreFullError:
    size = store._env.info()["map_size"]
    shown = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size // 1024} KiB"
    return StoreFullError(
        f"the store at {store.path} is full (map size {shown}); nothing was "
        "written; reopen it with a larger map size (Store(map_size=...))"
    )
