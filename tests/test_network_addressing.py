"""Pod addressing: every node derives the same prefixes, settles collisions alike, and a pod
keeps its lease until it is deleted."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from conftest import run_in_processes

from edgenode.network import _leases
from edgenode.network._addressing import (
    POD_IPV4,
    AddressingError,
    Claim,
    cluster_network,
    link_name,
    next_claim,
    node_prefix,
    pod_ipv4,
    pod_ipv6,
    resolve,
    settle,
    subnet_id,
)
from edgenode.network.leases import LeaseTable
from gossip._credentials import ula_prefix
from sandbox.tables import TableCorruptError

CLUSTER = cluster_network(ula_prefix("0123456789abcdef0123456789abcdef"))


def test_the_cluster_48_and_a_nodes_64_are_the_same_wherever_they_are_derived() -> None:
    assert cluster_network(ula_prefix("0123456789abcdef0123456789abcdef")) == CLUSTER
    assert CLUSTER.prefixlen == 48 and str(CLUSTER).startswith("fd")
    prefix = ipaddress.IPv6Network(node_prefix(CLUSTER, "n1"))
    assert prefix.prefixlen == 64 and prefix.subnet_of(CLUSTER)
    assert node_prefix(CLUSTER, "n1") == node_prefix(CLUSTER, "n1")
    assert int(prefix.network_address) >> 64 & 0xFFFF == subnet_id("n1", 0)
    assert node_prefix(CLUSTER, "n1", 1) != node_prefix(CLUSTER, "n1", 0)


def test_a_cluster_prefix_that_is_no_ula_48_is_refused_saying_what_to_do() -> None:
    for bad in ("2001:db8::/48", "fd00::/64", "nonsense"):
        with pytest.raises(AddressingError, match=r"cluster ula: expected .* got .*join the node"):
            cluster_network(bad)


def colliding_pair() -> tuple[str, str]:
    """Two node names whose first /64 is the same (16 bits: a few hundred names suffice)."""
    seen: dict[int, str] = {}
    for i in range(100_000):
        name = f"node-{i}"
        s = subnet_id(name, 0)
        if s in seen:
            return seen[s], name
        seen[s] = name
    raise AssertionError("no collision found")


def test_a_collision_is_settled_for_the_earliest_claim_then_the_lower_name() -> None:
    a, b = colliding_pair()
    prefix = node_prefix(CLUSTER, a)
    assert node_prefix(CLUSTER, b) == prefix
    early_b = [Claim(a, prefix, 0, 200.0), Claim(b, prefix, 0, 100.0)]
    assert settle(early_b) == {prefix: b}
    assert settle(reversed(early_b)) == {prefix: b}  # the order seen makes no difference
    tie = [Claim(b, prefix, 0, 100.0), Claim(a, prefix, 0, 100.0)]
    assert settle(tie) == {prefix: min(a, b)}


def test_the_node_that_lost_moves_to_its_next_free_64_and_the_holder_stays() -> None:
    a, b = colliding_pair()
    prefix = node_prefix(CLUSTER, a)
    holder, newcomer = Claim(a, prefix, 0, 100.0), Claim(b, prefix, 0, 500.0)
    assert resolve(CLUSTER, holder, [newcomer], now=600.0) is None
    moved = resolve(CLUSTER, newcomer, [holder], now=600.0)
    assert moved is not None
    assert moved == Claim(b, node_prefix(CLUSTER, b, 1), 1, 600.0)
    # Every node computes the same: the moved claim now stands against the holder's.
    assert settle([holder, moved]) == {prefix: a, moved.prefix: b}
    assert resolve(CLUSTER, moved, [holder], now=700.0) is None


def test_a_new_claim_skips_every_prefix_another_node_holds() -> None:
    taken = {node_prefix(CLUSTER, "n9", c) for c in range(3)}
    assert next_claim(CLUSTER, "n9", taken) == (node_prefix(CLUSTER, "n9", 3), 3)
    with pytest.raises(AddressingError, match="no free /64"):
        next_claim(CLUSTER, "n9", taken, limit=3)


def test_pod_addresses_come_from_the_nodes_64_and_the_node_local_ipv4_range() -> None:
    prefix = node_prefix(CLUSTER, "n1")
    assert pod_ipv6(prefix, 2) == str(ipaddress.IPv6Network(prefix).network_address + 2)
    assert pod_ipv4(2) == "100.64.0.2" and ipaddress.IPv4Address(pod_ipv4(300)) in POD_IPV4
    for bad in (0, 1, POD_IPV4.num_addresses - 1):
        with pytest.raises(AddressingError):
            pod_ipv4(bad)


def test_link_names_are_short_unique_and_start_with_the_pod_name() -> None:
    assert link_name("abcdef", "web") == "ednabcweb"
    long_a = link_name("abcdef", "a-very-long-pod-name-1")
    long_b = link_name("abcdef", "a-very-long-pod-name-2")
    assert len(long_a) == 15 and long_a != long_b and long_a.startswith("ednabca-ve")
    assert link_name("abcdef", "web") != link_name("123456", "web")


def test_leases_rise_and_skip_indexes_in_use_and_ipv4_reuses_the_lowest_free() -> None:
    table = _leases.empty()
    table, web = _leases.allocate(table, "web")
    table, db = _leases.allocate(table, "db", foreign={3})
    assert (web.index, web.ipv4) == (2, 2) and (db.index, db.ipv4) == (3, 4)
    table = _leases.release(table, "web")
    table, cache = _leases.allocate(table, "cache")
    assert cache.index == 4, "a deleted pod's address is not handed out again soon"
    assert cache.ipv4 == 2
    again, same = _leases.allocate(table, "db")
    assert same == db and again == table


def test_a_lease_survives_a_restart_and_is_freed_on_delete(tmp_path: Path) -> None:
    path = tmp_path / "leases.json"
    web = LeaseTable(path).allocate("web")
    reopened = LeaseTable(path)
    assert reopened.allocate("web") == web
    reopened.release("web")
    assert reopened.get("web") is None and reopened.leases() == {}


def test_a_lease_moved_off_a_taken_ipv4_keeps_its_index(tmp_path: Path) -> None:
    table = LeaseTable(tmp_path / "leases.json")
    web = table.allocate("web")
    moved = table.move_ipv4("web", foreign={web.ipv4})
    assert moved.index == web.index and moved.ipv4 != web.ipv4


def _allocate_many(path: str, prefix: str) -> None:
    table = LeaseTable(Path(path))
    for i in range(20):
        table.allocate(f"{prefix}-{i}")


def test_processes_allocating_at_once_never_get_the_same_address(tmp_path: Path) -> None:
    path = str(tmp_path / "leases.json")
    run_in_processes(_allocate_many, [(path, p) for p in ("x", "y", "z")])
    leases = LeaseTable(Path(path)).leases().values()
    assert len({lease.index for lease in leases}) == 60
    assert len({lease.ipv4 for lease in leases}) == 60


def test_an_unreadable_lease_table_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "leases.json"
    path.write_text('{"next": 2, "pods": {"web": 7}}')
    with pytest.raises(TableCorruptError, match=r"leases.json is unreadable .*pods.web"):
        LeaseTable(path).allocate("db")
    assert path.read_text() == '{"next": 2, "pods": {"web": 7}}'
