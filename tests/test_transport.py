"""The QUIC transport: only nodes the cluster's root vouches for get anything, messages flow both
ways over one connection, and nothing a peer sends stops the node serving honest peers.

Peers run as separate processes (tests/probes/quic_peer.py) or in the test's own event loop;
either way the QUIC is real, over loopback (and across network namespaces where allowed).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator, MutableMapping
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cbor2
import pytest
from conftest import require
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gossip import _frames as fr
from gossip._credentials import Credential, cluster_id
from gossip._membership_wire import NodeId
from gossip.identity import IdentityError, init_cluster, issue, public_bytes
from gossip.transport import (
    AioquicInternalsError,
    NodeIdentity,
    PeerDown,
    PeerUp,
    Transport,
    TransportConfig,
    TransportError,
    peer_certificate,
    send_backlog,
)

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "probes" / "quic_peer.py"
NOW = int(time.time())  # the probes check credentials against the real clock
DAY = 86_400
FAST = TransportConfig(handshake_timeout_s=2.0, connect_timeout_s=3.0)


# -- Identities on disk ----------------------------------------------------------------------


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def join(root_state: Path, state: Path, name: str, *, now: int = NOW, days: int = 365) -> Path:
    """A node's state dir holding a credential that `root_state`'s root issued."""
    key = Ed25519PrivateKey.generate()
    (state / "cluster").mkdir(parents=True)
    (state / "node.key").write_bytes(_raw_private(key))
    shutil.copy(root_state / "cluster" / "cluster.json", state / "cluster" / "cluster.json")
    cred = issue(root_state, name, "node", public_bytes(key), now=now, days=days)
    (state / "cluster" / "node.cred").write_bytes(cred.encode())
    return state


def forge(root_state: Path, state: Path, name: str) -> Path:
    """A node's state dir whose credential claims `root_state`'s cluster, signed by another key."""
    join(root_state, state, name)
    real = Credential.decode((state / "cluster" / "node.cred").read_bytes())
    forged = replace(real, signature=Ed25519PrivateKey.generate().sign(real.body()))
    (state / "cluster" / "node.cred").write_bytes(forged.encode())
    return state


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("transport")
    init_cluster(base / "n1", "n1", now=NOW)
    init_cluster(base / "m1", "m1", now=NOW)  # another cluster
    out = {"n1": base / "n1", "other-cluster": base / "m1"}
    for name in ("n2", "n3", "n4"):
        out[name] = join(base / "n1", base / name, name)
    out["expired"] = join(base / "n1", base / "old", "n5", now=NOW - 30 * DAY, days=1)
    out["forged"] = forge(base / "n1", base / "forged", "n6")
    stranger = base / "stranger.key"
    stranger.write_bytes(_raw_private(Ed25519PrivateKey.generate()))
    out["stranger-key"] = stranger
    return out


# -- Nodes in this process and in probe processes --------------------------------------------


class Node:
    """A Transport in the test's event loop that records what it receives."""

    def __init__(self, state: Path, config: TransportConfig = FAST) -> None:
        self.messages: list[tuple[str, NodeId, bytes]] = []
        self.events: list[PeerUp | PeerDown] = []
        self.t = Transport(
            NodeIdentity.load(state),
            config,
            on_message=lambda c, s, d: self.messages.append((c, s, d)),
            on_peer=self.events.append,
        )
        self.port = 0

    async def start(self, host: str = "::") -> Node:
        self.port = await self.t.start(host, 0)
        return self


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for `cond` to hold (checked as the event loop runs), or fail."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {cond.__doc__ or cond}")
        await asyncio.sleep(0.01)


