"""The membership core's tuning (`MembershipConfig`) and its caller-error type.

Theory of operation. A `MembershipConfig` is a frozen value checked whole when it is made:
each field's type and range, and the relations between fields (a probe's timeout must fall
inside its period). A bad value raises `MembershipError` naming the field, what was expected
and what was given; no core is ever built from it. Every field's docstring gives its unit, its
range and what tuning it does; docs/membership.md has the same as a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from gossip._membership_wire import MAX_META_BYTES

__all__ = [
    "MIN_MESSAGE_BYTES",
    "NACK_AFTER",
    "MembershipConfig",
    "MembershipError",
    "check_meta",
]

NACK_AFTER = 0.8
"""A ping-req helper nacks after this fraction of its ``probe_timeout_s`` without an ack."""
MIN_MESSAGE_BYTES = 1024
"""The smallest ``max_message_bytes``: room for any header, a belief about the receiver and
one update or member record, metadata included (at most 811 bytes together)."""


class MembershipError(ValueError):
    """The caller's mistake (a bad config or node id); nothing was changed."""


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Tuning of the membership protocol. The defaults suit a LAN of up to a few hundred nodes."""

    probe_interval_s: float = 0.8
    """Seconds per protocol period (one probe each), before local-health scaling; > 0. Lower
    detects failures sooner at the cost of more traffic; it also scales suspicion timeouts."""
    probe_timeout_s: float = 0.4
    """Seconds to wait for a direct ack before asking helpers, before local-health scaling;
    > 0 and < probe_interval_s. Set it above the network's round trip (p99). Helpers nack after
    0.8 × this, so nacks arrive in time only if 1.8 × this ≤ probe_interval_s."""
    indirect_probes: int = 3
    """How many members (0..16) are asked to ping a target that did not ack. More tolerate
    more lossy paths; 0 disables indirect probing."""
    suspicion_mult: int = 4
    """Minimum suspicion timeout in protocol periods, scaled by max(1, log10(n)); 1..100.
    Higher gives a suspected member more time to refute (fewer false deaths, slower
    detection). Also sets the confirmations wanted: suspicion_mult − 2."""
    suspicion_max_timeout_mult: int = 6
    """The maximum suspicion timeout (with no independent confirmations), as a multiple of
    the minimum; 1..100. 1 turns Lifeguard's shrinking timeout off."""
    retransmit_mult: int = 4
    """Each update is piggybacked retransmit_mult × ceil(log10(n + 1)) times; 1..100. Higher
    spreads updates more reliably through lossy networks, at the cost of message room."""
    max_local_health: int = 8
    """The cap (0..64) of the local health multiplier: a struggling node probes and times
    out at most (1 + this) times slower. 0 turns Lifeguard's local health off."""
    max_message_bytes: int = 1200
    """Hard cap on every message's size in bytes, sent or accepted; 1024..65507. Keep it under
    the path MTU's payload; larger carries more updates per message."""
    push_pull_interval_s: float = 30.0
    """Seconds between full-state exchanges (push-pull) with one random alive member and one
    random dead one, × (ceil(log2(n / 32)) + 1) when n > 32 alive or suspected members; 0 turns
    it off, else 1..86400. Repairs what gossip missed and merges a healed partition whose sides
    hold each other dead; lower merges sooner, at the cost of full member lists on the wire."""
    gossip_to_the_dead_s: float = 30.0
    """For this many seconds after declaring a member dead, each protocol period also sends one
    gossip message to a random such member, so one that was only cut off hears of its death
    and refutes; 0..86400 (0: off). Longer catches longer partitions without waiting for
    push-pull, at the cost of one message per period while anyone died recently."""
    reliable_fallback: bool = True
    """Whether a probe whose direct ping went unanswered for probe_timeout_s also pings its
    target once over the reliable channel (`Membership.reliable_messages_to_send`), alongside
    the ping-reqs; the target acks over the same channel, and that ack spares the target a
    suspicion. True or False. On, lost datagrams alone no longer cause suspicions (a
    retransmitting stream gets through), at the cost of one reliable ping and ack per probe
    whose direct ack was lost; a dead or cut-off target still goes unanswered, so detection
    is unchanged."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "reliable_fallback":
                if not isinstance(value, bool):
                    raise MembershipError(
                        f"MembershipConfig.{f.name}: expected True or False, got {value!r}"
                    )
                continue
            seconds = f.name.endswith("_s")
            allowed: tuple[type, ...] = (int, float) if seconds else (int,)
            if isinstance(value, bool) or not isinstance(value, allowed):
                want = "a number of seconds" if seconds else "an integer"
                raise MembershipError(f"MembershipConfig.{f.name}: expected {want}, got {value!r}")
        self._range("probe_interval_s", 1e-6, 3600.0)
        self._range("probe_timeout_s", 1e-6, 3600.0)
        if self.probe_timeout_s >= self.probe_interval_s:
            raise MembershipError(
                f"MembershipConfig.probe_timeout_s: expected less than probe_interval_s "
                f"({self.probe_interval_s}), got {self.probe_timeout_s}; lower it or raise "
                f"probe_interval_s"
            )
        self._range("indirect_probes", 0, 16)
        self._range("suspicion_mult", 1, 100)
        self._range("suspicion_max_timeout_mult", 1, 100)
        self._range("retransmit_mult", 1, 100)
        self._range("max_local_health", 0, 64)
        self._range("max_message_bytes", MIN_MESSAGE_BYTES, 65_507)
        if self.push_pull_interval_s != 0:
            self._range("push_pull_interval_s", 1.0, 86_400.0)
        self._range("gossip_to_the_dead_s", 0.0, 86_400.0)

    def _range(self, name: str, low: float, high: float) -> None:
        value = getattr(self, name)
        if not low <= value <= high or (isinstance(value, float) and not math.isfinite(value)):
            raise MembershipError(f"MembershipConfig.{name}: expected {low}..{high}, got {value!r}")


def check_meta(meta: object) -> None:
    """Raise `MembershipError` unless ``meta`` is bytes a member may carry."""
    if not isinstance(meta, bytes) or len(meta) > MAX_META_BYTES:
        size = f"{len(meta)} bytes" if isinstance(meta, bytes) else type(meta).__name__
        raise MembershipError(
            f"meta: expected at most {MAX_META_BYTES} bytes, got {size}; nothing was changed"
        )
