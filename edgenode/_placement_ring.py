"""The hash ring placement chooses nodes with: each node's points, each pod's point, a view's
ring and the ring of the nodes that take one selector's pods.

Theory of operation. A node has `POINTS` points on a 64-bit ring, a pod one point, both from
BLAKE2b of their names, so they are the same in every process and on every machine. A pod
prefers the node whose nearest point follows its own clockwise (`edgenode._placement.pair_score`):
a walk from the pod's point meets the nodes in its order of preference. The ring of a view
(its node names) and the ring of the nodes that may take one selector's pods are cached by
those names: a view changes far less often than placement reads it, and the rings of 1000
nodes hold 64,000 points. Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

POINTS = 64
"""Points of each node on the hash ring (a multiple of 8, >= 8). More spreads pods more evenly
(a node's share varies by about 1/sqrt(POINTS)) and costs ring memory and build time."""

RING = 1 << 64
"""The ring's size: points are 64-bit."""

UNLIMITED = 1 << 62
"""Free cpu or memory of a node without a declared capacity."""


class Ring:
    """The hash ring of the alive nodes that match one selector, with upper bounds of their
    free cpu and memory (a pod larger than a bound cannot fit: no walk)."""

    def __init__(self, members: frozenset[str], view: tuple[str, ...]) -> None:
        self.points, self.owners = members_ring(view, members)
        self.size = len(members)
        self.cpu_bound = UNLIMITED
        self.memory_bound = UNLIMITED


@lru_cache(maxsize=4)
def whole_ring(names: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The ring of every node of a view (names sorted): points in order and their owners.
    Equal points order by node name. Cached: a view changes far less often than it is read."""
    bits = len(names).bit_length()
    ranked = sorted(
        point << bits | i for i, name in enumerate(names) for point in node_points(name)
    )
    low = (1 << bits) - 1
    return tuple(r >> bits for r in ranked), tuple(names[r & low] for r in ranked)


@lru_cache(maxsize=8)
def members_ring(
    names: tuple[str, ...], members: frozenset[str]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The ring of `names` kept to the points of `members`. Cached as the whole ring is: the
    nodes that take a selector's pods change only when the view does."""
    points, owners = whole_ring(names)
    if len(members) == len(names):
        return points, owners
    kept = [i for i, owner in enumerate(owners) if owner in members]
    return tuple(points[i] for i in kept), tuple(owners[i] for i in kept)


def pod_point(pod: str) -> int:
    """The pod's point on the ring."""
    return int.from_bytes(hashlib.blake2b(pod.encode(), digest_size=8, person=b"pod").digest())


@lru_cache(maxsize=1 << 14)
def node_points(node: str) -> tuple[int, ...]:
    """The node's `POINTS` ring points (stable across processes and machines)."""
    out: list[int] = []
    for k in range(POINTS // 8):
        digest = hashlib.blake2b(
            node.encode(), digest_size=64, person=b"node", salt=bytes([k])
        ).digest()
        out += [int.from_bytes(digest[i : i + 8]) for i in range(0, 64, 8)]
    return tuple(out)
