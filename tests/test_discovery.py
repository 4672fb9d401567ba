"""Discovery: seeds, the neighbour and seed bookkeeping, and real mDNS and IPv6 neighbour
discovery between processes in separate network namespaces on one bridge.

The LAN: a bridge in its own namespace (IPv6 off there) and four node namespaces, each with a
veth ``eth0`` into it, an IPv4 address and its link-local IPv6 address. Each node runs
``tests/probes/discovery_peer.py``, which prints its sightings as JSON lines. A hand-built mDNS
PTR query over a standard-library UDP socket plays the part of an independent browser.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import require

from gossip.discovery import (
    SERVICE_TYPE,
    Discovery,
    DiscoveryConfig,
    DiscoveryError,
    NeighbourBook,
    PeerTxt,
    SeedBook,
    Sighting,
    dialable,
    parse_seed,
    read_txt,
)

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "tests" / "probes" / "discovery_peer.py"
CLUSTER, OTHER = "c" * 32, "d" * 32
CLONE_NEWNET = 0x40000000

# -- seeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed.example.org:7000", ("seed.example.org", 7000)),
        ("seed.example.org", ("seed.example.org", 7946)),
        ("192.0.2.7:9", ("192.0.2.7", 9)),
        ("[2001:db8::1]:7000", ("2001:db8::1", 7000)),
        ("[2001:db8::1]", ("2001:db8::1", 7946)),
        ("[fe80::1%eth0]:7000", ("fe80::1%eth0", 7000)),
        ("2001:db8::1", ("2001:db8::1", 7946)),
        ("  host-1:65535 ", ("host-1", 65535)),
    ],
)
def test_seed_forms_parse_to_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_seed(text, 7946) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("host:0", "port '0' is not a number in 1..65535"),
        ("host:70000", "port '70000'"),
        ("host:http", "port 'http'"),
        ("[2001:db8::1", "without a closing ']'"),
        ("[2001:db8::1]7000", "expected ':port' after ']'"),
        ("[192.0.2.1]:7000", "'192.0.2.1' in brackets is not an IPv6 address"),
        ("2001:db8::zz", "is not an IPv6 address (write '[ipv6]:port'"),
        ("bad host:1", "host 'bad host' is neither an IPv4 address nor a DNS name"),
    ],
)
def test_bad_seed_is_refused_naming_text_problem_and_accepted_forms(
    text: str, problem: str
) -> None:
    with pytest.raises(DiscoveryError) as err:
        parse_seed(text, 7946)
    message = str(err.value)
    assert f"seed {text!r}" in message and problem in message
    assert "'[ipv6]:port'" in message and "1..65535" in message and "not added" in message


def test_seeds_are_sighted_at_start_and_each_interval_until_connected_and_after_a_loss() -> None:
    book = SeedBook(["a:1", "[2001:db8::1]:2", "a:1"], default_port=7946, interval_s=30.0)
    assert book.due(now=0.0) == [("a:1", "a", 1), ("[2001:db8::1]:2", "2001:db8::1", 2)]
    assert book.due(now=29.0) == []
    assert book.next_due() == 30.0
    assert book.mark("[2001:db8::1]:2", connected=True, now=29.0)
    assert [d[0] for d in book.due(now=30.0)] == ["a:1"]
    assert book.next_due() == 60.0
    # A caller may report a seed as its sighting's "host:port", v6 brackets or not.
    assert book.mark("a:1", connected=True, now=31.0)
    assert book.next_due() is None and book.due(now=1000.0) == []
    assert book.mark("2001:db8::1:2", connected=False, now=1001.0)
    assert book.due(now=1001.0) == [("[2001:db8::1]:2", "2001:db8::1", 2)]
    assert not book.mark("elsewhere:1", connected=True, now=1002.0)


def test_a_seed_named_by_dns_is_matched_by_the_address_it_resolved_to() -> None:
    book = SeedBook(["site.example:7000"], default_port=7946, interval_s=30.0)
    book.due(now=0.0)
    book.resolved("site.example:7000", [("2001:db8::9", 7000)])
    assert book.mark("[2001:db8::9]:7000", connected=True, now=1.0)
    assert book.next_due() is None


def test_bad_seed_or_config_refuses_before_anything_starts() -> None:
    with pytest.raises(DiscoveryError, match=r"seed 'x:y'"):
        SeedBook(["ok:1", "x:y"], default_port=7946, interval_s=30.0)
    with pytest.raises(DiscoveryError, match=r"nd_interval_s: expected 1..3600 seconds, got 0"):
        DiscoveryConfig(nd_interval_s=0)
    with pytest.raises(DiscoveryError, match=r"nd_refresh_s: expected >= nd_interval_s"):
        DiscoveryConfig(nd_interval_s=60, nd_refresh_s=30)
    good: dict[str, Any] = {"cluster": CLUSTER, "node_id": "n1", "port": 7000, "seeds": ()}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"node_id": "n_1"}, "node_id: expected a DNS label"),
        ({"port": 0}, "port: expected 1..65535, got 0"),
        ({"seeds": ["[::1"]}, "seed '\\[::1'"),
    ]
    for change, problem in cases:
        args = {**good, **change}
        with pytest.raises(DiscoveryError, match=problem):
            Discovery(**args, config=DiscoveryConfig(), on_sighting=lambda s: None)


# -- neighbour and mDNS bookkeeping -----------------------------------------------------------


def test_unchanged_neighbours_are_sighted_once_then_again_after_leaving_or_the_refresh() -> None:
    book = NeighbourBook(refresh_s=300.0)
    assert book.scan(["fe80::1%eth0", "fe80::2%eth0", "fe80::1%eth0"], now=0.0) == [
        "fe80::1%eth0",
        "fe80::2%eth0",
    ]
    assert book.scan(["fe80::1%eth0", "fe80::2%eth0"], now=10.0) == []
    assert book.scan(["fe80::1%eth0"], now=20.0) == []  # ::2 went away...
    assert book.scan(["fe80::1%eth0", "fe80::2%eth0"], now=30.0) == ["fe80::2%eth0"]  # ...and back
    assert book.scan(["fe80::1%eth0", "fe80::2%eth0"], now=299.0) == []
    assert book.scan(["fe80::1%eth0", "fe80::2%eth0"], now=300.0) == ["fe80::1%eth0"]


def test_link_local_addresses_are_dialled_through_their_interface_name() -> None:
    one = {3: "eth0"}
    assert dialable(["10.0.0.1", "fe80::1", "fe80::1%3", "2001:db8::1"], one) == [
        "10.0.0.1",
        "fe80::1%eth0",
        "2001:db8::1",
    ]
    assert dialable(["fe80::2"], one) == ["fe80::2%eth0"]  # heard over IPv4: the one interface
    assert dialable(["fe80::2"], {3: "eth0", 4: "eth1"}) == []  # ambiguous: not dialable


def test_txt_of_a_peer_is_read_and_a_malformed_one_is_named_not_raised() -> None:
    txt = read_txt({b"cluster": CLUSTER.encode(), b"node": b"n1", b"port": b"7000", b"v": b"1"})
    assert txt == PeerTxt(CLUSTER, "n1", 7000)
    assert read_txt({b"node": b"n1", b"port": b"1"}) == "no cluster in TXT"
    assert read_txt({b"cluster": b"c", b"node": b"n 1", b"port": b"1"}) == (
        "TXT node 'n 1' is not a node id"
    )
    assert read_txt({b"cluster": b"c", b"node": b"n1", b"port": None}) == (
        "TXT port None is not in 1..65535"
    )


def test_sighting_endpoint_reads_back_as_a_seed() -> None:
    sighting = Sighting("fe80::1%eth0", 7000, "nd", None)
    assert sighting.endpoint == "[fe80::1%eth0]:7000"
    assert parse_seed(sighting.endpoint, 1) == ("fe80::1%eth0", 7000)


# -- the LAN ----------------------------------------------------------------------------------


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Lan:
    bridge: str
    nodes: list[str]
    ipv4: dict[str, str] = field(default_factory=dict)
    link_local: dict[str, str] = field(default_factory=dict)


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    require(can_make_namespaces(), "needs root and iproute2 to build network namespaces")
    prefix = f"edn-disc-{os.getpid()}"
    made: list[str] = []
    try:
        net = Lan(bridge=f"{prefix}-br", nodes=[f"{prefix}-n{i}" for i in range(1, 5)])
        for ns in (net.bridge, *net.nodes):
            ip("netns", "add", ns)
            made.append(ns)
            sysctl = "net.ipv6.conf.{}.{}=" + ("1" if ns == net.bridge else "0")
            key = "disable_ipv6" if ns == net.bridge else "accept_dad"
            for scope in ("all", "default"):
                ip("netns", "exec", ns, "sysctl", "-qw", sysctl.format(scope, key))
        ip("-n", net.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", net.bridge, "link", "set", "br0", "up")
        for i, ns in enumerate(net.nodes, 1):
            veth = ("type", "veth", "peer", "eth0", "netns", ns)
            ip("-n", net.bridge, "link", "add", f"v{i}", *veth)
            ip("-n", net.bridge, "link", "set", f"v{i}", "master", "br0", "up")
            net.ipv4[ns] = f"10.77.0.{i}"
            ip("-n", ns, "addr", "add", f"{net.ipv4[ns]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
        deadline = time.monotonic() + 5
        while len(net.link_local) < len(net.nodes) and time.monotonic() < deadline:
            for ns in net.nodes:
                out = ip("-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link")
                if "inet6" in out and "tentative" not in out:
                    net.link_local[ns] = out.split()[3].split("/")[0]
            time.sleep(0.05)
        assert len(net.link_local) == len(net.nodes), "link-local addresses did not come up"
        yield net
    finally:
        for ns in reversed(made):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                ip("netns", "del", ns)


class Peer:
    """One node's discovery process and the JSON lines it printed."""

    def __init__(self, ns: str, node: str, port: int, *args: str) -> None:
        self.ns, self.node, self.port = ns, node, port
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        cmd = ["ip", "netns", "exec", ns, sys.executable, str(PEER), "--node", node]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(port), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def drain(self) -> list[dict[str, Any]]:
        with contextlib.suppress(queue.Empty):
            while True:
                self.seen.append(self.lines.get_nowait())
        return self.seen

    def sightings(self, source: str) -> set[tuple[str, int, str | None]]:
        return {
            (e["host"], e["port"], e["node"])
            for e in self.drain()
            if e["event"] == "sighting" and e["source"] == source
        }

    def ask_to_stop(self) -> None:
        """Close stdin: the peer closes discovery (mDNS goodbyes) and exits."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def stop(self) -> str:
        """Stop the peer (killed if it takes over 5 s); its stderr, for diagnosis."""
        if self.proc.poll() is None:
            self.ask_to_stop()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


@contextlib.contextmanager
def peers(*specs: tuple[str, str, int, tuple[str, ...]]) -> Iterator[list[Peer]]:
    started: list[Peer] = []
    try:
        for ns, node, port, args in specs:
            started.append(Peer(ns, node, port, *args))
        yield started
    finally:
        for peer in started:
            peer.ask_to_stop()
        for peer in started:
            peer.stop()


def wait_until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what()}")
        time.sleep(0.05)


# -- an independent mDNS browser: a PTR query built by hand ------------------------------------


def in_netns(ns: str, make: Callable[[], Any]) -> Any:
    """Run `make` on a thread that entered namespace `ns` (sockets it opens stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, Any] = {}

    def run() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                box["error"] = OSError(ctypes.get_errno(), f"setns {ns}")
                return
            box["value"] = make()
        except OSError as exc:
            box["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def dns_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            end = end or offset + 2
            offset = struct.unpack_from("!H", data, offset)[0] & 0x3FFF
            continue
        offset += 1
        if length == 0:
            return ".".join(labels) + ".", end or offset
        labels.append(data[offset : offset + length].decode())
        offset += length


def mdns_browse(ns: str, service_type: str, timeout: float) -> dict[str, dict[str, Any]]:
    """Send one legacy-unicast PTR query for `service_type` from namespace `ns` and collect the
    answers for `timeout` seconds: instance name -> its SRV port and TXT entries."""

    def open_socket() -> tuple[socket.socket, int]:
        return socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), socket.if_nametoindex("eth0")

    sock, ifindex = in_netns(ns, open_socket)
    question = b"".join(bytes([len(p)]) + p.encode() for p in service_type.split(".") if p)
    query = struct.pack("!6H", 0x4242, 0, 1, 0, 0, 0) + question + b"\0" + struct.pack("!2H", 12, 1)
    found: dict[str, dict[str, Any]] = {}
    with sock:
        sock.settimeout(0.2)
        sock.sendto(query, ("ff02::fb", 5353, 0, ifindex))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(9000)
            except TimeoutError:
                continue
            counts = struct.unpack_from("!6H", data)
            offset = 12
            for _ in range(counts[2]):
                offset = dns_name(data, offset)[1] + 4
            for _ in range(sum(counts[3:])):
                name, offset = dns_name(data, offset)
                rtype, _cls, _ttl, length = struct.unpack_from("!HHIH", data, offset)
                offset += 10
                rdata = data[offset : offset + length]
                if rtype == 12:  # PTR
                    found.setdefault(dns_name(data, offset)[0], {})
                elif rtype == 33:  # SRV
                    found.setdefault(name, {})["port"] = struct.unpack_from("!H", rdata, 4)[0]
                elif rtype == 16:  # TXT
                    entries, i = {}, 0
                    while i < len(rdata):
                        key, _, value = rdata[i + 1 : i + 1 + rdata[i]].decode().partition("=")
                        entries[key] = value
                        i += 1 + rdata[i]
                    found.setdefault(name, {})["txt"] = entries
                offset += length
    return found


