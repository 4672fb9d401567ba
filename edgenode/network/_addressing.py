"""Pod addressing as pure functions: the cluster's /48, each node's /64, each pod's addresses.

Theory of operation. Every derivation is a hash, so every node computes the same answer alone:

- The cluster's ULA /48 is ``fd`` + 40 bits of a hash of the cluster id (RFC 4193;
  `gossip._credentials.ula_prefix`, kept in the cluster's description).
- A node's /64 takes the 16-bit subnet id `subnet_id(node, counter)` in that /48, counter 0
  first. Two nodes may hash to the same /64: each node publishes its claim (prefix, counter and
  when it first claimed it) in its Node status, and `settle` decides every collision the same way
  on every node: the earliest claim keeps the prefix (ties: the lower node name), so a node
  that has run pods for months is never renumbered by a newcomer. A node that lost moves to
  the next counter whose /64 nobody else claims (`next_claim`).
- A pod's IPv6 address is its node's /64 with the pod's lease index as the interface id
  (``<prefix>::<index>``); indexes 0 and 1 are never leased. Its IPv4 address is node-local,
  from `POD_IPV4` (100.64.0.0/16), only for egress: it is masqueraded at the node and never
  routed between nodes, so every node may use the same range.
- Inside a pod, ``eth0`` has the pod's /128 and /32 and default routes via the node side of
  its veth, which answers at `GATEWAY_V6` (fe80::1) and `GATEWAY_V4` (169.254.1.1): the same on
  every pod link, so a pod's routes never change when its node is renumbered.

Nothing here reads the kernel, a file or a clock: the shells (`edgenode.network.*`) do.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass

SUBNET_BITS = 16
POD_IPV4 = ipaddress.IPv4Network("100.64.0.0/16")
"""Pods' node-local IPv4 addresses (part of the shared address space of RFC 6598)."""
GATEWAY_V6 = "fe80::1"
GATEWAY_V4 = "169.254.1.1"
FIRST_INDEX = 2
"""The lowest lease index: ``::0`` is the subnet-router anycast address, ``::1`` is left out."""
MAX_INDEX = (1 << 32) - 1
LINK_PREFIX = "edn"
"""Every node-side pod veth's name starts with this (discovery skips them)."""
IFNAME_MAX = 15


class AddressingError(ValueError):
    """An input that no address can come from; the message names it and what to do."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A node's claim of a /64: the prefix, the counter that hashed to it, and when (wall-clock
    seconds) the node first claimed it."""

    node: str
    prefix: str
    counter: int
    claimed_at: float


def cluster_network(ula: str) -> ipaddress.IPv6Network:
    """The cluster's /48 from its description's ``ula``; a clear error if it is not one."""
    try:
        net = ipaddress.IPv6Network(ula)
    except ValueError:
        net = None
    if net is None or net.prefixlen != 48 or not net.subnet_of(ipaddress.IPv6Network("fd00::/8")):
        raise AddressingError(
            f"cluster ula: expected a unique-local /48 (fdXX:XXXX:XXXX::/48), got {ula!r}; "
            "the cluster's description (cluster/cluster.json) is damaged: join the node again"
        )
    return net


def subnet_id(node: str, counter: int) -> int:
    """The 16-bit subnet id of `node`'s `counter`-th choice of /64."""
    digest = hashlib.sha256(f"edgenode node prefix\0{node}\0{counter}".encode()).digest()
    return int.from_bytes(digest[:2], "big")


def node_prefix(cluster: ipaddress.IPv6Network, node: str, counter: int = 0) -> str:
    """`node`'s /64 in `cluster` for choice `counter`, as text (``fdXX:XXXX:XXXX:SSSS::/64``)."""
    base = int(cluster.network_address) | subnet_id(node, counter) << 64
    return str(ipaddress.IPv6Network((base, 64)))


def settle(claims: Iterable[Claim]) -> dict[str, str]:
    """Who holds each claimed prefix: the earliest claim, ties to the lower node name. The
    same on every node that sees the same claims."""
    holder: dict[str, Claim] = {}
    for c in claims:
        held = holder.get(c.prefix)
        if held is None or (c.claimed_at, c.node) < (held.claimed_at, held.node):
            holder[c.prefix] = c
    return {prefix: c.node for prefix, c in holder.items()}


def next_claim(
    cluster: ipaddress.IPv6Network,
    node: str,
    taken: Collection[str],
    *,
    start: int = 0,
    limit: int = 1 << 16,
) -> tuple[str, int]:
    """The first (prefix, counter) from `start` on whose prefix is not in `taken`."""
    for counter in range(start, start + limit):
        prefix = node_prefix(cluster, node, counter)
        if prefix not in taken:
            return prefix, counter
    raise AddressingError(
        f"node {node}: no free /64 in {cluster} after {limit} choices: every one is claimed; "
        "delete the Node objects of nodes that are gone"
    )


def resolve(
    cluster: ipaddress.IPv6Network, mine: Claim, others: Iterable[Claim], *, now: float
) -> Claim | None:
    """None if `mine` stands against `others`; else the claim this node moves to, made `now`:
    the next counter whose /64 no other node claims."""
    rivals = [c for c in others if c.node != mine.node]
    if settle([mine, *rivals]).get(mine.prefix) == mine.node:
        return None
    taken = {c.prefix for c in rivals}
    prefix, counter = next_claim(cluster, mine.node, taken, start=mine.counter + 1)
    return Claim(mine.node, prefix, counter, now)


def pod_ipv6(prefix: str, index: int) -> str:
    """The address of lease `index` in /64 `prefix`."""
    check_index(index)
    net = ipaddress.IPv6Network(prefix)
    return str(net.network_address + index)


def pod_ipv4(offset: int) -> str:
    """The node-local IPv4 address at `offset` in `POD_IPV4`."""
    if not FIRST_INDEX <= offset < POD_IPV4.num_addresses - 1:
        raise AddressingError(
            f"pod IPv4 offset: expected {FIRST_INDEX}..{POD_IPV4.num_addresses - 2}, got {offset}"
        )
    return str(POD_IPV4.network_address + offset)


def ipv4_offset(address: str) -> int | None:
    """`address`'s offset in `POD_IPV4`, None if it is not one of its addresses."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    return int(ip) - int(POD_IPV4.network_address) if ip in POD_IPV4 else None


def check_index(index: int) -> None:
    if not FIRST_INDEX <= index <= MAX_INDEX:
        raise AddressingError(f"lease index: expected {FIRST_INDEX}..{MAX_INDEX}, got {index}")


def link_name(node_key: str, pod: str) -> str:
    """The node side of `pod`'s veth: ``edn``, 3 digits of the node's key, and the pod's name
    when it fits, else its first 4 letters and 5 digits of its hash: at most 15 characters,
    unique on the node and between nodes sharing a network namespace."""
    head = f"{LINK_PREFIX}{node_key[:3]}"
    room = IFNAME_MAX - len(head)
    if len(pod) <= room:
        return head + pod
    return head + pod[: room - 5] + hashlib.sha256(pod.encode()).hexdigest()[:5]


def no_address_reason(relaxations: Collection[str], runtime_class: str) -> str | None:
    """Why a pod gets no address of its own (None: it gets one)."""
    if "host-network" in relaxations:
        return "it uses the node's network (host-network): the node's addresses are its own"
    if runtime_class == "gvisor":
        return (
            "runtime class gvisor runs with loopback only (runsc --network=none): it has no "
            "address; use runtime class runc or crun for a pod that talks to others"
        )
    return None
