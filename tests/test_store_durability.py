"""Durability of the store: acknowledged changes survive SIGKILL, a full map writes nothing.

The SIGKILL test runs a real child process committing as fast as it can and printing each change
id once `commit` has returned; the parent kills it after a random number of those
acknowledgements, several times over the same store, and then checks that every acknowledged
change is in the log and that the store still agrees with a fold of its own log.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from storekit import RULES

from store import (
    Change,
    KeyEntry,
    Op,
    Store,
    StoreFullError,
    fold,
)
from store.db import DEFAULT_MAP_SIZE

REPO = FsPath(__file__).resolve().parent.parent
NODE = "n1"
MANAGERS = ["node:n1", "placement", "user"]
IMAGE = ("spec", "containers", "web", "image")
# LMDB opens this store in 44 KiB but needs 64 KiB to hold its first change; 128 KiB holds a
# few dozen small changes, so the map fills within a fraction of a second.
TINY_MAP = 128 << 10
LARGER_MAP = 16 << 20

# The child: commits mixed writes (creations, edits by three managers, deletions, now and then
# a value big enough for LMDB overflow pages) in a loop and acknowledges each one on stdout
# once `commit` has returned.
CHILD = """
import json, random, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from store import Op, OwnerRule, Store

path, key_file, seed, rules_json = sys.argv[1:5]
rules = {
    kind: [OwnerRule(tuple(prefix), owner) for prefix, owner in kind_rules]
    for kind, kind_rules in json.loads(rules_json).items()
}
with open(key_file, "rb") as f:
    key = Ed25519PrivateKey.from_private_bytes(f.read())
rng = random.Random(int(seed))
store = Store(path, node_id="n1", signing_key=key, rules=rules,
              node_managers=["node:n1", "placement", "user"])
names = [f"web-{i}" for i in range(8)]
out = sys.stdout
i = 0
while True:
    i += 1
    name = rng.choice(names)
    state = store.get_state("Pod", name)
    r = rng.random()
    if state is None or not state.exists:
        ops = [Op("new", ()), Op("set", ("spec", "containers", "web", "image"), f"busybox:{i}"),
               Op("set", ("metadata", "labels", "app"), name)]
        manager = "user"
    elif r < 0.08:
        ops, manager = [Op("del", ())], "user"
    elif ("assignment", "node") not in state.fields or r < 0.15:
        ops, manager = [Op("set", ("assignment", "node"), "n1")], "placement"
    elif r < 0.5:
        ops = [Op("set", ("status", "phase"), rng.choice(["pending", "running"])),
               Op("set", ("status", "restarts"), i)]
        manager = "node:n1"
    elif r < 0.6:
        ops = [Op("set", ("spec", "containers", "web", "env", "BLOB"),
                  "x" * rng.randrange(2000, 9000))]
        manager = "user"
    else:
        ops, manager = [Op("set", ("spec", "containers", "web", "image"), f"busybox:{i}")], "user"
    committed = store.commit("Pod", name, ops, manager=manager)
    out.write(f"{committed.change} Pod/{name}\\n")
    out.flush()
