"""The failure detector's bookkeeping: a probe in flight, a helper's relay, a suspicion.

Theory of operation. Plain records that `Membership` keeps and times by the ``now`` it is
given; nothing here sends or decides what to send.

- A `Probe` is this period's ping of one member: its seq, when to ask helpers (and send the
  reliable fallback ping, with its own seq), and what came back (a datagram ack, helpers'
  nacks, the reliable ack).
- A `Relay` is a ping this node sends for a helper's requester: whom to ack or nack, by when.
- A `Suspicion` (Lifeguard) is started when a member is first suspected, with ``n`` the alive
  or suspected members (the suspecting node included) at that moment::

    min = suspicion_mult × max(1, log10(n)) × probe_interval_s
    max = suspicion_max_timeout_mult × min
    k   = suspicion_mult − 2, or 0 if n − 2 < k         (independent confirmations wanted)
    timeout(c) = max(min, max − (max − min) × log(c + 1) / log(k + 1))   (min if k = 0)

  where ``c`` counts the *other* members whose suspicion of it (at the same incarnation)
  reached us: each one shrinks the timeout, so a member that many find silent is declared
  dead sooner. ``at`` is the absolute deadline, kept up to date by `Suspicion.confirm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gossip._membership_config import MembershipConfig
from gossip._membership_wire import NodeId

__all__ = ["Probe", "Relay", "Suspicion"]


@dataclass(slots=True)
class Probe:
    target: NodeId
    seq: int
    indirect_at: float
    acked: bool = False  # by a datagram, direct or relayed
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    reliable_seq: int = 0  # the fallback ping's own seq (0: none sent)
    reliable_until: float = 0.0  # when the fallback is given up on
    reliable_acked: bool = False


@dataclass(slots=True)
class Relay:
    requester: NodeId
    seq: int
    deadline: float


@dataclass(slots=True)
class Suspicion:
    started: float
    by: NodeId
    k: int
    min_s: float
    max_s: float
    confirmers: set[NodeId] = field(default_factory=set)  # ``by`` and the confirmations
    at: float = 0.0  # the deadline, kept by `_update`

    @classmethod
    def start(cls, config: MembershipConfig, *, n: int, by: NodeId, now: float) -> Suspicion:
        """A suspicion by ``by`` starting at ``now`` among ``n`` alive or suspected members."""
        min_s = config.suspicion_mult * max(1.0, math.log10(max(n, 1))) * config.probe_interval_s
        k = config.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        suspicion = cls(now, by, k, min_s, config.suspicion_max_timeout_mult * min_s, {by})
        suspicion._update()
        return suspicion

    def confirm(self, by: NodeId) -> bool:
        """Count ``by``'s suspicion of the same member; whether it was new (and counted)."""
        if by in self.confirmers:
            return False
        self.confirmers.add(by)
        self._update()
        return True

    def _update(self) -> None:
        if self.k <= 0:  # too few members to wait for confirmations
            self.at = self.started + self.min_s
            return
        c = len(self.confirmers) - 1
        frac = math.log(c + 1) / math.log(self.k + 1)
        self.at = self.started + max(self.min_s, self.max_s - (self.max_s - self.min_s) * frac)
