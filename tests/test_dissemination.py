"""The dissemination core, stepped by hand: push, forwarding, hot rounds, digests, gaps,
chunked catch-up with flow control, refusals, bad bytes; and `StoreLog` over real stores.

Nodes here are wired by a tiny hand-driven network (`Net`): nothing is delivered until a test
says so, so each test can look at exactly what one step sent.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from storekit import NOW_MS, open_store, public_bytes

from gossip._credentials import Credential, cluster_id
from gossip._dissemination import (
    ApplyResult,
    ChangesApplied,
    ChangesRefused,
    Dissemination,
    DisseminationConfig,
    DisseminationError,
    DisseminationEvent,
    GapDetected,
    MessageRejected,
    NodeId,
    PeerBehind,
    Refusal,
    vector_digest,
)
from gossip._dissemination_wire import (
    Chunk,
    Digest,
    Pull,
    Push,
    Rejected,
    decode,
    encode,
)
from gossip.logs import CredentialBook, MemoryLog, StoreLog
from store import Op

MAX = 1 << 20


def ids(n: int) -> list[NodeId]:
    return [NodeId(f"n{i}") for i in range(n)]


class Net:
    """Cores by id; messages wait in `wire` until `deliver` or `flush` moves them."""

    def __init__(self, n: int, **config: Any) -> None:
        self.config = DisseminationConfig(**config)
        self.logs = {node: MemoryLog(node) for node in ids(n)}
        self.cores = {
            node: Dissemination(
                me=node, log=log, config=self.config, rng=random.Random(f"7:{node}")
            )
            for node, log in self.logs.items()
        }
        for core in self.cores.values():
            core.set_peers(self.cores)
        self.wire: list[tuple[NodeId, NodeId, bytes]] = []
        self.events: dict[NodeId, list[DisseminationEvent]] = {n: [] for n in self.cores}

    def collect(self, now: float) -> list[tuple[NodeId, NodeId, bytes]]:
        """Move every core's outgoing messages onto the wire; returns the new ones."""
        fresh = []
        for node, core in self.cores.items():
            fresh += [(node, to, data) for to, data in core.messages_to_send(now=now)]
            while (event := core.next_event()) is not None:
                self.events[node].append(event)
        self.wire += fresh
        return fresh

    def deliver(self, now: float, keep: Any = lambda src, dst, msg: True) -> int:
        """Deliver what is on the wire now (those ``keep`` accepts); returns how many."""
        batch, self.wire = self.wire, []
        count = 0
        for src, dst, data in batch:
            if keep(src, dst, decode(data, max_bytes=MAX)):
                self.cores[dst].receive(data, src, now=now)
                count += 1
        self.collect(now)
        return count

    def flush(self, now: float) -> None:
        self.collect(now)
        while self.wire:
            self.deliver(now)


def kinds(messages: list[tuple[NodeId, NodeId, bytes]]) -> list[str]:
    return [type(decode(data, max_bytes=MAX)).__name__ for _, _, data in messages]


def started(net: Net, now: float = 0.0) -> None:
    """Every core's first tick (its sync timer starts); nothing is sent by it."""
    for core in net.cores.values():
        core.handle_timer(now=now)
    net.collect(now)


# -- push --------------------------------------------------------------------------------


def test_publish_pushes_fresh_changes_at_once_to_fanout_peers() -> None:
    net = Net(10, fanout=3)
    started(net)
    n0 = net.cores[NodeId("n0")]
    envelope = net.logs[NodeId("n0")].append_local(b"hello")
    n0.publish([envelope], now=0.01)
    sent = net.collect(0.01)
    assert kinds(sent) == ["Push"] * 3
    assert len({dst for _, dst, _ in sent}) == 3
    assert NodeId("n0") not in {dst for _, dst, _ in sent}
    assert all(decode(d, max_bytes=MAX) == Push((envelope,)) for _, _, d in sent)