class Probe:
    """A node in its own process (tests/probes/quic_peer.py)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []
        self.port = 0
        self.node = ""

    @classmethod
    async def start(cls, state: Path, *args: str, prefix: tuple[str, ...] = ()) -> Probe:
        proc = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, str(PROBE), str(state), *args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        probe = cls(proc)
        ready = await probe.expect("ready")
        probe.port, probe.node = ready["port"], ready["node"]
        return probe

    async def expect(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"probe ended before {event}: {await self.stderr()}")
                item: dict[str, Any] = json.loads(line)
                self.seen.append(item)
                if item["event"] == event:
                    return item

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.returncode is None:
            self.proc.kill()
        return (await self.proc.stderr.read()).decode()

    async def stop(self) -> str:
        if self.proc.returncode is None:
            self.command(op="quit")
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
        return await self.stderr()

    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.seen if m["event"] == "message"]


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def refusals(
    logs: list[MutableMapping[str, Any]], event: str = "peer_refused"
) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event]


# -- Authenticated exchange ------------------------------------------------------------------


def test_two_nodes_exchange_frames_and_datagrams_both_ways_over_one_connection(
    states: dict[str, Path],
) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        n2 = await Probe.start(states["n2"])
        try:
            n1.t.set_address(NodeId("n2"), "::1", n2.port)
            for i in range(20):
                assert n1.t.send(NodeId("n2"), "state", b"frame-%d" % i, reliable=True)
            assert n1.t.send(NodeId("n2"), "probe", b"ping", reliable=False)
            await until(lambda: len(n1.t.peers()) == 1)
            n2.command(op="address", peer="n1", host="127.0.0.1", port=n1.port)
            n2.command(op="send", peer="n1", channel="state", data=b"back".hex(), reliable=True)
            n2.command(op="send", peer="n1", channel="probe", data=b"ack".hex(), reliable=False)
            await until(lambda: len(n1.messages) == 2)
            n2.command(op="stats")
            stats = await n2.expect("stats")
            got = [(m["channel"], m["sender"], bytes.fromhex(m["data"])) for m in n2.messages()]
            assert [g for g in got if g[0] == "state"] == [
                ("state", "n1", b"frame-%d" % i) for i in range(20)
            ]
            assert ("probe", "n1", b"ping") in got
            assert sorted(n1.messages) == [("probe", "n2", b"ack"), ("state", "n2", b"back")]
            assert n1.t.stats.connections == 1 and stats["connections"] == 1  # reused
            assert stats["datagrams_in"] == {"probe": 1} and stats["frames_in"] == {"state": 20}
            assert n1.events == [PeerUp(NodeId("n2"), ("::1", n2.port), inbound=False)]
            assert n1.t.peers()[NodeId("n2")].credential.subject == "n2"
        finally:
            await n2.stop()
            await n1.t.close()

    run(body)


def test_simultaneous_dials_keep_one_connection_and_lose_no_frame(
    states: dict[str, Path],
) -> None:
    async def body() -> None:
        a, b = await Node(states["n1"]).start(), await Node(states["n2"]).start()
        try:
            a.t.set_address(NodeId("n2"), "::1", b.port)
            b.t.set_address(NodeId("n1"), "127.0.0.1", a.port)  # IPv4 to a "::" socket
            for i in range(50):  # both dial at once, each with frames queued
                assert a.t.send(NodeId("n2"), "x", b"a%d" % i, reliable=True)
                assert b.t.send(NodeId("n1"), "x", b"b%d" % i, reliable=True)
            await until(lambda: len(a.messages) == 50 and len(b.messages) == 50)
            await until(lambda: len(a.t._conns) == 1 and len(b.t._conns) == 1)
            for i in range(50, 60):
                assert a.t.send(NodeId("n2"), "x", b"a%d" % i, reliable=True)
            await until(lambda: len(b.messages) == 60)
            assert [m[2] for m in b.messages] == [b"a%d" % i for i in range(60)]
            assert [m[2] for m in a.messages] == [b"b%d" % i for i in range(50)]
            assert a.t.stats.connections == 2 == b.t.stats.connections  # both dials got through
            kept = a.t.peers()[NodeId("n2")]
            assert not kept.inbound  # n1 < n2: the connection n1 dialled is kept
            assert [type(e) for e in a.events] == [PeerUp]
        finally:
            await a.t.close()
            await b.t.close()

    run(body)


# -- Refusals at connection time -------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ("other-cluster", "belongs to cluster"),
        ("expired", "expired at"),
        ("forged", "signature does not verify"),
        ("stranger-key", "handshake signature does not verify"),
    ],
)
def test_a_node_without_a_valid_credential_is_refused_and_gets_nothing(
    states: dict[str, Path], who: str, reason: str
) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        args = ("--key", str(states[who])) if who == "stranger-key" else ()
        peer = await Probe.start(states["n2"] if who == "stranger-key" else states[who], *args)
        try:
            with capture_logs() as logs:
                peer.command(op="address", peer="n1", host="::1", port=n1.port)
                peer.command(op="send", peer="n1", channel="state", data="aa", reliable=True)
                peer.command(op="dial", host="::1", port=n1.port)
                failed = await peer.expect("dial_failed")
            assert reason in failed["reason"]
            refused = refusals(logs)
            assert refused and reason in refused[0]["reason"]
            assert refused[0]["address"].startswith("[::1]:")
            assert refused[0]["subject"] in {"m1", "n5", "n6", "n2"}
            assert n1.messages == [] and n1.t.peers() == {} and n1.events == []
            assert peer.messages() == []
            assert n1.t.stats.refused >= 1 and n1.t.stats.connections == 0
        finally:
            stderr = await peer.stop()
            await n1.t.close()
        assert "refused_by_peer" in stderr and reason in stderr

    run(body)


def test_a_server_whose_certificate_is_not_its_credentials_key_is_refused(
    states: dict[str, Path],
) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        impostor = await Probe.start(states["n2"], "--key", str(states["stranger-key"]))
        try:
            with capture_logs() as logs:
                n1.t.set_address(NodeId("n2"), "::1", impostor.port)
                assert n1.t.send(NodeId("n2"), "state", b"for n2 only", reliable=True)
                with pytest.raises(TransportError, match="TLS certificate of n2 holds key"):
                    await n1.t.dial("::1", impostor.port)
                await until(lambda: n1.t.queued(NodeId("n2")) == 0)  # dropped, not sent
            told = await impostor.expect("log")
            assert told["log"] == "refused_by_peer" and "TLS certificate" in told["reason"]
            assert refusals(logs)[0]["kind"] == "certificate"
            assert refusals(logs)[0]["subject"] == "n2"
            assert n1.messages == [] and n1.t.peers() == {} and n1.t.stats.frames_out == {}
        finally:
            stderr = await impostor.stop()
            await n1.t.close()
        assert impostor.messages() == [] and "refused_by_peer" in stderr

    run(body)


async def _raw_client(port: int) -> Any:
    """A bare aioquic client: it finishes TLS, then sends only what the test makes it send."""
    from aioquic.asyncio.client import connect
    from aioquic.quic.configuration import QuicConfiguration

    config = QuicConfiguration(
        is_client=True, alpn_protocols=[fr.ALPN], verify_mode=0, max_datagram_frame_size=65536
    )
    return connect("::1", port, configuration=config)


def test_data_sent_before_authentication_is_never_delivered(states: dict[str, Path]) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        try:
            with capture_logs() as logs:
                async with await _raw_client(n1.port) as early:
                    early._quic.send_datagram_frame(fr.channel_payload("state", b"early"))
                    early.transmit()
                    await until(lambda: n1.t.stats.dropped == 1)
                    data = fr.frame(fr.Kind.DATA, fr.channel_payload("state", b"early"))
                    early._quic.send_stream_data(0, data)
                    early.transmit()
                    await asyncio.wait_for(early.wait_closed(), 3)
                    closed = early._quic._close_event
            assert closed.error_code == fr.Close.REFUSED
            assert "expected HELLO" in closed.reason_phrase
            assert refusals(logs)[0]["kind"] == "unexpected"
            assert n1.messages == [] and n1.t.stats.frames_in == {} == n1.t.stats.datagrams_in
        finally:
            await n1.t.close()

    run(body)


def test_a_peer_that_never_authenticates_is_cut_at_the_deadline(states: dict[str, Path]) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"], replace(FAST, handshake_timeout_s=0.3)).start()
        try:
            with capture_logs() as logs:
                async with await _raw_client(n1.port) as silent:
                    await asyncio.wait_for(silent.wait_closed(), 3)
                    closed = silent._quic._close_event
            assert closed.error_code == fr.Close.TIMEOUT
            assert "deadline" in closed.reason_phrase
            assert refusals(logs)[0]["kind"] == "deadline"
            assert n1.t._pending == 0 and n1.messages == []
        finally:
            await n1.t.close()

    run(body)


def test_pending_handshakes_are_capped(states: dict[str, Path]) -> None:
    async def body() -> None:
        config = replace(FAST, handshake_timeout_s=1.0, max_pending_handshakes=2)
        n1 = await Node(states["n1"], config).start()
        try:
            with capture_logs() as logs:
                clients = [await _raw_client(n1.port) for _ in range(3)]
                entered = [await c.__aenter__() for c in clients[:2]]
                with pytest.raises(ConnectionError):
                    await clients[2].__aenter__()
                assert [e["kind"] for e in refusals(logs)] == ["busy"]
                for c in entered:
                    await c.wait_closed()
            assert n1.t._pending == 0
        finally:
            await n1.t.close()

    run(body)


# -- Garbage and limits ----------------------------------------------------------------------


def _garbage(rng: random.Random) -> bytes:
    shape = rng.random()
    if shape < 0.4:
        return rng.randbytes(rng.randint(0, 1500))
    if shape < 0.9:  # looks like a version-1 Initial, then noise: some cut short
        head = bytes([0xC0 | rng.randint(0, 15)]) + b"\x00\x00\x00\x01\x08" + rng.randbytes(8)
        packet = head + b"\x08" + rng.randbytes(8) + b"\x00" + rng.randbytes(1250)
        return packet[: rng.choice([1200, 1250, rng.randint(1, 1200)])]
    return bytes([0x40 | rng.randint(0, 63)]) + rng.randbytes(rng.randint(8, 1400))


def test_garbage_datagrams_and_malformed_frames_leave_the_node_serving(
    states: dict[str, Path],
) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        rng = random.Random(7)
        datagrams = [_garbage(rng) for _ in range(10_000)]

        def blast() -> None:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                for i, d in enumerate(datagrams):
                    s.sendto(d, ("::1", n1.port))
                    if i % 200 == 0:
                        time.sleep(0.002)  # let the node read rather than the kernel drop

        try:
            with capture_logs() as logs:
                await asyncio.to_thread(blast)
                bad = await Node(states["n3"]).start()
                for junk in (
                    b"\x00\x00\x00\x05\x05\xffabc",
                    b"\x00\x00\x00\x00",
                    b"\x00\x00\x00\x01\x09",
                ):
                    bad.t.set_address(NodeId("n1"), "::1", n1.port)
                    assert await bad.t.dial("::1", n1.port) == "n1"
                    conn = bad.t._peers[NodeId("n1")].active
                    assert conn is not None and conn.stream_id is not None
                    conn._quic.send_stream_data(conn.stream_id, junk)
                    conn.transmit()
                    await until(lambda: NodeId("n1") not in bad.t.peers())
                await bad.t.close()
            closes = [e for e in logs if e["event"] == "peer_closed"]
            assert [e["kind"] for e in closes] == ["malformed"]  # the same again: rate-limited
            assert [type(e) for e in bad.events] == [PeerUp, PeerDown] * 3
            assert not [e for e in logs if e["event"] == "transport_bug"]
            n2 = await Probe.start(states["n2"])
            n1.t.set_address(NodeId("n2"), "::1", n2.port)
            assert n1.t.send(NodeId("n2"), "state", b"still here", reliable=True)
            await n2.expect("message")
            await until(lambda: n1.t._pending == 0)
            assert n1.messages == []
            await n2.stop()
        finally:
            await n1.t.close()

    run(body)


def test_a_crashed_peers_restart_is_turned_away_unless_the_peer_is_expected_to_restart(
    states: dict[str, Path],
) -> None:
    async def restart(n1: Node, old: Probe) -> Probe:
        """`old` crashes (nothing tells n1) and comes back, sending n1 a frame."""
        old.proc.kill()
        await old.proc.wait()
        new = await Probe.start(states["n2"])
        new.command(op="address", peer="n1", host="::1", port=n1.port)
        new.command(op="send", peer="n1", channel="state", data=b"back".hex(), reliable=True)
        await until(lambda: len(n1.messages) == 1)
        n1.messages.clear()
        return new

    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        probes = [await Probe.start(states["n2"])]
        try:
            n1.t.set_address(NodeId("n2"), "::1", probes[0].port)
            assert n1.t.send(NodeId("n2"), "state", b"hello", reliable=True)
            await probes[0].expect("message")
            # n1 keeps the connection it dialled to the crashed process and drains the new one.
            probes.append(await restart(n1, probes[0]))
            await probes[1].expect("peer_down")
            # Held gone (its membership says dead): the next restart's connection replaces it.
            n1.t.expect_restart(NodeId("n2"))
            probes.append(await restart(n1, probes[1]))
            await asyncio.sleep(0.3)  # time for a drain, were there one
            probes[2].command(op="stats")
            assert (await probes[2].expect("stats"))["peers"] == ["n1"]
            assert "peer_down" not in [e["event"] for e in probes[2].seen]
            assert n1.t.peers()[NodeId("n2")].inbound
        finally:
            for probe in probes:
                await probe.stop()
            await n1.t.close()

    run(body)


def test_a_peer_held_gone_but_heard_again_keeps_its_connection_by_the_usual_rule(
    states: dict[str, Path],
) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"]).start()
        n2 = await Probe.start(states["n2"])
        try:
            n1.t.set_address(NodeId("n2"), "::1", n2.port)
            assert n1.t.send(NodeId("n2"), "state", b"hello", reliable=True)
            await n2.expect("message")
            n1.t.expect_restart(NodeId("n2"))  # a partition, say: n2 is held dead
            n2.command(op="address", peer="n1", host="::1", port=n1.port)
            n2.command(op="send", peer="n1", channel="state", data=b"heard".hex(), reliable=True)
            await until(lambda: len(n1.messages) == 1)  # on the old connection: n2 is back
            n2.command(op="dial", host="::1", port=n1.port)  # and a second connection
            await n2.expect("dialled")
            await asyncio.sleep(0.3)
            # Both ends keep the one n1 dialled; n2 never saw its peer go.
            assert not n1.t.peers()[NodeId("n2")].inbound
            assert "peer_down" not in [e["event"] for e in n2.seen]
        finally:
            await n2.stop()
            await n1.t.close()

    run(body)


def test_every_datagram_refused_at_the_port_is_counted_by_kind_and_logged_with_counts(
    states: dict[str, Path],
) -> None:
    rng = random.Random(3)

    def initial(payload: int) -> bytes:  # a version-1 Initial's header, a fresh connection id
        cids = b"\x08" + rng.randbytes(8) + b"\x08" + rng.randbytes(8)
        return b"\xc0\x00\x00\x00\x01" + cids + b"\x00" + (0x4000 | payload).to_bytes(2, "big")

    replayed = initial(1232) + rng.randbytes(1232)  # the same Initial again and again

    def batch() -> dict[str, list[bytes]]:
        return {
            "not-quic": [b"", b"\x40"],  # empty; a short header cut before its connection id
            "unsupported-version": [b"\xca\x0a\x0a\x0a\x0a" + initial(16)[5:] + rng.randbytes(16)],
            "short-initial": [initial(100) + rng.randbytes(100)],
            "no-connection": [b"\x40" + rng.randbytes(64)],
            "no-client-hello": [initial(1232) + rng.randbytes(1232), replayed],
        }

    async def body() -> None:
        n1 = await Node(states["n1"], replace(FAST, log_interval_s=0.3)).start()
        want: dict[str, int] = {}
        try:
            with capture_logs() as logs:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                    for _ in range(20):
                        for kind, datagrams in batch().items():
                            want[kind] = want.get(kind, 0) + len(datagrams)
                            for d in datagrams:
                                s.sendto(d, ("::1", n1.port))
                        await asyncio.sleep(0.005)
                await until(lambda: n1.t.stats.datagrams_refused == want)
                await asyncio.sleep(0.5)  # one interval: the counts held back are logged
            refused = [e for e in logs if e["event"] == "datagrams_refused"]
            assert refused[0]["count"] == 1  # the first at once, the rest with their counts
            logged: dict[str, int] = {}
            for e in refused:
                logged[e["kind"]] = logged.get(e["kind"], 0) + e["count"]
                assert e["address"] == "::1"
            assert logged == want
            assert not [e for e in logs if e["event"] == "transport_bug"]
        finally:
            await n1.t.close()

    run(body)


def test_a_frame_over_the_limit_closes_that_connection_only(states: dict[str, Path]) -> None:
    async def body() -> None:
        n1 = await Node(states["n1"], replace(FAST, max_frame_bytes=64 << 10)).start()
        big = await Node(states["n3"], replace(FAST, max_frame_bytes=1 << 20)).start()
        n2 = await Node(states["n2"]).start()
        try:
            for peer in (big, n2):
                peer.t.set_address(NodeId("n1"), "::1", n1.port)
                assert peer.t.send(NodeId("n1"), "state", b"hi", reliable=True)
            await until(lambda: len(n1.t.peers()) == 2)
            with capture_logs() as logs:
                assert big.t.send(NodeId("n1"), "state", bytes(100 << 10), reliable=True)
                await until(lambda: NodeId("n3") not in n1.t.peers())
            assert [e["kind"] for e in logs if e["event"] == "peer_closed"] == ["frame-too-big"]
            assert NodeId("n2") in n1.t.peers()
            assert n2.t.send(NodeId("n1"), "state", b"after", reliable=True)
            await until(lambda: (("state", "n2", b"after")) in n1.messages)
            assert PeerDown in [type(e) for e in n1.events]
            assert all(len(m[2]) < 1000 for m in n1.messages)
        finally:
            for node in (n1, big, n2):
                await node.t.close()

    run(body)


def test_backpressure_refuses_sends_once_the_queue_is_full_and_memory_stays_flat(
    states: dict[str, Path],
) -> None:
    async def body() -> None:
        config = replace(
            FAST, max_queue_bytes=256 << 10, max_frame_bytes=64 << 10, connect_timeout_s=0.5
        )
        n1 = await Node(states["n1"], config).start()
        n2 = await Probe.start(states["n2"])
        silent = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        silent.bind(("::1", 0))
        try:
            assert not n1.t.send(NodeId("n9"), "state", b"x", reliable=True)  # no address
            frame = bytes(16 << 10)
            n1.t.set_address(NodeId("n4"), "::1", silent.getsockname()[1])  # never answers
            accepted = sum(
                n1.t.send(NodeId("n4"), "state", frame, reliable=True) for _ in range(40)
            )
            assert accepted == (256 << 10) // (len(frame) + 11)
            await until(lambda: n1.t.queued(NodeId("n4")) == 0)  # dial failed: queue freed

            n1.t.set_address(NodeId("n2"), "::1", n2.port)
            assert await n1.t.dial("::1", n2.port) == "n2"
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            results = [n1.t.send(NodeId("n2"), "state", frame, reliable=True) for _ in range(2000)]
            grown = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            sent = results.index(False)
            assert 0 < sent <= 16 and not any(results[sent:])
            assert n1.t.queued(NodeId("n2")) <= config.max_queue_bytes
            assert grown < 2 * config.max_queue_bytes
            for _ in range(sent):
                await n2.expect("message")
            await until(lambda: n1.t.queued(NodeId("n2")) == 0)
            assert n1.t.send(NodeId("n2"), "state", frame, reliable=True)
            probe = [n1.t.send(NodeId("n2"), "probe", b"p", reliable=False) for _ in range(500)]
            datagrams = sum(probe)
            assert datagrams == config.max_datagram_backlog  # unsent datagrams are capped too
            dropped = 1 + (40 - accepted) + accepted + (2000 - sent) + (500 - datagrams)
            assert n1.t.stats.dropped == dropped
        finally:
            silent.close()
            await n2.stop()
            await n1.t.close()

    run(body)


# -- The aioquic internals this transport relies on ------------------------------------------


def test_listening_and_dialled_sockets_get_buffers_for_a_burst_past_the_kernel_default(
    states: dict[str, Path],
) -> None:
    """A catch-up answer (a few MiB) lands while the receiver's loop is busy applying the
    last chunk; with the kernel's default 208 KiB the rest is dropped and QUIC stalls."""
    config = replace(FAST, socket_buffer_bytes=6 << 20)

    async def body() -> None:
        a, b = await Node(states["n1"], config).start(), await Node(states["n2"]).start()
        try:
            assert await a.t.dial("::1", b.port) == "n2"
            client = a.t._peers[NodeId("n2")].active
            assert a.t._listening is not None and client is not None and client.udp is not None
            for sock in (a.t._listening, client.udp.get_extra_info("socket")):
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    # Linux reports twice what was set (its bookkeeping overhead).
                    assert sock.getsockopt(socket.SOL_SOCKET, option) >= 6 << 20
        finally:
            await a.t.close()
            await b.t.close()

    require(os.geteuid() == 0, "buffers past net.core.rmem_max need CAP_NET_ADMIN (root)")
    run(body)
    with pytest.raises(ValueError, match="socket_buffer_bytes: expected 65536 to"):
        TransportConfig(socket_buffer_bytes=1000)