def browse_until(ns: str, instance: str, timeout: float) -> dict[str, dict[str, Any]]:
    """Query again (as a browser does) until `instance` answers with its SRV and TXT."""
    deadline = time.monotonic() + timeout
    browsed: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        browsed = mdns_browse(ns, SERVICE_TYPE, 0.5)
        if {"port", "txt"} <= browsed.get(instance, {}).keys():
            return browsed
    raise AssertionError(f"{instance} not browsed within {timeout} s; saw {browsed}")


# -- LAN tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mdns_nodes(lan: Lan) -> Iterator[list[Peer]]:
    """n1..n3 of one cluster and n4 of another, each announcing and browsing mDNS (no ND)."""
    specs = [
        (ns, f"n{i}", 7000 + i, ("--cluster", CLUSTER if i < 4 else OTHER, "--no-nd"))
        for i, ns in enumerate(lan.nodes, 1)
    ]
    with peers(*specs) as running:
        yield running


def test_nodes_of_one_cluster_sight_each_other_by_mdns_and_never_another_cluster(
    lan: Lan, mdns_nodes: list[Peer]
) -> None:
    ours, other = mdns_nodes[:3], mdns_nodes[3]
    names = {p.node for p in mdns_nodes}

    def expected(me: Peer) -> set[tuple[str, int, str | None]]:
        return {
            (host, p.port, p.node)
            for p in ours
            if p is not me
            for host in (lan.ipv4[p.ns], f"{lan.link_local[p.ns]}%eth0")
        }

    def sighted(me: Peer) -> set[tuple[str, int, str | None]]:
        return {s for s in me.sightings("mdns") if s[2] in names}

    started = time.monotonic()
    wait_until(
        lambda: all(expected(p) <= sighted(p) for p in ours),
        20,
        lambda: str({p.node: sorted(sighted(p)) for p in ours}),
    )
    elapsed = time.monotonic() - started
    # Seconds from each process's start (after its imports) to its last expected sighting.
    inner = max(
        e["t"]
        for p in ours
        for e in p.drain()
        if e["event"] == "sighting" and (e["host"], e["port"], e["node"]) in expected(p)
    )
    # The other cluster's node is on the wire (an independent browser sees it)...
    browsed = browse_until(lan.nodes[0], f"n4.{SERVICE_TYPE}", 20)
    assert browsed[f"n4.{SERVICE_TYPE}"].get("txt", {}).get("cluster") == OTHER
    time.sleep(1.0)  # its announcements reached the others too: give them time to (mis)report
    # ...yet nobody reports it, and it reports nobody; and nobody reports itself.
    for p in ours:
        assert sighted(p) == expected(p), p.node
    assert other.sightings("mdns") == set()
    print(f"mdns: 3 nodes sighted each other {elapsed:.2f} s after launch ({inner:.2f} s in)")


