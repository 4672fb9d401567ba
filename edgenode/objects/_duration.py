"""Durations, written the way people say them: `30s`, `5m`, `1h30m`.

A duration is whole hours, minutes and seconds, each unit at most once and largest first
(`1h30m`, `2m5s`, `0s`); the value is the sum in seconds. There are no days (write `24h`),
no fractions (write `1m30s`, not `1.5m`) and no bare numbers: `30` could mean seconds or
minutes, so a unit is always required. A manifest keeps the duration as the user wrote it;
`duration_seconds` turns it into an integer. Every error says what was wrong and what to write.
Pure: no I/O, no clocks.
"""

from __future__ import annotations

import re

from pydantic_core import PydanticCustomError

from edgenode.objects._errors import DurationError

DURATION_EXAMPLES = "30s, 5m or 1h30m"

_DURATION_RE = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]*)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_MAX_DIGITS = 9

# Units people write by habit, and what to write instead.
_UNIT_HABITS: dict[str, str] = {
    "d": "there is no unit for days; write hours, such as 24h",
    "ms": "durations count whole seconds; write 1s or more",
    "us": "durations count whole seconds; write 1s or more",
    "ns": "durations count whole seconds; write 1s or more",
    "sec": "write s, such as 30s",
    "secs": "write s, such as 30s",
    "second": "write s, such as 30s",
    "seconds": "write s, such as 30s",
    "min": "write m, such as 5m",
    "mins": "write m, such as 5m",
    "minute": "write m, such as 5m",
    "minutes": "write m, such as 5m",
    "hr": "write h, such as 1h",
    "hrs": "write h, such as 1h",
    "hour": "write h, such as 1h",
    "hours": "write h, such as 1h",
    "H": "units are lowercase; write h",
    "M": "units are lowercase; write m",
    "S": "units are lowercase; write s",
}


def _why_not(text: str) -> str:
    """Why `text`, which the grammar refused, is not a duration, and what to write."""
    if not text:
        return f"the duration is empty; write one such as {DURATION_EXAMPLES}"
    if text.strip() != text or " " in text:
        return f"write it without spaces, such as {DURATION_EXAMPLES}"
    if text.startswith("-"):
        return "a duration cannot be negative"
    if text.isdigit():
        return f"add a unit: {text}s for {text} seconds, or {text}m for {text} minutes"
    parts = _PART_RE.findall(text)
    if "".join(n + u for n, u in parts) != text:
        return f"write whole numbers each followed by h, m or s, such as {DURATION_EXAMPLES}"
    for number, unit in parts:
        if unit in _UNIT_HABITS:
            return _UNIT_HABITS[unit]
        if unit not in _UNIT_SECONDS:
            return f"{unit!r} is not a unit; use h, m and s"
        if "." in number:
            return "use whole numbers, such as 1m30s instead of 1.5m"
        if not unit:
            return f"add a unit after {number}: h, m or s"
    units = [u for _, u in parts]
    if len(set(units)) != len(units):
        return "write each unit once, such as 1h30m"
    return "write the units largest first: hours, then minutes, then seconds (1h30m5s)"


def duration_seconds(text: object) -> int:
    """The number of seconds `text` (such as `1h30m`) stands for; `DurationError` if none."""
    if not isinstance(text, str):
        if isinstance(text, bool):
            raise DurationError(f"a duration is text such as {DURATION_EXAMPLES}, not a boolean")
        if isinstance(text, int | float):
            unit = f"; write {text}s for {text} seconds" if isinstance(text, int) else ""
            raise DurationError(f"a duration needs a unit, such as {DURATION_EXAMPLES}{unit}")
        raise DurationError(
            f"a duration is text such as {DURATION_EXAMPLES}, not {type(text).__name__}"
        )
    match = _DURATION_RE.match(text)
    if match is None or not text:
        raise DurationError(_why_not(text))
    total = 0
    for unit, seconds in _UNIT_SECONDS.items():
        digits = match.group(unit)
        if digits is None:
            continue
        if len(digits) > _MAX_DIGITS:
            raise DurationError(f"{digits}{unit} is too long a duration")
        total += int(digits) * seconds
    return total


def format_duration(seconds: int) -> str:
    """The shortest duration text for a whole number of seconds (`5400` -> `1h30m`)."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    text += f"{secs}s" if secs or not text else ""
    return text


def duration_within(
    value: object, *, low_s: int, high_s: int, field: str, longest: str | None = None
) -> str:
    """`value` if it is a duration from `low_s` to `high_s` seconds; else a pydantic error
    (type ``duration``) whose reason says what is wrong and names `field` (for schemas).
    `longest`: how to say `high_s` (default: as a duration, such as 1h)."""
    try:
        seconds = duration_seconds(value)
    except DurationError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from exc
    if seconds > high_s:
        reason = f"{value} is longer than {longest or format_duration(high_s)}, the longest {field}"
    elif seconds < low_s:
        reason = f"{value} is shorter than {format_duration(low_s)}, the shortest {field}"
    else:
        assert isinstance(value, str)
        return value
    raise PydanticCustomError("duration", "{reason}", {"reason": reason})