def test_the_aioquic_internals_relied_on_still_exist(states: dict[str, Path]) -> None:
    async def body() -> None:
        a, b = await Node(states["n1"]).start(), await Node(states["n2"]).start()
        try:
            assert await a.t.dial("::1", b.port) == "n2"
            client = a.t._peers[NodeId("n2")].active
            await until(lambda: b.t._peers.get(NodeId("n1")) is not None)
            server = b.t._peers[NodeId("n1")].active
            assert client is not None and server is not None
            cert = peer_certificate(client._quic)
            assert cert is not None and cert == b.t._cert
            assert cert.public_key() == b.t.identity.key.public_key()
            assert peer_certificate(server._quic) is None  # clients present no certificate

            def backlog() -> tuple[int, int]:
                assert client is not None
                return send_backlog(client._quic, client.stream_id)

            await until(lambda: backlog() == (0, 0))  # AUTH acknowledged
            assert a.t.send(NodeId("n2"), "state", bytes(5000), reliable=True)
            assert a.t.send(NodeId("n2"), "probe", bytes(100), reliable=False)
            assert backlog()[0] >= 5000 and backlog()[1] == 1
            await until(lambda: backlog() == (0, 0))
        finally:
            await a.t.close()
            await b.t.close()
        with pytest.raises(AioquicInternalsError, match="_peer_certificate"):
            peer_certificate(SimpleNamespace(tls=SimpleNamespace()))  # type: ignore[arg-type]
        with pytest.raises(AioquicInternalsError, match="backpressure"):
            send_backlog(SimpleNamespace(), 0)  # type: ignore[arg-type]

    run(body)


