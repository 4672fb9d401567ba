"""Pods' address leases on a node, as a pure table: who has which index, which is next.

Theory of operation. A lease is a pod's *index* (its IPv6 interface id in the node's /64) and
its IPv4 *offset* (in `POD_IPV4`). A pod keeps its lease for its whole life on the node (in-place
restarts and updates, daemon restarts, a renumbered /64: only the prefix changes) and frees it
when deleted. Indexes are handed out in a rising sequence that wraps only after 2^32 - 2, so an
address a deleted pod had is not soon given to another pod (a peer holding the old one must not
reach the new pod by mistake). IPv4 offsets are node-local and few: the lowest free one, not
used by any pod of this node nor by a route the caller found in the kernel (`foreign`: another
node's pods sharing this network namespace, say two daemons on one machine).

The table is plain JSON data, ``{"next": int, "pods": {pod: {"index": int, "ipv4": int}}}``;
the shell (`edgenode.network.leases`) persists it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from edgenode.network._addressing import FIRST_INDEX, MAX_INDEX, POD_IPV4

Table = dict[str, Any]
IPV4_LAST = POD_IPV4.num_addresses - 2


class LeasesExhaustedError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Lease:
    index: int
    ipv4: int


def empty() -> Table:
    return {"next": FIRST_INDEX, "pods": {}}


def check(raw: object) -> Table:
    """`raw` if it is a lease table, else `ValueError` saying what is wrong."""
    if not isinstance(raw, dict) or not isinstance(raw.get("next"), int):
        raise ValueError('expected an object with "next" (an integer) and "pods"')
    pods = raw.get("pods")
    if not isinstance(pods, dict):
        raise ValueError('"pods": expected an object of pod name to lease')
    for pod, lease in pods.items():
        if not (
            isinstance(lease, dict)
            and isinstance(lease.get("index"), int)
            and isinstance(lease.get("ipv4"), int)
        ):
            raise ValueError(f'"pods.{pod}": expected {{"index": int, "ipv4": int}}, got {lease!r}')
    return raw


def leases(table: Mapping[str, Any]) -> dict[str, Lease]:
    return {p: Lease(v["index"], v["ipv4"]) for p, v in table["pods"].items()}


def allocate(
    table: Mapping[str, Any], pod: str, *, foreign: Collection[int] = ()
) -> tuple[Table, Lease]:
    """The new table and `pod`'s lease (its existing one if it has one)."""
    held = leases(table)
    if pod in held:
        return {"next": table["next"], "pods": dict(table["pods"])}, held[pod]
    if len(held) >= IPV4_LAST - FIRST_INDEX + 1:
        raise LeasesExhaustedError(
            f"no address left for pod {pod}: all {len(held)} leases of this node are in use; "
            "delete pods that are gone"
        )
    used = {lease.index for lease in held.values()}
    index = int(table["next"])
    while index in used or not FIRST_INDEX <= index <= MAX_INDEX:
        index = index + 1 if FIRST_INDEX <= index < MAX_INDEX else FIRST_INDEX
    taken = {lease.ipv4 for lease in held.values()} | set(foreign)
    ipv4 = next((o for o in range(FIRST_INDEX, IPV4_LAST + 1) if o not in taken), None)
    if ipv4 is None:
        raise LeasesExhaustedError(
            f"no IPv4 address left for pod {pod} in {POD_IPV4}: every one is used by a pod "
            "of this network namespace; delete pods that are gone"
        )
    pods = dict(table["pods"])
    pods[pod] = {"index": index, "ipv4": ipv4}
    following = index + 1 if index < MAX_INDEX else FIRST_INDEX
    return {"next": following, "pods": pods}, Lease(index, ipv4)


def release(table: Mapping[str, Any], pod: str) -> Table:
    return {"next": table["next"], "pods": {p: v for p, v in table["pods"].items() if p != pod}}


def move_ipv4(
    table: Mapping[str, Any], pod: str, *, foreign: Collection[int]
) -> tuple[Table, Lease]:
    """`pod`'s lease with a new IPv4 offset outside `foreign` (its own was found taken in the
    kernel by a pod of another node); the index stays."""
    held = leases(table)
    if pod not in held:
        raise KeyError(pod)
    rest = release(table, pod)
    moved, lease = allocate({**rest, "next": held[pod].index}, pod, foreign=foreign)
    return {**moved, "next": table["next"]}, lease
