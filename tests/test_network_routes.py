"""Routes to other nodes' pods: each live peer's /64 via its link-local address, none to a dead
one, never to this node's own /64 or outside the cluster's /48."""

from __future__ import annotations

import ipaddress

from edgenode.network._routes import PeerNet, Route, changes, wanted, withdrawn

CLUSTER = ipaddress.IPv6Network("fd12:3456:789a::/48")
MINE = "fd12:3456:789a:1::/64"


def peer(node: str, state: str, subnet: int, hop: str = "fe80::2") -> PeerNet:
    return PeerNet(node, state, f"fd12:3456:789a:{subnet:x}::/64", (hop,), ("fd00::2",))


def chosen(*peers: PeerNet, holders: dict[str, str] | None = None) -> dict[str, str]:
    picked = wanted(peers, cluster=CLUSTER, own_prefix=MINE, holders=holders or {})
    return {prefix: p.node for prefix, p in picked.items()}


def test_live_and_suspect_peers_are_routed_and_dead_or_gone_ones_are_not() -> None:
    peers = [peer("n2", "alive", 2), peer("n3", "suspect", 3), peer("n4", "dead", 4)]
    peers.append(peer("n5", "left", 5))
    assert chosen(*peers) == {
        "fd12:3456:789a:2::/64": "n2",
        "fd12:3456:789a:3::/64": "n3",
    }
    assert withdrawn(peers) == {"fd12:3456:789a:4::/64", "fd12:3456:789a:5::/64"}


def test_no_route_is_drawn_to_our_own_prefix_or_outside_the_cluster() -> None:
    outside = PeerNet("n2", "alive", "fd99::/64", ("fe80::2",))
    ours = PeerNet("n3", "alive", MINE, ("fe80::3",))
    wide = PeerNet("n4", "alive", "fd12:3456:789a::/56", ("fe80::4",))
    no_hop = PeerNet("n5", "alive", "fd12:3456:789a:5::/64", ())
    assert chosen(outside, ours, wide, no_hop) == {}


def test_a_prefix_two_live_peers_advertise_goes_to_its_holder_else_the_lower_name() -> None:
    a, b = peer("n2", "alive", 7), peer("n3", "alive", 7)
    assert chosen(b, a) == {"fd12:3456:789a:7::/64": "n2"}
    assert chosen(a, b, holders={"fd12:3456:789a:7::/64": "n3"}) == {"fd12:3456:789a:7::/64": "n3"}
    # A prefix another live peer still advertises is not withdrawn with the dead one.
    assert withdrawn([peer("n2", "dead", 7), b]) == set()


def test_changes_replace_what_differs_and_remove_what_is_unwanted() -> None:
    r2 = Route("fd12:3456:789a:2::/64", "fe80::2", 2)
    r3 = Route("fd12:3456:789a:3::/64", "fe80::3", 2)
    r4 = Route("fd12:3456:789a:4::/64", "fe80::4", 2)
    moved = Route(r3.prefix, "fe80::33", 2)
    installed = {r.prefix: r for r in (r2, r3, r4)}
    put, remove = changes({r2.prefix: r2, r3.prefix: moved}, installed, dead=set(), settling=False)
    assert put == [moved] and remove == [r4.prefix]


def test_just_after_a_start_only_the_routes_of_dead_peers_go() -> None:
    r2 = Route("fd12:3456:789a:2::/64", "fe80::2", 2)
    r4 = Route("fd12:3456:789a:4::/64", "fe80::4", 2)
    installed = {r2.prefix: r2, r4.prefix: r4}
    assert changes({}, installed, dead=set(), settling=True) == ([], [])
    assert changes({}, installed, dead={r4.prefix}, settling=True) == ([], [r4.prefix])