"""


def open_store(path: FsPath, key: Ed25519PrivateKey, *, map_size: int = DEFAULT_MAP_SIZE) -> Store:
    return Store(
        path,
        node_id=NODE,
        signing_key=key,
        rules=RULES,
        node_managers=MANAGERS,
        map_size=map_size,
    )


def rules_json() -> str:
    return json.dumps(
        {kind: [[list(r.prefix), r.owner] for r in rules] for kind, rules in RULES.items()}
    )


def by_object(changes: list[Change]) -> dict[tuple[str, str], list[Change]]:
    out: dict[tuple[str, str], list[Change]] = {}
    for c in changes:
        out.setdefault((c.kind, c.name), []).append(c)
    return out


def assert_consistent(store: Store, origins: list[str]) -> int:
    """The store agrees with a fold of its own log; returns how many changes it holds."""
    log = [c for o in origins for c in store.changes(o)]
    vv = store.version_vector()
    for o in origins:
        held = [c.seq for c in log if c.origin == o]
        assert held == list(range(1, vv.get(o, 0) + 1)), f"the log of {o} is not 1..{vv.get(o)}"
    existing: set[str] = set()
    for (kind, name), changes in by_object(log).items():
        state, entries = fold(kind, name, changes, RULES[kind])
        stored = store.get_state(kind, name)
        assert stored is not None, f"{kind}/{name} has changes but no state"
        assert stored.encode() == state.encode(), f"{kind}/{name} differs from its fold"
        history = store.history(kind, name)
        assert len(history) == len(changes)
        assert [r.change for r in history] == [e.change for e in entries]
        if state.exists:
            existing.add(name)
    assert {o["metadata"]["name"] for o in store.list_objects("Pod")} == existing
    return len(log)


def read_acks(proc: subprocess.Popen[str], count: int) -> list[str]:
    """Read `count` acknowledgements, or fewer if the child dies (its stderr is reported)."""
    assert proc.stdout is not None
    acks: list[str] = []
    while len(acks) < count:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate()
            pytest.fail(f"the writer died after {len(acks)} acknowledgements:\n{err}")
        acks.append(line)
    return acks


def parse_ack(line: str) -> tuple[int, str]:
    change, target = line.split()
    origin, seq = change.split(":")
    assert origin == NODE
    return int(seq), target


@pytest.fixture
def watchdog() -> Iterator[list[subprocess.Popen[str]]]:
    """Children registered here are killed if the test hangs on them for over 30 s."""
    children: list[subprocess.Popen[str]] = []

    def kill_all() -> None:
        for p in children:
            p.kill()

    timer = threading.Timer(30, kill_all)
    timer.start()
    yield children
    timer.cancel()
    kill_all()
    for p in children:
        p.wait()


def test_sigkill_during_write_loop_loses_no_acknowledged_change(
    tmp_path: FsPath, watchdog: list[subprocess.Popen[str]]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "data"
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "key"
    key_file.write_bytes(key.private_bytes_raw())
    # In a directory of its own: the script's directory comes first on the child's sys.path,
    # where a directory named `store` would shadow the package.
    script = tmp_path / "writer" / "writer.py"
    script.parent.mkdir()
    script.write_text(CHILD)
    acked: dict[int, str] = {}
    for round_ in range(5):
        kill_after = rng.randrange(1, 400)
        child_seed = str(rng.randrange(2**32))
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(key_file), child_seed, rules_json()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=script.parent,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        watchdog.append(proc)
        lines = read_acks(proc, kill_after)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        # Whatever the child printed before it died was acknowledged too.
        lines += [line for line in out.splitlines(keepends=True) if line.endswith("\n")]
        for line in lines:
            seq, target = parse_ack(line)
            acked[seq] = target
        with open_store(path, key) as store:
            context = f"seed {seed}, round {round_}, killed after {len(lines)} acks"
            log = {c.seq: c for c in store.changes(NODE)}
            for seq, target in acked.items():
                assert seq in log, f"acknowledged change {NODE}:{seq} lost ({context})"
                assert log[seq].target == target, context
            assert store.version_vector()[NODE] >= max(acked), context
            assert assert_consistent(store, [NODE]) == len(log), context


# --- a full map ------------------------------------------------------------------------------


def snapshot(store: Store, names: list[str]) -> dict[str, Any]:
    """Everything a failed write must leave as it was."""
    out: dict[str, Any] = {"vv": store.version_vector()}
    for name in names:
        state = store.get_state("Pod", name)
        out[name] = state.encode() if state is not None else None
        out[f"{name} history"] = (
            [r.to_json() for r in store.history("Pod", name)] if state is not None else None
        )
    return out


def assert_full_message(err: StoreFullError, path: FsPath) -> None:
    message = str(err)
    assert "is full" in message
    assert str(path) in message
    assert "nothing was written" in message
    assert "larger map size" in message


def test_full_map_refuses_the_commit_whole_and_a_larger_map_takes_commits_again(
    tmp_path: FsPath,
) -> None:
    path = tmp_path / "store"
    key = Ed25519PrivateKey.generate()
    store = open_store(path, key, map_size=TINY_MAP)
    store.commit("Pod", "web", [Op("new", ()), Op("set", IMAGE, "busybox")], manager="user")
    before: dict[str, Any] = {}
    with pytest.raises(StoreFullError) as raised:
        for i in range(10_000):
            before = snapshot(store, ["web"])
            env_var = ("spec", "containers", "web", "env", f"VAR_{i}")
            store.commit("Pod", "web", [Op("set", env_var, "v" * 100)], manager="user")
    assert_full_message(raised.value, path)
    assert snapshot(store, ["web"]) == before
    held = assert_consistent(store, [NODE])
    store.close()

    with open_store(path, key, map_size=LARGER_MAP) as store:
        assert snapshot(store, ["web"]) == before
        committed = store.commit("Pod", "web", [Op("set", IMAGE, "busybox:2")], manager="user")
        assert committed.change.seq == held + 1
        assert store.version_vector() == {NODE: held + 1}
        assert len(store.history("Pod", "web")) == len(before["web history"]) + 1
        assert assert_consistent(store, [NODE]) == held + 1


def test_full_map_refuses_a_remote_batch_whole_and_a_larger_map_takes_it(
    tmp_path: FsPath,
) -> None:
    peer_key = Ed25519PrivateKey.generate()
    names = [f"web-{i}" for i in range(10)]
    with Store(
        tmp_path / "peer",
        node_id="n2",
        signing_key=peer_key,
        rules=RULES,
        node_managers=["node:n2", "placement", "user"],
    ) as peer:
        for name in names:
            peer.commit("Pod", name, [Op("new", ()), Op("set", IMAGE, "busybox")], manager="user")
        for i in range(400):
            env_var = ("spec", "containers", "web", "env", f"VAR_{i}")
            peer.commit("Pod", names[i % 10], [Op("set", env_var, "v" * 300)], manager="user")
        missing = peer.missing({}, max_bytes=1 << 30)
        assert missing.complete
        batch = missing.changes
        peer_states = {n: peer.get_state("Pod", n) for n in names}
    assert sum(map(len, batch)) > TINY_MAP

    path = tmp_path / "store"
    key = Ed25519PrivateKey.generate()
    store = open_store(path, key, map_size=TINY_MAP)
    public = peer_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    store.register_key(KeyEntry("n2", public, ("node:n2", "placement", "user")))
    store.commit("Pod", "local", [Op("new", ()), Op("set", IMAGE, "busybox")], manager="user")
    before = snapshot(store, ["local", *names])
    with pytest.raises(StoreFullError) as raised:
        store.apply_remote(batch)
    assert_full_message(raised.value, path)
    assert snapshot(store, ["local", *names]) == before
    assert store.changes("n2") == []
    assert [o["metadata"]["name"] for o in store.list_objects("Pod")] == ["local"]
    store.close()

    with open_store(path, key, map_size=LARGER_MAP) as store:
        assert snapshot(store, ["local", *names]) == before
        applied = store.apply_remote(batch)
        assert len(applied.applied) == len(batch)
        assert store.version_vector() == {NODE: 1, "n2": len(batch)}
        for name in names:
            state = store.get_state("Pod", name)
            theirs = peer_states[name]
            assert state is not None and theirs is not None
            assert state.encode() == theirs.encode()
        assert assert_consistent(store, [NODE, "n2"]) == len(batch) + 1


def test_a_key_whose_registration_did_not_fit_is_not_trusted(tmp_path: FsPath) -> None:
    store = open_store(tmp_path / "store", Ed25519PrivateKey.generate(), map_size=TINY_MAP)
    with pytest.raises(StoreFullError):
        for i in range(100_000):
            stranger = Ed25519PrivateKey.generate()
            public = stranger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            store.register_key(KeyEntry(f"k{i}-" + "x" * 200, public, ("user",) * 50))
    assert store.registry.get(f"k{i}-" + "x" * 200) is None
    store.close()


def test_a_map_too_small_to_open_is_a_clear_error(tmp_path: FsPath) -> None:
    with pytest.raises(StoreFullError) as raised:
        open_store(tmp_path / "store", Ed25519PrivateKey.generate(), map_size=16 << 10)
    assert "16 KiB" in str(raised.value)