def test_receiver_forwards_new_changes_once_to_fanout_peers_other_than_the_sender() -> None:
    net = Net(10, fanout=3)
    started(net)
    envelope = net.logs[NodeId("n0")].append_local(b"hello")
    first = encode(Push((envelope,)))
    n1 = net.cores[NodeId("n1")]
    n1.receive(first, NodeId("n0"), now=0.01)
    forwarded = net.collect(0.01)
    assert kinds(forwarded) == ["Push"] * 3
    assert NodeId("n0") not in {dst for _, dst, _ in forwarded}
    assert net.logs[NodeId("n1")].holds(envelope)
    assert net.events[NodeId("n1")] == [ChangesApplied(1, ("n0",), NodeId("n0"))]
    n1.receive(first, NodeId("n2"), now=0.02)  # the same push again: a duplicate
    assert net.collect(0.02) == []
    assert n1.stats.duplicates == 1


def test_hot_changes_are_re_pushed_for_a_bounded_number_of_rounds() -> None:
    n = 10
    net = Net(n, fanout=2, retransmit_mult=2, push_interval_s=0.2, sync_interval_s=3600.0)
    started(net)
    n0 = net.cores[NodeId("n0")]
    n0.publish([net.logs[NodeId("n0")].append_local(b"x")], now=0.0)
    net.collect(0.0)
    rounds_with_pushes = 0
    now = 0.0
    for _ in range(20):
        deadline = n0.get_timer()
        assert deadline is not None
        now = deadline
        if now > 100:
            break
        n0.handle_timer(now=now)
        sent = [m for m in net.collect(now) if m[0] == "n0"]
        if sent:
            assert kinds(sent) == ["Push"] * 2
            rounds_with_pushes += 1
    assert rounds_with_pushes == 2 * math.ceil(math.log10(n + 1))
    assert n0.hot == {}


def test_hot_bytes_are_bounded_and_the_oldest_cool_first() -> None:
    net = Net(5, max_hot_bytes=2000)
    started(net)
    log, n0 = net.logs[NodeId("n0")], net.cores[NodeId("n0")]
    envelopes = [log.append_local(bytes(500)) for _ in range(6)]
    n0.publish(envelopes, now=0.0)
    assert sum(len(e) for e in n0.hot) <= 2000
    assert envelopes[-1] in n0.hot and envelopes[0] not in n0.hot


# -- anti-entropy ------------------------------------------------------------------------


def test_equal_digests_end_the_sync_with_no_envelopes_sent() -> None:
    net = Net(2, sync_interval_s=1.0)
    a, b = NodeId("n0"), NodeId("n1")
    shared = net.logs[a].append_local(b"same")
    net.logs[b].apply([shared], [])
    started(net)
    deadline = net.cores[a].get_timer()
    assert deadline is not None
    net.cores[a].handle_timer(now=deadline)
    assert kinds(net.collect(deadline)) == ["Digest"]
    net.deliver(deadline)
    assert net.wire == []  # the receiver found equal digests: nothing more


def test_different_digests_repair_both_sides_in_one_exchange() -> None:
    net = Net(2)
    a, b = NodeId("n0"), NodeId("n1")
    mine = [net.logs[a].append_local(b"a%d" % i) for i in range(3)]
    theirs = [net.logs[b].append_local(b"b%d" % i) for i in range(2)]
    started(net)
    digest = Digest(vector_digest(net.logs[a].version_vector()), 1)
    net.cores[b].receive(encode(digest), a, now=1.0)
    net.flush(1.0)
    assert all(net.logs[b].holds(e) for e in mine)
    assert all(net.logs[a].holds(e) for e in theirs)
    assert net.logs[a].state_hash() == net.logs[b].state_hash()
    assert PeerBehind(b, 3) in net.events[a] and PeerBehind(a, 2) in net.events[b]


def test_a_gap_in_a_push_triggers_an_immediate_pull_from_its_sender() -> None:
    net = Net(3)
    a, b = NodeId("n0"), NodeId("n1")
    started(net)
    first = net.logs[a].append_local(b"1")
    second = net.logs[a].append_local(b"2")
    net.cores[b].receive(encode(Push((second,))), a, now=0.5)  # the push of `first` was lost
    sent = net.collect(0.5)
    assert [(dst, k) for (_, dst, _), k in zip(sent, kinds(sent), strict=True)] == [(a, "Pull")]
    assert net.events[b] == [GapDetected(a, ("n0",))]
    net.flush(0.5)
    assert net.logs[b].holds(first) and net.logs[b].holds(second)