def test_a_standard_mdns_browser_sees_the_service_and_its_txt(
    lan: Lan, mdns_nodes: list[Peer]
) -> None:
    browsed = browse_until(lan.nodes[0], f"n2.{SERVICE_TYPE}", 20)
    assert browsed.get(f"n2.{SERVICE_TYPE}") == {
        "port": 7002,
        "txt": {"cluster": CLUSTER, "node": "n2", "port": "7002", "v": "1"},
    }


def test_a_node_sights_its_ipv6_neighbours_without_mdns_and_its_seeds(lan: Lan) -> None:
    specs: list[tuple[str, str, int, tuple[str, ...]]] = [
        (ns, f"n{i}", 7000 + i, ("--cluster", CLUSTER, "--no-mdns", "--nd-interval", "1"))
        for i, ns in enumerate(lan.nodes[:3], 1)
    ]
    seed = f"[{lan.link_local[lan.nodes[1]]}%eth0]:7002"
    specs[0] = (*specs[0][:3], (*specs[0][3], "--seed", seed, "--seed", "localhost:7005"))
    with peers(*specs) as running:

        def expected(me: Peer) -> set[tuple[str, int, str | None]]:
            return {(f"{lan.link_local[ns]}%eth0", 7946, None) for ns in lan.nodes if ns != me.ns}

        started = time.monotonic()
        wait_until(
            lambda: all(expected(p) <= p.sightings("nd") for p in running),
            20,
            lambda: str({p.node: sorted(p.sightings("nd")) for p in running}),
        )
        elapsed = time.monotonic() - started
        time.sleep(1.5)  # more scans happen: unchanged neighbours are not sighted again
        # Seeds are sighted at start too, a DNS name at the addresses it resolves to.
        assert {
            (f"{lan.link_local[lan.nodes[1]]}%eth0", 7002, None),
            ("127.0.0.1", 7005, None),
        } <= (running[0].sightings("seed"))
        for p in running:
            hosts = [e["host"] for e in p.drain() if e.get("source") == "nd"]
            assert sorted(hosts) == sorted(h for h, _, _ in expected(p)), p.node
            assert p.sightings("mdns") == set()
        print(f"nd: 3 nodes sighted their 3 neighbours within {elapsed:.2f} s of starting")


