"""A pod's link to its node, for real: a veth between two network namespaces, the pod's
addresses and default routes, the node's routes to it; made again idempotently, renumbered,
and gone with `detach`."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require

from edgenode.network import egress, podlinks
from edgenode.network._addressing import Claim, no_address_reason
from edgenode.network._egress import ruleset
from edgenode.network.node import NodeNetwork
from edgenode.network.podlinks import PodLink
from sandbox import netns
from sandbox._spec import ContainerDef, PodDef

pytestmark = pytest.mark.root


@pytest.fixture
def spaces() -> Iterator[tuple[str, str]]:
    """A node namespace and a pod namespace, removed afterwards."""
    require(os.geteuid() == 0, "makes network namespaces: needs root")
    tag = secrets.token_hex(3)
    node, pod = f"ent-{tag}-node", f"ent-{tag}-pod"
    netns.create(node)
    netns.create(pod)
    try:
        yield node, pod
    finally:
        netns.remove(pod)
        netns.remove(node)


def in_ns(name: str, fn: Any) -> Any:
    return netns.submit_in(netns.path(name), fn).result(timeout=30)


def ip_json(ns: str, *args: str) -> Any:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", *args], capture_output=True, text=True, check=True, timeout=10
    )
    return json.loads(out.stdout or "[]")


def pings(ns: str, address: str) -> bool:
    argv = ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address]
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


LINK = PodLink("web", "ednt01web", "fd12:3456:789a:1::2", "100.64.0.2")


def test_a_pod_gets_its_addresses_and_default_routes_and_the_node_routes_to_it(
    spaces: tuple[str, str],
) -> None:
    node, pod = spaces
    in_ns(node, podlinks.enable_forwarding)
    in_ns(node, lambda: podlinks.attach(LINK, netns.path(pod)))
    [eth0] = [i for i in ip_json(pod, "addr", "show") if i["ifname"] == "eth0"]
    local = {a["local"] for a in eth0["addr_info"] if a["scope"] == "global"}
    assert local == {LINK.ipv6, LINK.ipv4}
    defaults = {r.get("gateway") for r in ip_json(pod, "-6", "route") if r["dst"] == "default"}
    assert defaults == {"fe80::1"}
    assert {r.get("gateway") for r in ip_json(pod, "route") if r["dst"] == "default"} == {
        "169.254.1.1"
    }
    routes = {r["dst"]: r["dev"] for r in ip_json(node, "-6", "route") if r.get("protocol") == "77"}
    assert routes == {LINK.ipv6: LINK.link}
    assert pings(node, LINK.ipv6) and pings(node, LINK.ipv4)
    assert pings(pod, "fe80::1%eth0") and pings(pod, "169.254.1.1")
    forwarding = in_ns(node, lambda: podlinks.read_sysctl("/proc/sys/net/ipv6/conf/all/forwarding"))
    assert forwarding == "1"


def test_attaching_again_repairs_nothing_that_is_right_and_renumbers_what_moved(
    spaces: tuple[str, str],
) -> None:
    node, pod = spaces
    in_ns(node, lambda: podlinks.attach(LINK, netns.path(pod)))
    before = ip_json(node, "link", "show", LINK.link)[0]["ifindex"]
    moved = PodLink(LINK.pod, LINK.link, "fd12:3456:789a:2::2", LINK.ipv4)
    in_ns(node, lambda: podlinks.attach(moved, netns.path(pod)))
    assert ip_json(node, "link", "show", LINK.link)[0]["ifindex"] == before, "the veth stays"
    [eth0] = [i for i in ip_json(pod, "addr", "show") if i["ifname"] == "eth0"]
    assert {a["local"] for a in eth0["addr_info"] if a["scope"] == "global"} == {
        moved.ipv6,
        moved.ipv4,
    }
    routes = [r["dst"] for r in ip_json(node, "-6", "route") if r.get("protocol") == "77"]
    assert routes == [moved.ipv6]
    assert pings(node, moved.ipv6)


def test_detach_removes_the_link_and_the_routes_to_the_pod(spaces: tuple[str, str]) -> None:
    node, pod = spaces
    in_ns(node, lambda: podlinks.attach(LINK, netns.path(pod)))
    in_ns(node, lambda: podlinks.detach(LINK.link))
    in_ns(node, lambda: podlinks.detach(LINK.link))  # again: nothing to do
    assert [i["ifname"] for i in ip_json(node, "link", "show")] == ["lo"]
    assert [i["ifname"] for i in ip_json(pod, "link", "show")] == ["lo"]
    assert not [r for r in ip_json(node, "-6", "route") if r.get("protocol") == "77"]


def test_a_node_keeps_a_pods_lease_across_attaches_and_frees_it_on_detach(
    spaces: tuple[str, str], tmp_path: Any
) -> None:
    node, pod = spaces
    network = NodeNetwork(
        tmp_path, "n1", key="abcdef", cluster_ula="fd12:3456:789a::/48", now=100.0
    )
    web = PodDef(name="web", containers={"main": ContainerDef(image="busybox")})
    first = in_ns(node, lambda: network.attach(web, netns.path(pod)))
    again = in_ns(node, lambda: network.attach(web, netns.path(pod)))
    assert first == again == network.addresses("web")
    assert first["ipv6"].startswith(network.prefix.split("::")[0])
    gvisor = PodDef(name="sandboxed", containers={}, runtime_class="gvisor")
    assert in_ns(node, lambda: network.attach(gvisor, netns.path(pod))) is None, "loopback only"
    in_ns(node, lambda: network.detach("web"))
    assert network.addresses("web") is None


def test_the_masquerade_table_is_replaced_whole_and_touches_no_other_table(
    spaces: tuple[str, str],
) -> None:
    node, _ = spaces
    require(shutil.which("nft") is not None, "applies nftables rules: needs nft")
    nft = ["ip", "netns", "exec", node, "nft"]
    other = "table ip theirs { chain c { type filter hook forward priority 0; accept; }; }"
    subprocess.run([*nft, "-f", "-"], input=other, text=True, check=True, timeout=10)
    in_ns(node, egress.apply)
    in_ns(node, egress.apply)
    listed = subprocess.run(
        [*nft, "-j", "list", "ruleset"], capture_output=True, text=True, check=True, timeout=10
    )
    tables = [i["table"]["name"] for i in json.loads(listed.stdout)["nftables"] if "table" in i]
    assert sorted(tables) == ["edgenode", "theirs"]
    rules = [i["rule"] for i in json.loads(listed.stdout)["nftables"] if "rule" in i]
    assert len([r for r in rules if r["table"] == "edgenode"]) == 1
    assert 'ip saddr 100.64.0.0/16 oifname != "edn*" masquerade' in ruleset()


def test_a_node_that_loses_its_prefix_moves_and_its_pods_keep_their_index(
    spaces: tuple[str, str], tmp_path: Any
) -> None:
    node, pod = spaces
    network = NodeNetwork(
        tmp_path, "n1", key="abcdef", cluster_ula="fd12:3456:789a::/48", now=500.0
    )
    web = PodDef(name="web", containers={"main": ContainerDef(image="busybox")})
    before = in_ns(node, lambda: network.attach(web, netns.path(pod)))
    rival = Claim("n0", network.prefix, 0, 100.0)  # an earlier claim of the same /64
    assert network.settle([rival], now=600.0)
    assert network.prefix != rival.prefix and network.claim.claimed_at == 600.0
    after = in_ns(node, lambda: network.attach(web, netns.path(pod)))
    assert after["ipv6"].rsplit("::", 1)[1] == before["ipv6"].rsplit("::", 1)[1]
    assert after["ipv6"] != before["ipv6"] and after["ipv4"] == before["ipv4"]
    assert pings(node, after["ipv6"]) and not pings(node, before["ipv6"])
    # The move is kept: the node starts again with its new claim.
    again = NodeNetwork(tmp_path, "n1", key="abcdef", cluster_ula="fd12:3456:789a::/48", now=0)
    assert again.claim == network.claim
    assert not again.settle([rival], now=700.0)


def test_host_network_and_gvisor_pods_get_no_address(
    spaces: tuple[str, str], tmp_path: Any
) -> None:
    node, _ = spaces
    network = NodeNetwork(tmp_path, "n1", key="abcdef", cluster_ula="fd12:3456:789a::/48", now=0)
    host = PodDef(name="h", containers={}, relaxations=frozenset({"host-network"}))
    assert in_ns(node, lambda: network.attach(host, None)) is None
    assert no_address_reason(host.relaxations, host.runtime_class) is not None
    gvisor = PodDef(name="g", containers={}, runtime_class="gvisor")
    assert "loopback only" in (no_address_reason(gvisor.relaxations, "gvisor") or "")
    assert no_address_reason(frozenset(), "runc") is None
    assert network.leases.leases() == {}
