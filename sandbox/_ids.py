"""Id ranges for pods' user namespaces: allocated once, never overlapping.

Theory of operation. Each pod gets `RANGE_SIZE` (65,536) consecutive host ids, so ids 0..65535
inside its user namespace are host ids nobody else has: not the node's own users (below
`FIRST_BASE`), not another pod's. Ranges are aligned blocks numbered from `FIRST_BASE`; a pod
keeps its block for its whole life (restarts, updates, node reboots) and frees it when deleted,
and the lowest free block is reused first. Pure: the shell (`sandbox.ids`) persists the table.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox._oci import IdRange

RANGE_SIZE = 1 << 16
FIRST_BASE = 1 << 20
"""Host ids below this (1,048,576) are left to the node: its users and its subordinate id
ranges (/etc/subuid usually starts at 100,000 and hands out blocks of 65,536)."""
MAX_BLOCKS = ((1 << 32) - 1 - FIRST_BASE) // RANGE_SIZE
"""How many blocks fit below the largest id the kernel maps (2^32 - 2)."""


class IdsExhaustedError(RuntimeError):
    pass


def allocate(table: Mapping[str, int], pod: str) -> tuple[dict[str, int], IdRange]:
    """`table` maps pods to block numbers; returns the new table and `pod`'s range (its
    existing one if it has one)."""
    if pod in table:
        return dict(table), block_range(table[pod])
    used = set(table.values())
    block = next((b for b in range(len(used) + 1) if b not in used), None)
    if block is None or block >= MAX_BLOCKS:
        raise IdsExhaustedError(
            f"no id range left for pod {pod}: all {MAX_BLOCKS} ranges of {RANGE_SIZE} ids are "
            "in use; delete pods that are gone"
        )
    new = dict(table)
    new[pod] = block
    return new, block_range(block)


def release(table: Mapping[str, int], pod: str) -> dict[str, int]:
    return {p: b for p, b in table.items() if p != pod}


def block_range(block: int) -> IdRange:
    return IdRange(FIRST_BASE + block * RANGE_SIZE, RANGE_SIZE)
