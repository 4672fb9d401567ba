"""The local API's wire format: one JSON object per line over a root-only unix socket.

A client sends requests ``{"id": N, "verb": "get", "args": {...}}``; the daemon answers each
with ``{"id": N, "ok": true, "result": ...}`` or ``{"id": N, "ok": false, "error": {"message":
..., "exit": CODE}}``. A streaming verb (``logs --follow``) first sends any number of
``{"id": N, "item": ...}`` lines, then its final answer. Lines are capped at `MAX_LINE` bytes
on both sides; anything else is refused with exit code `EXIT_PROTOCOL`.

The exit codes are the CLI's (documented in ``docs/cli.md``): the daemon picks the code, the
client exits with it, so a script sees the same meaning whichever side found the problem.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 64 * 1024 * 1024
"""The longest line either side accepts (a large manifest or history fits; a runaway does not)."""

EXIT_OK = 0
EXIT_FAILED = 1
"""The operation was valid but failed (a runtime error, a step of a workflow failed)."""
EXIT_INVALID = 2
"""Invalid input: a manifest, an argument, a field; nothing was changed."""
EXIT_UNCONFIRMED = 3
"""A change adds an insecure setting that was not confirmed; nothing was changed."""
EXIT_NOT_FOUND = 4
"""No such object (or container, or revision)."""
EXIT_REFUSED = 5
"""The store refused the change: a field owned by another manager, a conflict."""
EXIT_UNAVAILABLE = 69
"""The daemon could not be reached (sysexits' EX_UNAVAILABLE)."""
EXIT_PROTOCOL = 76
"""The other side broke the protocol (sysexits' EX_PROTOCOL)."""


class ApiError(Exception):
    """An error to send to the client: its message and the exit code it should end with."""

    def __init__(self, message: str, exit: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit = exit


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One line as an object, or `ApiError` saying what is wrong with it."""
    if len(line) > MAX_LINE:
        raise ApiError(f"line of {len(line)} bytes is over the {MAX_LINE} limit", EXIT_PROTOCOL)
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ApiError(f"not JSON: {exc}", EXIT_PROTOCOL) from None
    if not isinstance(message, dict):
        raise ApiError(f"expected a JSON object, got {type(message).__name__}", EXIT_PROTOCOL)
    return message
