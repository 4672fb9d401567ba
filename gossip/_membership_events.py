"""The membership core's events, its member records and its table of claim transitions.

Theory of operation. What a `Membership` core reports is a stream of past-tense frozen
dataclasses (`MembershipEvent`), drained with ``next_event``; what it holds of each member is
a `Member`. How a claim about another member (an `Update` from gossip or a member list)
changes what is held is data, not code: `TRANSITIONS` maps (the state held, or None if the
member is unknown; the claimed state) to the incarnation the claim needs against the held one
(`Need`) and the event it raises. A pair not in the table is ignored. Claims about the node
itself are not in the table: the core refutes them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gossip._membership_wire import MemberState, NodeId

__all__ = [
    "TRANSITIONS",
    "Member",
    "MemberAlive",
    "MemberDead",
    "MemberJoined",
    "MemberLeft",
    "MemberSuspected",
    "MemberUpdated",
    "MembershipEvent",
    "MessageRejected",
    "Need",
]


@dataclass(frozen=True, slots=True)
class Member:
    node: NodeId
    state: MemberState
    incarnation: int
    meta: bytes = b""
    """The member's opaque metadata (0..`MAX_META_BYTES` bytes) as of its last alive claim."""


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member is new to us, or came back alive after being dead or gone."""

    node: NodeId
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    node: NodeId
    incarnation: int
    by: NodeId


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """A suspected member refuted the suspicion (a higher incarnation)."""

    node: NodeId
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """A known member's metadata changed (after its MemberJoined or MemberAlive, if any)."""

    node: NodeId
    incarnation: int
    meta: bytes


@dataclass(frozen=True, slots=True)
class MemberDead:
    node: NodeId
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberLeft:
    node: NodeId
    incarnation: int


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A peer sent bytes that are not a valid message; they were ignored."""

    sender: NodeId
    reason: str


MembershipEvent = (
    MemberJoined
    | MemberSuspected
    | MemberAlive
    | MemberUpdated
    | MemberDead
    | MemberLeft
    | MessageRejected
)


class Need(enum.Enum):
    """What a claim's incarnation must be, against the one we hold, to be accepted."""

    ANY = "any"
    NEWER = ">"
    AT_LEAST = ">="


_A, _S, _D, _L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
TRANSITIONS: Mapping[
    tuple[MemberState | None, MemberState], tuple[Need, type[MembershipEvent] | None]
] = MappingProxyType(
    {
        # (what we hold, or None if unknown; the claim) -> (incarnation needed, event)
        # The new state is always the claim's. A pair not listed is ignored.
        (None, _A): (Need.ANY, MemberJoined),
        (_A, _A): (Need.NEWER, None),
        (_S, _A): (Need.NEWER, MemberAlive),
        (_D, _A): (Need.NEWER, MemberJoined),
        (_L, _A): (Need.NEWER, MemberJoined),
        (_A, _S): (Need.AT_LEAST, MemberSuspected),
        (_S, _S): (Need.NEWER, MemberSuspected),  # same incarnation: a confirmation instead
        (_A, _D): (Need.AT_LEAST, MemberDead),
        (_S, _D): (Need.AT_LEAST, MemberDead),
        (_A, _L): (Need.AT_LEAST, MemberLeft),
        (_S, _L): (Need.AT_LEAST, MemberLeft),
        (_D, _L): (Need.AT_LEAST, MemberLeft),
    }
)
"""How a claim about another member changes what we hold (claims about us are refuted)."""