# -- The pure core: frames and the handshake -------------------------------------------------


def test_frames_are_cut_from_any_chunking_and_an_oversized_length_fails_at_once() -> None:
    frames = [fr.frame(fr.Kind.DATA, fr.channel_payload("c", bytes([i]) * i)) for i in range(50)]
    wire = b"".join(frames)
    decoder = fr.FrameDecoder(100)
    rng = random.Random(3)
    got: list[tuple[int, bytes]] = []
    at = 0
    while at < len(wire):
        n = rng.randint(1, 40)
        got += decoder.feed(wire[at : at + n])
        at += n
    assert [fr.parse_channel_payload(b) for _, b in got] == [
        ("c", bytes([i]) * i) for i in range(50)
    ]
    big = fr.FrameDecoder(100)
    assert big.feed(b"\x00\x00\x10\x00\x05") == [] and big.too_big and big.buffered() == 0
    assert big.feed(b"more") == []


@given(st.binary(max_size=300), st.integers(1, 300))
def test_any_bytes_decode_to_frames_or_an_error_never_an_exception(data: bytes, limit: int) -> None:
    decoder = fr.FrameDecoder(limit)
    for _, body in decoder.feed(data):
        fr.parse_channel_payload(body)
    assert decoder.buffered() <= limit + fr.HEADER.size