def test_catch_up_is_chunked_with_at_most_window_chunks_in_flight() -> None:
    net = Net(2, max_chunk_bytes=4096, window=2)
    a, b = NodeId("n0"), NodeId("n1")
    for i in range(100):
        net.logs[a].append_local(bytes([i]) * 1000)
    started(net)
    net.cores[b].receive(encode(Digest(vector_digest(net.logs[a].version_vector()), 1)), a, now=1)
    net.collect(1.0)
    rounds = 0
    while net.wire:
        pulls = [m for m in net.wire if kinds([m]) == ["Pull"]]
        assert len(pulls) <= 1
        net.deliver(1.0)  # b's pull reaches a: a answers with chunks
        chunks = [m for m in net.wire if kinds([m]) == ["Chunk"]]
        if not chunks:
            continue
        rounds += 1
        assert len(chunks) <= 2  # the credit is the window
        assert all(len(d) <= 4096 + 64 for _, _, d in chunks)
        net.deliver(1.0)  # b applies them, then asks for the next ones
    assert len(net.logs[b]) == 100
    assert rounds >= 100 * 1000 // (2 * 4096)


def test_catch_up_sends_only_the_delta() -> None:
    net = Net(2, max_chunk_bytes=8192)
    a, b = NodeId("n0"), NodeId("n1")
    envelopes = [net.logs[a].append_local(bytes(200)) for _ in range(500)]
    net.logs[b].apply(envelopes[:450], [])
    started(net)
    net.cores[b].receive(encode(Digest(vector_digest(net.logs[a].version_vector()), 1)), a, now=1)
    net.flush(1.0)
    assert net.logs[a].state_hash() == net.logs[b].state_hash()
    raw = sum(len(e) for e in envelopes[450:])
    received = net.cores[b].stats.bytes_received
    assert raw <= received <= 1.3 * raw
    assert net.cores[b].stats.duplicates == 0


def test_out_of_order_chunks_are_applied_in_index_order() -> None:
    net = Net(2, max_chunk_bytes=2048, window=4)
    a, b = NodeId("n0"), NodeId("n1")
    for i in range(6):
        net.logs[a].append_local(bytes([i]) * 1000)
    started(net)
    net.cores[b].receive(encode(Digest(vector_digest(net.logs[a].version_vector()), 1)), a, now=1)
    net.collect(1.0)
    net.deliver(1.0)
    chunks = [m for m in net.wire if kinds([m]) == ["Chunk"]]
    assert len(chunks) == 3
    net.wire = list(reversed(chunks))
    net.deliver(1.0)
    assert len(net.logs[b]) == 6
    assert net.cores[b].stats.duplicates == 0


def n1_pulls_from_n0(net: Net) -> tuple[NodeId, NodeId, Dissemination]:
    """n0 and n2 hold one change n1 lacks; a digest from n0 has n1 pull it from n0."""
    a, b = NodeId("n0"), NodeId("n1")
    net.logs[a].append_local(b"x")
    net.logs[NodeId("n2")].apply(net.logs[a].missing({}, max_bytes=MAX)[0], [])
    started(net)
    core = net.cores[b]
    core.receive(encode(Digest(vector_digest(net.logs[a].version_vector()), 1)), a, now=1)
    return a, b, core


def test_an_unanswered_pull_is_retried_with_another_peer_after_the_timeout() -> None:
    net = Net(3, pull_timeout_s=2.0, sync_interval_s=3600.0)
    a, b, _ = n1_pulls_from_n0(net)
    net.collect(1.0)
    net.wire = []  # the pull is lost
    assert net.cores[b].pulling == a
    net.cores[b].handle_timer(now=3.0)
    retry = net.collect(3.0)
    assert [(dst, k) for (_, dst, _), k in zip(retry, kinds(retry), strict=True)] == [
        ("n2", "Pull")
    ]
    net.flush(3.0)
    assert len(net.logs[b]) == 1 and net.cores[b].stats.pulls_timed_out == 1


