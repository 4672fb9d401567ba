"""Pod networking for real: two daemons in network namespaces on one bridge, real pods.

A pod on one node reaches a pod on the other over IPv6 TCP with nothing but direct routes (no
tunnel device anywhere, the client's own address seen by the server); every node lists every
pod's node and address; a pod keeps its address across an in-place update and a restart; a pod
reaches an IPv4 host outside the mesh through its node's masquerade; the routes to a node's
pods go when it is declared dead and come back with it.
"""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from daemonkit import wait_for
from labkit import apply, call, link_local, named_lab

from edgenode._protocol import ApiError
from edgenode.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow]

NODES = ["n1", "n2"]
SERVER = """apiVersion: edgenode/v1
kind: Pod
metadata: {name: server}
spec:
  node: n2
  containers:
    web:
      image: busybox
      command:
        - sh
        - -c
        - >-
          mkdir -p /tmp/w && echo hello-from-n2 > /tmp/w/index.html
          && exec httpd -f -v -p 8080 -h /tmp/w
"""
CLIENT = """apiVersion: edgenode/v1
kind: Pod
metadata: {{name: client}}
spec:
  node: n1
  containers:
    main:
      image: busybox
      env: {{ROUND: "{round}"}}
      command:
        - sh
        - -c
        - >-
          until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {server} 8080 | grep hello;
          do sleep 0.5; done; exec sleep 3600
"""
TUNNEL_KINDS = {"ip6tnl", "sit", "ipip", "gre", "ip6gre", "vxlan", "geneve", "wireguard"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with named_lab("w") as lab:
        lab.up(len(NODES))
        wait_for(lambda: mesh_alive(lab), timeout=40, what="the mesh")
        yield lab


def mesh_alive(lab: Lab) -> bool:
    return all(
        len(rows := call(lab, n, "nodes")) == len(NODES)
        and all(str(r["state"]).startswith("alive") for r in rows)
        for n in NODES
    )


def get_pod(lab: Lab, node: str, name: str) -> dict[str, Any]:
    try:
        [doc] = call(lab, node, "get", kind="pod", name=name)
    except ApiError:
        return {}
    return dict(doc)


def address(lab: Lab, viewer: str, name: str) -> str | None:
    status = get_pod(lab, viewer, name).get("status") or {}
    if status.get("phase") != "Running":
        return None
    return (status.get("addresses") or {}).get("ipv6")


def wait_address(lab: Lab, viewer: str, name: str) -> str:
    found: list[str] = []

    def has() -> bool:
        a = address(lab, viewer, name)
        found[:] = [a] if a else []
        return bool(a)

    wait_for(has, timeout=60, what=f"{viewer} to see {name} running with an address")
    return found[0]


def logs(lab: Lab, node: str, pod: str) -> str:
    out = lab.cli(node, "logs", f"pod/{pod}")
    return out.stdout if out.returncode == 0 else ""


def peer_routes(lab: Lab, node: str) -> dict[str, tuple[str, str]]:
    out = lab.exec(node, ["ip", "-j", "-6", "route", "show", "proto", "78"])
    assert out.returncode == 0, out.stderr
    return {r["dst"]: (r.get("gateway", ""), r.get("dev", "")) for r in json.loads(out.stdout)}


def pod_prefix(lab: Lab, node: str) -> str:
    [doc] = call(lab, node, "get", kind="node", name=node)
    return str(doc["status"]["network"]["podPrefix"])


def link_kinds(argv_prefix: list[str]) -> set[str | None]:
    out = subprocess.run(
        [*argv_prefix, "ip", "-d", "-j", "link", "show"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return {(link.get("linkinfo") or {}).get("info_kind") for link in json.loads(out.stdout)}


def pod_netns(lab: Lab, node: str, pod: str) -> str:
    record = json.loads((lab.state_dir(node) / "pods" / pod / "pod.json").read_text())
    return str(record["netns"])


def test_a_pod_reaches_a_pod_on_another_node_over_ipv6_tcp_with_direct_routes(lab: Lab) -> None:
    apply(lab, "n1", SERVER)
    server = wait_address(lab, "n1", "server")
    assert server.startswith(pod_prefix(lab, "n2").removesuffix("/64"))
    apply(lab, "n1", CLIENT.format(round=1, server=server))
    client = wait_address(lab, "n2", "client")
    wait_for(
        lambda: "hello-from-n2" in logs(lab, "n1", "client"),
        timeout=60,
        what="the client's request to answer",
    )
    # The server saw the client's own address: no proxy, no NAT between the pods.
    wait_for(lambda: client in logs(lab, "n1", "server"), timeout=10, what="the server's log")
    # Each node routes the other's /64 via the other's link-local address on the LAN.
    assert peer_routes(lab, "n1") == {pod_prefix(lab, "n2"): (link_local(lab, "n2"), "eth0")}
    assert peer_routes(lab, "n2") == {pod_prefix(lab, "n1"): (link_local(lab, "n1"), "eth0")}
    # Nothing but veths (the LAN's and the pods') in the nodes' and pods' namespaces.
    for node, pod in (("n1", "client"), ("n2", "server")):
        kinds = link_kinds(["nsenter", f"--net=/run/netns/{lab.netns(node)}", "--"])
        kinds |= link_kinds(["nsenter", f"--net={pod_netns(lab, node, pod)}", "--"])
        assert kinds <= {None, "veth"}, kinds
        assert not kinds & TUNNEL_KINDS


def test_every_node_lists_each_pods_node_and_address(lab: Lab) -> None:
    server = wait_address(lab, "n1", "server")
    client = wait_address(lab, "n2", "client")
    for viewer in NODES:
        out = lab.cli(viewer, "get", "pods", "-o", "wide")
        assert out.returncode == 0, out.stderr
        rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
        assert rows["server"][5:7] == ["n2", server]
        assert rows["client"][5:7] == ["n1", client]


def test_a_pod_keeps_its_address_across_an_in_place_update_and_a_restart(lab: Lab) -> None:
    server = wait_address(lab, "n1", "server")
    before = get_pod(lab, "n1", "client")
    address_before = before["status"]["addresses"]
    apply(lab, "n1", CLIENT.format(round=2, server=server))

    def updated() -> bool:
        doc = get_pod(lab, "n1", "client")
        status = doc.get("status") or {}
        return (
            doc["spec"]["containers"]["main"]["env"]["ROUND"] == "2"
            and status.get("phase") == "Running"
            and "pod.update" in lab.cli("n1", "workflow", "pod/client").stdout
        )

    wait_for(updated, timeout=60, what="the client's update in place")
    assert get_pod(lab, "n1", "client")["status"]["addresses"] == address_before
    restarted = lab.cli("n1", "restart", "pod/client")
    assert restarted.returncode == 0, restarted.stderr
    wait_for(
        lambda: address(lab, "n1", "client") == address_before["ipv6"],
        timeout=30,
        what="the client running again",
    )
    assert get_pod(lab, "n2", "client")["status"]["addresses"] == address_before
    # The daemon's own restart changes nothing either.
    lab.kill("n1", signal.SIGTERM)
    lab.start("n1")
    wait_for(lambda: mesh_alive(lab), timeout=40, what="n1 back in the mesh")
    assert get_pod(lab, "n1", "client")["status"]["addresses"] == address_before
    inside = lab.exec("n1", ["ip", "-j", "-6", "route", "show", address_before["ipv6"]])
    assert re.search(r'"dev":\s*"edn', inside.stdout), inside.stdout


EGRESS = """apiVersion: edgenode/v1
kind: Pod
metadata: {{name: egress}}
spec:
  node: n1
  containers:
    main:
      image: busybox
      command:
        - sh
        - -c
        - until echo from-a-pod | nc -w 2 {host} {port}; do sleep 0.5; done; exec sleep 3600
"""
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
while True:
    conn, (peer, _) = s.accept()
    print(peer, conn.recv(64).decode().strip(), flush=True)
    conn.close()
"""


@contextmanager
def outside_host(lab: Lab) -> Iterator[str]:
    """An IPv4 host on the lab's LAN that belongs to no node (its own namespace, a port of
    the bridge, the LAN's .200): its address."""
    ns = f"eno-{lab.name}"
    address = lab.address("n1")[1].rsplit(".", 1)[0] + ".200"
    bridge = ["ip", "-n", lab.bridge_netns]
    steps = [
        ["ip", "netns", "add", ns],
        [*bridge, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", ns],
        [*bridge, "link", "set", "out0", "master", "br0", "up"],
        ["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]
    try:
        for argv in steps:
            subprocess.run(argv, check=True, capture_output=True, timeout=10)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


def test_a_pod_reaches_an_ipv4_host_outside_the_mesh_through_its_nodes_masquerade(
    lab: Lab,
) -> None:
    with outside_host(lab) as ns:
        host = lab.address("n1")[1].rsplit(".", 1)[0] + ".200"
        listener = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, "9000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            apply(lab, "n1", EGRESS.format(host=host, port=9000))
            assert listener.stdout is not None
            ready, _, _ = select.select([listener.stdout], [], [], 60)
            assert ready, "the outside host heard nothing from the pod within 60 s"
            line = listener.stdout.readline().split()
        finally:
            listener.kill()
            listener.wait()
    # The host saw the node's own LAN address, not the pod's node-local one.
    assert line == [lab.address("n1")[1], "from-a-pod"]
    wait_address(lab, "n1", "egress")
    assert get_pod(lab, "n1", "egress")["status"]["addresses"]["ipv4"].startswith("100.64.")
    rules = lab.exec("n1", ["nft", "list", "table", "ip", "edgenode"])
    assert rules.returncode == 0 and "masquerade" in rules.stdout, rules.stderr


def test_routes_to_a_dead_nodes_pods_are_withdrawn_and_return_with_it(lab: Lab) -> None:
    prefix = pod_prefix(lab, "n2")
    wait_for(lambda: prefix in peer_routes(lab, "n1"), timeout=20, what="n1's route to n2")
    lab.kill("n2")  # SIGKILL: its pods keep running, its membership ends
    wait_for(
        lambda: prefix not in peer_routes(lab, "n1"),
        timeout=40,
        what="n1 to withdraw its route to n2's pods",
    )
    states = {r["name"]: r["state"] for r in call(lab, "n1", "nodes")}
    assert states["n2"] == "dead"
    lab.start("n2")
    # Membership admits the restarted node once the old connection to it has timed out (up
    # to a minute); its route comes back with it.
    wait_for(lambda: prefix in peer_routes(lab, "n1"), timeout=90, what="the route back")