def _pair(
    root: Ed25519PrivateKey, *, server_cert: bytes = b"cert-s", seen_cert: bytes = b"cert-s"
) -> tuple[fr.ClientHandshake, fr.ServerHandshake, Ed25519PrivateKey]:
    cluster = cluster_id(public_bytes(root))

    def cred(name: str, key: Ed25519PrivateKey) -> Credential:
        unsigned = Credential(cluster, name, "node", public_bytes(key), NOW, NOW + DAY)
        return replace(unsigned, signature=root.sign(unsigned.body()))

    kc, ks = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    client = fr.ClientHandshake(
        key=kc, credential=cred("a", kc), root_public=public_bytes(root), nonce=os.urandom(32),
        cert_public=public_bytes(ks), cert_der=seen_cert,
    )  # fmt: skip
    server = fr.ServerHandshake(
        key=ks, credential=cred("b", ks), root_public=public_bytes(root), nonce=os.urandom(32),
        cert_der=server_cert,
    )  # fmt: skip
    return client, server, ks


def _deliver(data: bytes) -> tuple[int, bytes]:
    ((kind, body),) = fr.FrameDecoder(fr.MAX_HANDSHAKE_BYTES).feed(data)
    return kind, body


def test_the_handshake_authenticates_both_sides_in_four_messages() -> None:
    client, server, _ = _pair(Ed25519PrivateKey.generate())
    s1 = server.receive(*_deliver(client.hello()), now=NOW)
    c1 = client.receive(*_deliver(s1.reply), now=NOW)
    assert c1.peer is None and c1.refused is None  # not before the server accepts
    s2 = server.receive(*_deliver(c1.reply), now=NOW)
    assert s2.peer is not None and s2.peer.subject == "a"
    c2 = client.receive(*_deliver(s2.reply), now=NOW)
    assert c2.peer is not None and c2.peer.subject == "b"