def test_timeouts_in_a_row_double_the_next_pulls_timeout_and_a_finished_pull_resets_it() -> None:
    net = Net(3, pull_timeout_s=2.0, sync_interval_s=3600.0)
    a, b, core = n1_pulls_from_n0(net)
    now, deadlines = 1.0, []
    for _ in range(5):  # every pull lost: 2, 4, 8, 16, 16 s
        net.collect(now)
        net.wire = []
        timer = core.get_timer()
        assert timer is not None and core.pulling is not None
        deadlines.append(timer - now)
        now = timer
        core.handle_timer(now=now)
    assert deadlines == [2.0, 4.0, 8.0, 16.0, 16.0]
    net.flush(now)  # the sixth pull is answered
    assert len(net.logs[b]) == 1 and core.pulling is None
    core.receive(encode(Digest(b"\0" * 16, 1)), a, now=now)
    assert core.pulling == a and core.get_timer() == now + 2.0


def test_chunks_for_an_abandoned_pull_are_dropped_and_counted_as_stale() -> None:
    net = Net(3, pull_timeout_s=2.0, sync_interval_s=3600.0)
    a, b, core = n1_pulls_from_n0(net)
    net.collect(1.0)
    late = [m for m in net.wire if m[1] == a]
    net.wire = []
    core.handle_timer(now=3.0)  # gives up on n0, asks n2
    net.collect(3.0)
    retry = net.wire
    net.wire = late  # n0 was only slow: its answer comes after all
    net.deliver(3.5)
    net.collect(3.5)
    stale = [data for src, dst, data in net.wire if dst == b]
    assert kinds(net.wire) == ["Chunk"]
    net.deliver(3.5)
    assert len(net.logs[b]) == 0 and core.stats.bytes_stale == len(stale[0])
    net.wire = retry
    net.flush(4.0)
    assert len(net.logs[b]) == 1


def test_a_pull_from_a_peer_that_leaves_the_live_set_is_retried_at_once() -> None:
    net = Net(3, pull_timeout_s=30.0, sync_interval_s=3600.0)
    _, b, core = n1_pulls_from_n0(net)
    c = NodeId("n2")
    net.collect(1.0)
    net.wire = []  # n0 died with the pull
    core.set_peers([b, c])
    assert core.pulling is None and core.get_timer() == 0.0
    core.handle_timer(now=1.5)
    assert core.pulling == c
    net.flush(1.5)
    assert len(net.logs[b]) == 1 and core.stats.pulls_timed_out == 0


# -- refusals and bad bytes --------------------------------------------------------------


def test_a_refused_envelope_is_not_stored_not_forwarded_and_is_reported() -> None:
    net = Net(5)
    a, b = NodeId("n0"), NodeId("n1")
    started(net)
    good = net.logs[a].append_local(b"payload")
    forged = good[:-12] + b"X" + good[-11:]  # the payload changed, the checksum did not
    net.cores[b].receive(encode(Push((forged,))), a, now=0.1)
    assert net.collect(0.1) == []
    assert len(net.logs[b]) == 0
    [event] = net.events[b]
    assert isinstance(event, ChangesRefused) and event.sender == a and "checksum" in event.reason


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\x00garbage",
        cbor2.dumps([2, 1, [b"x"], []]),  # another version
        cbor2.dumps([1, 9]),  # unknown kind
        cbor2.dumps([1, 1, [], []]),  # a push without envelopes
        cbor2.dumps([1, 2, b"short", 1]),
        cbor2.dumps([1, 3, 1, 0, 0, []]),  # no credit
        cbor2.dumps([1, 3, 1, 1, 0, [["b", 1], ["a", 1]]]),  # vector not sorted
        cbor2.dumps([1, 4, 1, 2, 2, True, [], []]),  # index beyond total
        encode(Push((b"x",))) + b"\x00",  # trailing bytes
    ],
)
def test_bad_bytes_become_message_rejected_and_change_nothing(data: bytes) -> None:
    net = Net(2)
    a, b = NodeId("n0"), NodeId("n1")
    net.cores[b].receive(data, a, now=0.0)
    assert net.collect(0.0) == []
    [event] = net.events[b]
    assert isinstance(event, MessageRejected) and event.sender == a
    assert len(net.logs[b]) == 0


