"""Asking another node: the request and answer messages of the mesh's ``ask`` channel.

Theory of operation. Some read verbs answer from data only the node running a pod holds (its
logs, its workflow runs, why it does or does not run). Any node can still answer them: it asks
the pod's node over the authenticated transport and relays the answer. A message is one
canonical CBOR array::

    request = [1, id, verb, args]           args: a map of JSON values
    answer  = [2, id, true, result]         result: JSON values
            | [2, id, false, [message, exit]]

``id`` is the asker's number for the request (< 2**32). `decode` never raises: a peer's bad
bytes come back as a `Rejected` with the reason. Only the verbs in `ANSWERED` are answered
for a peer, and never forwarded again (a forwarded request carries ``forwarded: true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

REQUEST = 1
ANSWER = 2
MAX_ID = 2**32 - 1
ANSWERED = frozenset({"logs", "workflow", "why"})
"""The read verbs a node answers for its peers: each reads what only the pod's node holds."""


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    verb: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    id: int
    ok: bool
    result: Any
    """The verb's result when ok, else ``(message, exit code)``."""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


def encode(message: Request | Answer) -> bytes:
    if isinstance(message, Request):
        return cbor2.dumps([REQUEST, message.id, message.verb, message.args], canonical=True)
    result = message.result if message.ok else list(message.result)
    return cbor2.dumps([ANSWER, message.id, message.ok, result], canonical=True)


def decode(data: bytes) -> Request | Answer | Rejected:
    try:
        raw = cbor2.loads(data)
    except (ValueError, TypeError, EOFError, cbor2.CBORDecodeError) as exc:
        return Rejected(f"not CBOR: {exc}")
    if not isinstance(raw, list) or len(raw) != 4:
        return Rejected("expected a 4-item array")
    kind, rid, a, b = raw
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= MAX_ID:
        return Rejected(f"request id: expected 0..{MAX_ID}, got {rid!r}")
    if kind == REQUEST:
        if not isinstance(a, str) or not isinstance(b, dict):
            return Rejected("request: expected a verb (text) and arguments (a map)")
        return Request(rid, a, b)
    if kind == ANSWER:
        if not isinstance(a, bool):
            return Rejected("answer: expected ok to be a boolean")
        if not a and not (
            isinstance(b, list)
            and len(b) == 2
            and isinstance(b[0], str)
            and isinstance(b[1], int)
            and not isinstance(b[1], bool)
        ):
            return Rejected("answer: expected an error as [message, exit code]")
        return Answer(rid, a, b if a else (b[0], b[1]))
    return Rejected(f"expected kind {REQUEST} or {ANSWER}, got {kind!r}")