def test_a_relayed_handshake_fails_because_it_is_bound_to_the_servers_certificate() -> None:
    # The client reached a relay (certificate "cert-relay") that forwards to the real server.
    client, server, _ = _pair(Ed25519PrivateKey.generate(), seen_cert=b"cert-relay")
    s1 = server.receive(*_deliver(client.hello()), now=NOW)
    refused = client.receive(*_deliver(s1.reply), now=NOW)
    assert refused.code == "signature" and refused.subject == "b"


def test_data_or_a_replayed_message_during_the_handshake_is_refused() -> None:
    client, server, _ = _pair(Ed25519PrivateKey.generate())
    early = server.receive(fr.Kind.DATA, fr.channel_payload("x", b"y"), now=NOW)
    assert early.code == "unexpected" and early.peer is None
    client, server, _ = _pair(Ed25519PrivateKey.generate())
    hello = _deliver(client.hello())
    server.receive(*hello, now=NOW)
    assert server.receive(*hello, now=NOW).code == "unexpected"
    assert server.receive(fr.Kind.HELLO, cbor2.dumps([2, b"", b""]), now=NOW).refused


FUZZED = _pair(Ed25519PrivateKey.generate())


@given(st.binary(max_size=400), st.sampled_from(list(fr.Kind)))
def test_any_bytes_in_the_handshake_are_refused_never_raise(data: bytes, kind: fr.Kind) -> None:
    client, server, _ = FUZZED  # random bytes never advance a handshake: one pair serves all
    assert server.receive(kind, data, now=NOW).peer is None
    assert client.receive(kind, data, now=NOW).peer is None


