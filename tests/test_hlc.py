"""The hybrid logical clock, stepped by hand."""

from __future__ import annotations

import pytest

from store import ClockDriftError, Hlc, HlcConfig, HybridClock


def test_local_timestamps_follow_physical_time_and_break_ties_with_the_counter() -> None:
    c = HybridClock()
    assert c.now(physical_ms=1000) == Hlc(1000, 0)
    assert c.now(physical_ms=1000) == Hlc(1000, 1)
    assert c.now(physical_ms=1005) == Hlc(1005, 0)


def test_timestamps_never_go_back_when_the_physical_clock_does() -> None:
    c = HybridClock()
    a = c.now(physical_ms=2000)
    b = c.now(physical_ms=1000)
    assert b > a and b == Hlc(2000, 1)


def test_observing_a_remote_timestamp_orders_later_events_after_it() -> None:
    c = HybridClock()
    c.now(physical_ms=1000)
    c.observe(Hlc(1500, 7), physical_ms=1000)
    assert c.now(physical_ms=1000) > Hlc(1500, 7)


def test_a_remote_timestamp_beyond_the_drift_bound_is_refused_and_changes_nothing() -> None:
    c = HybridClock(config=HlcConfig(max_drift_ms=1000))
    c.now(physical_ms=10_000)
    before = c.last
    with pytest.raises(ClockDriftError, match=r"2.5 s ahead .* drift bound of 1.0 s"):
        c.check(Hlc(12_500, 0), physical_ms=10_000, what="change x:1")
    assert c.last == before
    c.check(Hlc(10_900, 0), physical_ms=10_000, what="change x:2")


def test_the_drift_bound_must_be_in_range() -> None:
    with pytest.raises(ValueError, match=r"max_drift_ms must be 1000\.\.86400000"):
        HlcConfig(max_drift_ms=5)
