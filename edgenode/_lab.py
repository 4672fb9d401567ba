"""The pure part of a lab (`edgenode.lab`): names, addresses, and faults as data.

Theory of operation. A lab ``<lab>`` has nodes ``n1``..``nN``; node ``n<i>`` lives in network
namespace ``enl-<lab>-n<i>`` (`netns_name`) and the lab's bridge in ``enl-<lab>-br``
(`bridge_netns_name`). Each node's addresses on the lab's LAN are derived from the lab's name
and the node's number (`lan_addresses`), so they are the same every time the lab is made and
differ between labs side by side.

Faults are data: `Faults` (partition groups, loss per node or lab-wide, links down) is what
lab.json keeps; `partition_groups` checks a partition the caller asked for and completes it;
`ruleset` turns `Faults` into the nftables script that replaces the lab's ``bridge`` table in
one transaction. Nothing here runs a command or touches a file: the shell does that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

BRIDGE = "br0"
NFT_TABLE = "edgenode_lab"
MAX_NODES = 64
"""At most this many nodes (each runs a daemon of about 60 MB; 2 cores start ~3 a second)."""
LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$")
NODE_NAME = re.compile(r"^n([1-9][0-9]*)$")


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what state it was left in."""


class LabInputError(LabError):
    """The caller's mistake (a name, a number); nothing was changed."""


# -- names and addresses ---------------------------------------------------------------------------


def check_lab_name(name: str) -> str:
    """`name` if it can name a lab (`LAB_NAME`), else `LabInputError`."""
    if not LAB_NAME.match(name):
        raise LabInputError(
            f"lab name: expected 1-24 lowercase letters, digits or '-' (not first or last), "
            f"got {name!r}; nothing was changed"
        )
    return name


def lan_addresses(lab: str, index: int) -> tuple[str, str]:
    """Node `index`'s lab-LAN addresses (ULA/64 and IPv4/24, without the prefix length)."""
    d = hashlib.sha256(b"edgenode lab\0" + lab.encode()).digest()
    ula = ipaddress.IPv6Address(b"\xfd" + d[:5] + b"\x00\x01" + index.to_bytes(8, "big"))
    return str(ula), f"10.{d[5]}.{d[6]}.{index}"


def netns_name(lab: str, node: str) -> str:
    """The network namespace of `node` of lab `lab`."""
    return f"enl-{lab}-{node}"


def bridge_netns_name(lab: str) -> str:
    """The network namespace holding lab `lab`'s bridge."""
    return f"enl-{lab}-br"


def node_index(node: str) -> int:
    """The number of node ``n<i>`` (its place in the lab's addresses), or `LabInputError`."""
    m = NODE_NAME.match(node)
    if m is None:
        raise LabInputError(f"node name: expected n1, n2, ..., got {node!r}; nothing was changed")
    return int(m.group(1))


def lab_namespaces(lab: str, names: Iterable[str]) -> list[str]:
    """Which of the network namespaces `names` are lab `lab`'s (its bridge's and nodes'), sorted."""
    pattern = re.compile(rf"^enl-{re.escape(lab)}-(br|n[1-9][0-9]*)$")
    return sorted(n for n in names if pattern.match(n))


# -- faults ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """The faults in force. `partition`: groups of nodes (None: no partition); `loss`: percent
    (0-100) of packets dropped entering and leaving a node's port; `loss_all`: percent of every
    packet crossing the bridge; `down`: nodes whose link is down."""

    partition: tuple[tuple[str, ...], ...] | None = None
    loss: dict[str, int] = field(default_factory=dict)
    loss_all: int = 0
    down: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Faults:
        part = raw.get("partition")
        return cls(
            None if part is None else tuple(tuple(g) for g in part),
            {str(k): int(v) for k, v in (raw.get("loss") or {}).items()},
            int(raw.get("loss_all", 0)),
            tuple(raw.get("down") or ()),
        )


def partition_groups(nodes: Sequence[str], groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The full partition: `groups` checked (known nodes, each in one group), and each node
    named in no group alone in a group of its own."""
    seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        for node in group:
            if node not in nodes:
                raise LabInputError(
                    f"partition group {i + 1}: no node {node!r} in this lab (its nodes: "
                    f"{', '.join(nodes)}); nothing was changed"
                )
            if node in seen:
                raise LabInputError(
                    f"partition: node {node} is in groups {seen[node] + 1} and {i + 1}; "
                    "expected each node in one group; nothing was changed"
                )
            seen[node] = i
    full = [list(g) for g in groups if g]
    return full + [[n] for n in nodes if n not in seen]


def check_percent(pct: int) -> int:
    """`pct` if it is a percentage (0-100), else `LabInputError`."""
    if not 0 <= pct <= 100:
        raise LabInputError(f"loss: expected a percentage 0-100, got {pct}; nothing was changed")
    return pct


def with_partition(faults: Faults, nodes: Sequence[str], groups: Sequence[Sequence[str]]) -> Faults:
    """`faults` with the lab of `nodes` cut into `groups`, completed by `partition_groups`."""
    full = partition_groups(nodes, groups)
    return dataclasses.replace(faults, partition=tuple(tuple(g) for g in full))


def with_loss(faults: Faults, node: str | None, pct: int) -> Faults:
    """`faults` with `pct` percent loss at `node`'s port; with None, lab-wide in place of every
    per-node loss. 0 clears."""
    if node is None:
        return dataclasses.replace(faults, loss={}, loss_all=pct)
    loss = {**faults.loss, node: pct}
    return dataclasses.replace(faults, loss={n: p for n, p in loss.items() if p})


def with_link(faults: Faults, node: str, *, up: bool) -> Faults:
    """`faults` with `node`'s link up or down."""
    down = sorted(set(faults.down) - {node} if up else {*faults.down, node})
    return dataclasses.replace(faults, down=tuple(down))


def _names(nodes: Sequence[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in nodes) + " }"


def _drop(pct: int) -> str:
    return "drop" if pct >= 100 else f"numgen random mod 100 < {pct} drop"


def ruleset(faults: Faults) -> str:
    """The nftables script that puts `faults` in force in the bridge namespace, replacing the
    lab's table in one transaction."""
    rules = []
    for group in faults.partition or ():
        if len(group) < sum(len(g) for g in faults.partition or ()):
            rules.append(f"iifname {_names(group)} oifname != {_names(group)} drop")
    if faults.loss_all:
        rules.append(_drop(faults.loss_all))
    for node, pct in sorted(faults.loss.items()):
        if pct:
            rules += [f'iifname "{node}" {_drop(pct)}', f'oifname "{node}" {_drop(pct)}']
    body = "".join(f"    {r}\n" for r in rules)
    return (
        f"table bridge {NFT_TABLE}\ndelete table bridge {NFT_TABLE}\n"
        f"table bridge {NFT_TABLE} {{\n  chain forward {{\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"{body}  }}\n}}\n"
    )


# -- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStatus:
    """One node of a lab as `Lab.status` found it."""

    node: str
    netns: str
    netns_exists: bool
    pid: int | None
    running: bool
    answering: bool
    link_up: bool
    loss: int
    group: int | None
    """1-based index of the node's partition group; None: no partition."""
    address: str
    ipv4: str