_CBOR = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.binary(max_size=40), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(_CBOR, min_size=0, max_size=4), st.sampled_from(list(fr.Kind)))
def test_well_formed_cbor_of_the_wrong_shape_is_refused_with_a_reason(
    fields: list[Any], kind: fr.Kind
) -> None:
    client, server, _ = FUZZED
    body = cbor2.dumps(fields)
    for step in (server.receive(kind, body, now=NOW), client.receive(kind, body, now=NOW)):
        assert step.peer is None and step.refused


def test_both_ends_keep_the_connection_the_lower_id_dialled() -> None:
    # n1 dialled conn A (outbound at n1, inbound at n2); n2 dialled conn B. Whichever came
    # second, both ends keep A.
    assert fr.keeps_new("n1", "n2", new_inbound=False, old_inbound=True)  # n1: A after B
    assert not fr.keeps_new("n1", "n2", new_inbound=True, old_inbound=False)  # n1: B after A
    assert fr.keeps_new("n2", "n1", new_inbound=True, old_inbound=False)  # n2: A after B
    assert not fr.keeps_new("n2", "n1", new_inbound=False, old_inbound=True)  # n2: B after A
    assert not fr.keeps_new("n1", "n2", new_inbound=False, old_inbound=False)  # keep the older


def test_identical_logs_are_rate_limited_and_count_what_was_held_back() -> None:
    limit = fr.RateLimit(10.0)
    key = ("peer_refused", "::1", "expired")
    assert limit.admit(key, now=0.0) == 0
    assert limit.admit(key, now=1.0) is None and limit.admit(key, now=9.9) is None
    assert limit.admit(("peer_refused", "::1", "forged"), now=2.0) == 0  # another kind
    assert limit.admit(key, now=10.0) == 2


