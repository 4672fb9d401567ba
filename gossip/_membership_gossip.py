"""What the membership core says about members on the wire, each claim encoded once.

Theory of operation. A `Member` record becomes a claim (`claim_of`): alive with its metadata,
suspect with its suspector, dead or left bare. `Piggyback` holds the claims waiting to ride
on outgoing messages (a `BroadcastQueue`: one per member, least-sent first) and the bytes of
each, so a claim is encoded once however often it is sent: the queued claim's bytes, the last
claim decoded about each member (``memo``, kept by `decode`), and the record sent in member
lists, cached while the record and its suspicion are the same objects.
"""

from __future__ import annotations

from gossip._membership_detection import Suspicion
from gossip._membership_events import Member
from gossip._membership_wire import BroadcastQueue, MemberState, NodeId, Update, encode_update

__all__ = ["Piggyback", "claim_of"]


def claim_of(member: Member, suspicion: Suspicion | None, me: NodeId) -> Update:
    """The claim stating what we hold of ``member``; a suspect's names its suspector (``me``
    if we hold no suspicion of it)."""
    if member.state is MemberState.ALIVE:
        return Update(member.state, member.node, member.incarnation, None, member.meta)
    by = None
    if member.state is MemberState.SUSPECT:
        by = suspicion.by if suspicion is not None else me
    return Update(member.state, member.node, member.incarnation, by)


class Piggyback:
    """Queued claims and the encoding caches; see the module's theory of operation."""

    def __init__(self) -> None:
        self.queue = BroadcastQueue()
        self.memo: dict[str, tuple[Update, bytes]] = {}  # decode's cache per node
        self._wire: dict[NodeId, tuple[Update, bytes]] = {}
        self._records: dict[NodeId, tuple[Member, Suspicion | None, bytes]] = {}

    def put(self, update: Update) -> None:
        """Queue ``update`` to be piggybacked, replacing any queued claim about its member."""
        self.queue.put(update, self.encoded(update))

    def encoded(self, update: Update) -> bytes:
        """``update``'s encoding, kept per member while it is the one we send about it."""
        cached = self._wire.get(update.node) or self.memo.get(update.node)
        if cached is not None and cached[0] == update:
            return cached[1]
        data = encode_update(update)
        self._wire[update.node] = (update, data)
        return data

    def record(self, member: Member, suspicion: Suspicion | None, me: NodeId) -> bytes:
        """The encoding of our record of ``member`` (for member lists), kept while it holds."""
        cached = self._records.get(member.node)
        if cached is not None and cached[0] is member and cached[1] is suspicion:
            return cached[2]
        data = self.encoded(claim_of(member, suspicion, me))
        self._records[member.node] = (member, suspicion, data)
        return data
