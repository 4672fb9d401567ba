"""Watching the store: async notification of every applied change.

`Store.watch()` returns a `Watch`, an async iterator of `ChangeApplied` events for the kinds
(and names) asked for. Each watch has a bounded queue; a watcher that falls more than
`maxsize` events behind gets one `WatchOverflowed` instead of the events it missed and should
re-read what it cares about (the Kubernetes "resource version too old" contract, made explicit).
The store publishes after its transaction commits, from whatever thread wrote, so events are
handed to the watcher's event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from store._change import ChangeId


class ChangeApplied(NamedTuple):
    """A change applied to an object (a tuple: the store makes one per change it applies)."""

    change: ChangeId
    kind: str
    name: str
    revision: int
    local: bool


@dataclass(frozen=True, slots=True)
class WatchOverflowed:
    """Events were dropped because the watcher fell behind; re-read current state."""

    dropped: int


WatchEvent = ChangeApplied | WatchOverflowed


class Watch:
    def __init__(
        self,
        watchers: Watchers,
        *,
        kinds: Collection[str] | None,
        name: str | None,
        maxsize: int,
    ) -> None:
        self._watchers = watchers
        self._kinds = frozenset(kinds) if kinds is not None else None
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue(maxsize)
        self._dropped = 0

    def wants(self, event: ChangeApplied) -> bool:
        return (self._kinds is None or event.kind in self._kinds) and (
            self._name is None or event.name == self._name
        )

    def _offer(self, event: ChangeApplied) -> None:
        if self._dropped:
            self._dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._dropped = self._queue.maxsize + 1

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._dropped and self._queue.empty():
            dropped, self._dropped = self._dropped, 0
            return WatchOverflowed(dropped)
        return await self._queue.get()

    async def get(self, timeout: float | None = None) -> WatchEvent:
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        self._watchers.remove(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deliver(self, events: Iterable[ChangeApplied]) -> None:
        mine = [e for e in events if self.wants(e)]
        if not mine:
            return
        if self._loop.is_closed():
            self.close()
            return
        self._loop.call_soon_threadsafe(self._deliver_now, mine)

    def _deliver_now(self, events: list[ChangeApplied]) -> None:
        for e in events:
            self._offer(e)


class Watchers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: list[Watch] = []

    def add(
        self, *, kinds: Collection[str] | None = None, name: str | None = None, maxsize: int = 1024
    ) -> Watch:
        """A new watch; call from the event loop that will iterate it."""
        w = Watch(self, kinds=kinds, name=name, maxsize=maxsize)
        with self._lock:
            self._watches.append(w)
        return w

    def remove(self, w: Watch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def publish(self, events: list[ChangeApplied]) -> None:
        if not events:
            return
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.deliver(events)