def test_a_config_out_of_range_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"max_datagram_bytes: expected 64 to 1150, got 9000"):
        TransportConfig(max_datagram_bytes=9000)
    with pytest.raises(ValueError, match="max_queue_bytes: expected at least max_frame_bytes"):
        TransportConfig(max_queue_bytes=1000)


def test_an_identity_whose_credential_is_for_another_key_does_not_load(
    states: dict[str, Path], tmp_path: Path
) -> None:
    assert NodeIdentity.load(states["n2"]).node_id == "n2"
    shutil.copytree(states["n2"], tmp_path / "n2")
    shutil.copy(states["stranger-key"], tmp_path / "n2" / "node.key")
    with pytest.raises(IdentityError, match="the credential is not this node's"):
        NodeIdentity.load(tmp_path / "n2")


# -- Across network namespaces over IPv6 link-local ------------------------------------------


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair; yields their names."""
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and iproute2")
    tag = f"{os.getpid() % 100000}"
    names = (f"edgq{tag}a", f"edgq{tag}b")

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    try:
        for ns in names:
            ip("netns", "add", ns)
            for key in ("all", "default"):
                ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        ip("link", "add", "qa", "netns", names[0], "type", "veth", "peer", "qb", "netns", names[1])
        for ns, dev in zip(names, ("qa", "qb"), strict=True):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _link_local(ns: str, dev: str) -> str:
    for _ in range(100):
        out = subprocess.run(
            ["ip", "-n", ns, "-6", "-j", "addr", "show", "dev", dev, "scope", "link"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        addrs = [a["local"] for i in json.loads(out) for a in i["addr_info"]]
        if addrs and "tentative" not in out:
            return str(addrs[0])
        time.sleep(0.05)
    raise AssertionError(f"no link-local address on {dev} in {ns}")


def test_two_nodes_in_separate_namespaces_talk_over_ipv6_link_local(
    states: dict[str, Path], veth_pair: tuple[str, str]
) -> None:
    async def body() -> None:
        ns_a, ns_b = veth_pair
        b_addr = _link_local(ns_b, "qb")
        a = await Probe.start(states["n1"], prefix=("ip", "netns", "exec", ns_a))
        b = await Probe.start(states["n2"], prefix=("ip", "netns", "exec", ns_b))
        try:
            a.command(op="dial", host=f"{b_addr}%qa", port=b.port)
            assert (await a.expect("dialled"))["node"] == "n2"
            a.command(op="send", peer="n2", channel="state", data=b"over veth".hex(), reliable=True)
            a.command(op="send", peer="n2", channel="probe", data=b"dg".hex(), reliable=False)
            first, second = await b.expect("message"), await b.expect("message")
            assert {bytes.fromhex(m["data"]) for m in (first, second)} == {b"over veth", b"dg"}
            assert first["sender"] == "n1"
        finally:
            await a.stop()
            await b.stop()

    run(body)
