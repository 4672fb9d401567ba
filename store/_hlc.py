"""Hybrid logical clocks.

Theory of operation: a timestamp is ``(wall_ms, counter)``. ``wall_ms`` follows the largest
physical time seen (ours or any peer's), ``counter`` orders events within one millisecond, and
the origin's id breaks the last tie, so ``(hlc, origin)`` totally orders every change in the
cluster while staying close to real time and respecting causality: a change made after seeing
another always sorts after it.

The clock never reads time itself: callers pass ``physical_ms``. A peer's timestamp more than
``max_drift_ms`` ahead of our physical clock is refused (`ClockDriftError`) before anything is
updated, so one node with a bad clock cannot drag every other clock into the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from store._errors import ClockDriftError

MAX_COUNTER = 2**32 - 1


class Hlc(NamedTuple):
    """A timestamp; ordered as a tuple (wall_ms, counter)."""

    wall_ms: int
    counter: int

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.counter}"


@dataclass(frozen=True, slots=True)
class HlcConfig:
    """max_drift_ms: how far (milliseconds) a peer's clock may run ahead of ours before its
    changes are refused. Larger tolerates worse clocks; smaller limits how far one bad clock
    can push timestamps. Range 1 s .. 1 day; default 60 s."""

    max_drift_ms: int = 60_000

    def __post_init__(self) -> None:
        if not 1_000 <= self.max_drift_ms <= 86_400_000:
            raise ValueError(f"max_drift_ms must be 1000..86400000, got {self.max_drift_ms}")


class HybridClock:
    def __init__(self, last: Hlc | None = None, *, config: HlcConfig | None = None) -> None:
        self.last = last or Hlc(0, 0)
        self.config = config or HlcConfig()

    def now(self, *, physical_ms: int) -> Hlc:
        """A timestamp for a local event, later than every timestamp seen so far."""
        last = self.last
        if physical_ms > last.wall_ms:
            nxt = Hlc(physical_ms, 0)
        else:
            nxt = _bump(last.wall_ms, last.counter + 1)
        self.last = nxt
        return nxt

    def check(self, remote: Hlc, *, physical_ms: int, what: str) -> None:
        """Refuse a remote timestamp beyond the drift bound; changes nothing."""
        ahead = remote.wall_ms - physical_ms
        if ahead > self.config.max_drift_ms:
            raise ClockDriftError(
                f"{what} is stamped {ahead / 1000:.1f} s ahead of this node's clock, more than "
                f"the drift bound of {self.config.max_drift_ms / 1000:.1f} s; its origin's clock "
                "is wrong (or ours is): fix the clock, the change is accepted once it is within "
                "the bound; nothing was written"
            )

    def observe(self, remote: Hlc, *, physical_ms: int) -> Hlc:
        """Merge a (checked) remote timestamp; the clock stays ahead of everything seen."""
        last = self.last
        wall = max(last.wall_ms, remote.wall_ms, physical_ms)
        if wall == last.wall_ms == remote.wall_ms:
            counter = max(last.counter, remote.counter) + 1
        elif wall == last.wall_ms:
            counter = last.counter + 1
        elif wall == remote.wall_ms:
            counter = remote.counter + 1
        else:
            counter = 0
        self.last = _bump(wall, counter)
        return self.last


def _bump(wall: int, counter: int) -> Hlc:
    if counter > MAX_COUNTER:
        # Over 4 billion events in one millisecond: move the wall clock on instead.
        return Hlc(wall + 1, 0)
    return Hlc(wall, counter)