def test_an_oversized_message_is_rejected_before_it_is_parsed() -> None:
    net = Net(2, max_frame_bytes=8192, max_chunk_bytes=4096, max_push_bytes=4096)
    big = encode(Push((bytes(9000),)))
    net.cores[NodeId("n1")].receive(big, NodeId("n0"), now=0.0)
    assert net.collect(0.0) == []
    [event] = net.events[NodeId("n1")]
    assert isinstance(event, MessageRejected) and "exceeds the limit of 8192" in event.reason


def test_decode_never_raises_on_random_or_mutated_bytes() -> None:
    rng = random.Random(5)
    samples = [
        encode(Push((b"abc", b"de"), (b"k",))),
        encode(Pull(3, 2, 5, (("a", 1), ("b", 9)))),
        encode(Chunk(1, 0, 1, True, (b"x",), ())),
    ]
    for _ in range(3000):
        base = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        result = decode(bytes(base), max_bytes=MAX)
        assert isinstance(result, Rejected | Push | Pull | Chunk | Digest)
    for sample in samples:
        assert encode(decode(sample, max_bytes=MAX)) == sample  # type: ignore[arg-type]


def test_every_message_sent_stays_under_the_frame_limit() -> None:
    net = Net(2, max_frame_bytes=16384, max_chunk_bytes=8192, max_push_bytes=8192)
    a, b = NodeId("n0"), NodeId("n1")
    envelopes = [net.logs[a].append_local(bytes(2900)) for _ in range(2)]
    started(net)
    net.cores[a].publish(envelopes, now=0.0)
    sent = net.collect(0.0)
    assert len(sent) == 1 and all(len(d) <= 8192 for _, _, d in sent)
    net.flush(0.0)
    envelopes += [net.logs[a].append_local(bytes(3000)) for _ in range(20)]
    net.cores[a].receive(encode(Pull(1, 4, 0, ())), b, now=0.0)
    answer = net.collect(0.0)
    assert answer and all(len(d) <= 16384 for _, _, d in answer)


def test_a_burst_larger_than_one_push_is_announced_and_pulled_once() -> None:
    net = Net(4, max_frame_bytes=16384, max_chunk_bytes=8192, max_push_bytes=8192)
    a = NodeId("n0")
    started(net)
    envelopes = [net.logs[a].append_local(bytes(3000)) for _ in range(20)]
    net.cores[a].publish(envelopes, now=0.0)
    sent = net.collect(0.0)
    # Only digests go out at once: no envelope is copied to peers that would pull it anyway.
    assert sent and all(isinstance(decode(d, max_bytes=16384), Digest) for _, _, d in sent)
    net.flush(0.0)
    for node, log in net.logs.items():
        assert log.version_vector() == net.logs[a].version_vector(), node
    received = {n: core.stats.envelopes_received for n, core in net.cores.items()}
    assert all(count == 20 for node, count in received.items() if node != a), received


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fanout", 0),
        ("push_interval_s", 0.0),
        ("window", 65),
        ("max_chunk_bytes", 1 << 20),  # more than half the frame
        ("max_push_bytes", 2 << 20),
        ("retransmit_mult", 1.5),
        ("sync_interval_s", float("nan")),
    ],
)
def test_config_refuses_out_of_range_fields_naming_them(field: str, value: object) -> None:
    with pytest.raises(DisseminationError, match=f"DisseminationConfig.{field}"):
        DisseminationConfig(**{field: value})  # type: ignore[arg-type]