def test_a_node_with_a_new_address_is_sighted_there_live_and_after_a_restart(lan: Lan) -> None:
    # Names of their own: the module's mDNS nodes may still be running in these namespaces.
    watcher = (lan.nodes[0], "w1", 7011, ("--cluster", CLUSTER, "--no-nd"))
    mover = (lan.nodes[2], "m3", 7013, ("--cluster", CLUSTER, "--no-nd", "--address-check", "1"))

    def sighted(n1: Peer, address: str) -> None:
        wait_until(
            lambda: (address, 7013, "m3") in n1.sightings("mdns"),
            20,
            lambda: f"m3 at {address}: w1 saw {sorted(n1.sightings('mdns'))}",
        )

    with peers(watcher) as (n1,):
        try:
            with peers(mover):
                sighted(n1, lan.ipv4[lan.nodes[2]])
                ip("-n", lan.nodes[2], "addr", "add", "10.77.0.34/24", "dev", "eth0")
                sighted(n1, "10.77.0.34")  # re-announced while running
            ip("-n", lan.nodes[2], "addr", "add", "10.77.0.35/24", "dev", "eth0")
            with peers(mover):
                sighted(n1, "10.77.0.35")  # after a goodbye and a restart
        finally:
            for address in ("10.77.0.34/24", "10.77.0.35/24"):
                with contextlib.suppress(RuntimeError):
                    ip("-n", lan.nodes[2], "addr", "del", address, "dev", "eth0")
