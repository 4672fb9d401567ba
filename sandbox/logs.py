"""Reading a container's logs: the last lines across rotated files, and following new ones.

A container's monitor (``monitor.c``) writes CRI-format lines
(``<time> <stream> <F|P> <text>``) to ``container.log`` and rotates it to ``container.log.1``
.. ``.N``. `read` returns whole lines (partial ``P`` pieces joined) oldest first; with
`follow` it keeps yielding new lines, across rotations, until `until()` says to stop (the
daemon stops following when the container is finished and its file is drained, like
``kubectl logs -f``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

LOG_NAME = "container.log"
FOLLOW_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class LogLine:
    time: str
    """RFC 3339, UTC, microseconds."""
    stream: str
    """``stdout`` or ``stderr``."""
    text: str

    def render(self, *, timestamps: bool = False) -> str:
        return f"{self.time} {self.text}" if timestamps else self.text


class _Parser:
    """Joins ``P`` pieces into whole lines, per stream."""

    def __init__(self) -> None:
        self._partial: dict[str, str] = {}

    def feed(self, raw: bytes) -> LogLine | None:
        parts = raw.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            return None  # not a line the monitor wrote; skipped
        stamp, stream, flag = (p.decode("ascii", "replace") for p in parts[:3])
        text = parts[3].decode("utf-8", "replace") if len(parts) == 4 else ""
        if flag == "P":
            self._partial[stream] = self._partial.get(stream, "") + text
            return None
        return LogLine(stamp, stream, self._partial.pop(stream, "") + text)


def files(directory: Path) -> list[Path]:
    """The log files of a container, oldest first."""
    rotated = sorted(
        (p for p in directory.glob(LOG_NAME + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    current = directory / LOG_NAME
    return [*rotated, *([current] if current.exists() else [])]


def read(
    directory: Path,
    *,
    tail: int | None = None,
    follow: bool = False,
    until: Callable[[], bool] | None = None,
    streams: frozenset[str] = frozenset({"stdout", "stderr"}),
) -> Iterator[LogLine]:
    """Lines of the container whose logs are in `directory` (see the module docstring)."""
    parser = _Parser()
    kept: deque[LogLine] | list[LogLine] = deque(maxlen=tail) if tail is not None else []
    current = directory / LOG_NAME
    inode, offset = None, 0
    for path in files(directory):
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            continue  # rotated away since listed: its lines are in the next file
        with handle as f:
            for raw in f:
                if path == current and not raw.endswith(b"\n"):
                    break  # being written: picked up by follow
                line = parser.feed(raw)
                if line is not None and line.stream in streams:
                    kept.append(line)
                if path == current:
                    offset = f.tell()
            if path == current:
                inode = os.fstat(f.fileno()).st_ino
    if tail == 0:
        kept.clear()
    yield from kept
    if not follow:
        return
    stop = until or (lambda: False)
    while True:
        finished = stop()  # checked before reading, so nothing written before it is lost
        try:
            opened: BinaryIO | None = open(current, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            opened = None
        if opened is not None:
            with opened as f:
                now_inode = os.fstat(f.fileno()).st_ino
                if now_inode != inode:
                    # Rotated: finish the old file (now .1) from where we were, then start anew.
                    yield from _rest_of(directory / f"{LOG_NAME}.1", inode, offset, parser, streams)
                    inode, offset = now_inode, 0
                f.seek(offset)
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break
                    offset += len(raw)
                    line = parser.feed(raw)
                    if line is not None and line.stream in streams:
                        yield line
        if finished:
            return
        time.sleep(FOLLOW_POLL_S)


def _rest_of(
    path: Path, inode: int | None, offset: int, parser: _Parser, streams: frozenset[str]
) -> Iterator[LogLine]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with f:
        if os.fstat(f.fileno()).st_ino != inode:
            return
        f.seek(offset)
        for raw in f:
            line = parser.feed(raw)
            if line is not None and line.stream in streams:
                yield line