def test_a_pull_with_need_keys_makes_the_sender_send_its_keys_again() -> None:
    class KeyedLog(MemoryLog):
        def keys_for(self, envelopes: Any) -> list[bytes]:
            return [b"key-of-n0"]

    log = KeyedLog("n0")
    core = Dissemination(
        me=NodeId("n0"), log=log, config=DisseminationConfig(), rng=random.Random(1)
    )
    core.set_peers([NodeId("n1")])
    core.publish([log.append_local(b"1")], now=0.0)
    core.publish([log.append_local(b"2")], now=0.0)
    pushes = [decode(d, max_bytes=MAX) for _, d in core.messages_to_send(now=0.0)]
    assert [p.keys for p in pushes if isinstance(p, Push)] == [(b"key-of-n0",), ()]
    core.receive(encode(Pull(1, 1, 2, ())), NodeId("n1"), now=0.1)  # NEED_KEYS
    [(_, data)] = core.messages_to_send(now=0.1)
    chunk = decode(data, max_bytes=MAX)
    assert isinstance(chunk, Chunk) and chunk.keys == (b"key-of-n0",) and chunk.complete


def test_a_key_refused_even_after_asking_for_keys_again_does_not_make_pulls_loop() -> None:
    class KeylessLog(MemoryLog):
        def apply(self, envelopes: Any, keys: Any) -> ApplyResult:
            return ApplyResult(refused=(Refusal("n0", "unknown key", len(envelopes), True),))

    net = Net(2)
    a, b = NodeId("n0"), NodeId("n1")
    net.logs[a].append_local(b"x")
    net.cores[b] = Dissemination(
        me=b, log=KeylessLog("n1"), config=net.config, rng=random.Random(2)
    )
    net.cores[b].set_peers([a])
    net.cores[b].receive(encode(Push(tuple(net.logs[a].missing({}, max_bytes=MAX)[0]))), a, now=0)
    net.flush(0.0)
    refusals = [e for e in net.events[b] if isinstance(e, ChangesRefused)]
    assert len(refusals) == 2  # the push, then the answer to the one pull asking for keys
    assert net.cores[b].pulling is None and net.cores[b].stats.pulls_started == 1


# -- StoreLog over real stores -----------------------------------------------------------

ROOT = Ed25519PrivateKey.generate()
ROOT_PUBLIC = public_bytes(ROOT)
NOW_S = NOW_MS // 1000


def credential(subject: str, key: Ed25519PrivateKey) -> bytes:
    unsigned = Credential(
        cluster_id(ROOT_PUBLIC), subject, "node", public_bytes(key), NOW_S - 10, NOW_S + 3600
    )
    return replace(unsigned, signature=ROOT.sign(unsigned.body())).encode()


class StoreNode:
    def __init__(self, tmp: Path, name: str) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.store = open_store(tmp / name, name, self.key, node_managers=(f"node:{name}",))
        self.book = CredentialBook(
            tmp / f"{name}.creds", store=self.store, root_public=ROOT_PUBLIC, clock=lambda: NOW_S
        )
        assert self.book.add(credential(name, self.key)) is None
        self.log = StoreLog(self.store, self.book)
        self.core = Dissemination(
            me=NodeId(name), log=self.log, config=DisseminationConfig(), rng=random.Random(name)
        )

    def write(self, value: int) -> bytes:
        name = self.store.node_id
        ops = [Op("set", ("status", "load"), value)]
        if self.store.get("Node", name) is None:
            ops.insert(0, Op("new", ()))
        self.store.commit("Node", name, ops, manager=f"node:{name}")
        seq = self.store.version_vector()[name]
        return self.store.changes(name, seq)[0].envelope


def pump(nodes: dict[str, StoreNode], now: float) -> None:
    moving = True
    while moving:
        moving = False
        for name, node in nodes.items():
            for to, data in node.core.messages_to_send(now=now):
                nodes[to].core.receive(data, NodeId(name), now=now)
                moving = True


def drain(node: StoreNode) -> list[DisseminationEvent]:
    out = []
    while (event := node.core.next_event()) is not None:
        out.append(event)
    return out


def test_three_real_stores_catch_up_through_the_core_with_keys_sent_once(tmp_path: Path) -> None:
    nodes = {name: StoreNode(tmp_path, name) for name in ("a", "b", "c")}
    for node in nodes.values():
        node.core.set_peers([NodeId(n) for n in nodes])
        node.core.handle_timer(now=0.0)
    written = {name: [node.write(i) for i in range(1, 4)] for name, node in nodes.items()}
    nodes["a"].core.publish(written["a"], now=0.1)
    pump(nodes, 0.1)
    for name in ("b", "c"):
        assert nodes[name].store.version_vector()["a"] == 3
        assert nodes[name].book.encoded("a") == credential_of(nodes["a"])
    # b's and c's writes spread by anti-entropy alone.
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        for node in nodes.values():
            node.core.handle_timer(now=now + 5)
        pump(nodes, now + 5)
    vectors = [node.store.version_vector() for node in nodes.values()]
    assert vectors[0] == vectors[1] == vectors[2] == {"a": 3, "b": 3, "c": 3}
    for node in nodes.values():
        assert node.store.get("Node", "a") == nodes["a"].store.get("Node", "a")
        assert not [e for e in drain(node) if isinstance(e, ChangesRefused | MessageRejected)]
    # The persisted book holds every trusted credential.
    reopened = cbor2.loads((tmp_path / "c.creds").read_bytes())
    assert len(reopened) == 3


def credential_of(node: StoreNode) -> bytes | None:
    return node.book.encoded(node.store.node_id)


def test_store_log_refuses_a_bad_signature_stores_nothing_and_applies_other_origins(
    tmp_path: Path,
) -> None:
    nodes = {name: StoreNode(tmp_path, name) for name in ("a", "b", "c")}
    good_b = nodes["b"].write(1)
    good_a = nodes["a"].write(1)
    bad_a = bytearray(good_a)
    bad_a[-5] ^= 0xFF  # inside the origin's signature
    keys = [credential_of(nodes["a"]), credential_of(nodes["b"])]
    c = nodes["c"]
    c.core.set_peers([NodeId("a"), NodeId("b")])
    c.core.receive(
        encode(Push((bytes(bad_a), good_b), tuple(k for k in keys if k))), NodeId("a"), now=0
    )
    assert c.store.version_vector().get("a") is None
    assert c.store.version_vector()["b"] == 1
    events = drain(c)
    refused = [e for e in events if isinstance(e, ChangesRefused)]
    assert len(refused) == 1 and refused[0].origin == "a" and refused[0].count == 1
    assert "nothing was written" in refused[0].reason
    assert ChangesApplied(1, ("b",), NodeId("a")) in events


def test_store_log_reports_a_gap_and_an_unknown_key_without_raising(tmp_path: Path) -> None:
    a, c = StoreNode(tmp_path, "a"), StoreNode(tmp_path, "c")
    first, second = a.write(1), a.write(2)
    result = c.log.apply([first], [])
    assert result.applied == 0 and result.refused[0].unknown_key  # no key for a yet
    key = credential_of(a)
    assert key is not None
    result = c.log.apply([second], [key])
    assert result.gaps == ("a",) and result.applied == 0
    result = c.log.apply([second, first], [])
    assert result.new == (0, 1) and result.origins == ("a",)
    assert c.log.apply([first], []).duplicates == 1


def test_credential_book_refuses_a_credential_not_signed_by_the_trust_root(tmp_path: Path) -> None:
    node = StoreNode(tmp_path, "a")
    other_root = Ed25519PrivateKey.generate()
    unsigned = Credential(
        cluster_id(ROOT_PUBLIC),
        "x",
        "node",
        public_bytes(Ed25519PrivateKey.generate()),
        0,
        NOW_S + 1,
    )
    forged = replace(unsigned, signature=other_root.sign(unsigned.body())).encode()
    reason = node.book.add(forged)
    assert reason is not None and "does not verify" in reason
    assert node.store.registry.get("x") is None and node.book.subjects() == ["a"]
    assert node.book.add(b"junk") is not None
    again = CredentialBook(
        tmp_path / "a.creds", store=node.store, root_public=ROOT_PUBLIC, clock=lambda: NOW_S
    )
    assert again.subjects() == ["a"]
