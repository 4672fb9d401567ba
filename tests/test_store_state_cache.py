"""The cache of folded states: it only ever holds what committed, and another writer of the
same file makes it start over."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from storekit import RULES, Origin, open_store, trust

from store import ObjectState, Op, OwnershipError, Store, fold
from store._fold import apply_change

IMAGE = ("spec", "containers", "web", "image")
HERE = Path(__file__).resolve().parent


def reference_encoding(state: ObjectState) -> bytes:
    """The canonical record packed in one go, as `ObjectState.encode` documents it."""
    rows = [
        ["\0".join(p), w.origin, w.seq, *([state.fields[p]] if p in state.fields else [])]
        for p, w in sorted(state.writers.items())
    ]
    packed: bytes = msgpack.packb(
        [
            state.kind,
            state.name,
            state.exists,
            state.revision,
            list(state.last_key) if state.last_key else None,
            rows,
            [["\0".join(p), m] for p, m in sorted(state.transfers.items())],
            [["\0".join(p), list(m)] for p, m in sorted(state.shares.items())],
        ]
    )
    return packed


def test_incremental_encoding_equals_the_record_packed_in_one_go() -> None:
    a = Origin("a")
    changes = [a.change([Op("new", ()), Op("set", IMAGE, "v1"), Op("set", ("spec", "n"), 1)])]
    state = ObjectState("Pod", "web")
    for i in range(2, 40):
        if i % 7 == 0:
            op = Op("del", ("spec", "n"))
        elif i % 5 == 0:
            op = Op("set", ("metadata", "labels", f"l{i % 3}"), str(i))
        else:
            op = Op("set", IMAGE, f"v{i}")
        changes.append(a.change([op]))
    rules = RULES["Pod"]
    for c in changes:  # encode after every change: rows are kept, and dropped as fields change
        apply_change(state, c, rules)
        assert state.encode() == reference_encoding(state)
        assert ObjectState.decode(state.encode()).encode() == state.encode()
    folded, _ = fold("Pod", "web", changes, rules)
    assert folded.encode() == state.encode()


def test_a_refused_commit_leaves_no_trace_in_the_next_one(tmp_path: Path) -> None:
    with open_store(tmp_path / "s", "n1") as store:
        store.commit("Pod", "web", [Op("new", ()), Op("set", IMAGE, "v1")], manager="user")
        try:  # the fold takes the cached state and refuses after it counted a revision
            store.commit("Pod", "web", [Op("set", ("status", "phase"), "up")], manager="user")
        except OwnershipError:
            pass
        else:
            raise AssertionError("status written by user was not refused")
        done = store.commit("Pod", "web", [Op("set", IMAGE, "v2")], manager="user")
        assert done is not None and done.revision == 2
        state = store.get_state("Pod", "web")
        assert state is not None
        assert state.revision == 2 and state.fields[IMAGE] == "v2"
        assert ("status", "phase") not in state.writers


def test_a_remote_batch_that_fails_after_folding_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Origin("a")
    create = a.change([Op("new", ()), Op("set", IMAGE, "v1")])
    edit = a.change([Op("set", IMAGE, "v2")])
    with open_store(tmp_path / "s", "rx") as store:
        trust(store, "a", a.key)
        store.apply_remote([create.envelope])

        def fail(*_: object) -> None:
            raise OSError("disk gone")

        with monkeypatch.context() as m:  # fails after the fold changed the cached state
            m.setattr(Store, "_save_clock", fail)
            with pytest.raises(OSError, match="disk gone"):
                store.apply_remote([edit.envelope])
        assert store.version_vector().get("a") == 1  # the failed batch is not held
        store.apply_remote([edit.envelope])
        state = store.get_state("Pod", "web")
        expected, _ = fold("Pod", "web", [create, edit], RULES["Pod"])
        assert state is not None and state.encode() == expected.encode()


WRITER = textwrap.dedent(
    """
    import sys
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from store import Op
    from storekit import open_store
    key = load_pem_private_key(sys.stdin.buffer.read(), None)
    with open_store(sys.argv[1], "n1", key) as store:
        store.commit("Pod", "web", [Op("set", ("spec", "replicas"), 3)], manager="user")
    """
)


def test_a_write_by_another_process_is_folded_in_not_overwritten(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path = tmp_path / "s"
    with open_store(path, "n1", key) as store:
        store.commit("Pod", "web", [Op("new", ()), Op("set", IMAGE, "v1")], manager="user")
        subprocess.run(
            [sys.executable, "-c", WRITER, str(path)],
            input=pem,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])},
        )
        store.commit("Pod", "web", [Op("set", IMAGE, "v2")], manager="user")
        state = store.get_state("Pod", "web")
        assert state is not None
        assert state.revision == 3
        assert state.fields[("spec", "replicas")] == 3 and state.fields[IMAGE] == "v2"


def test_threads_writing_at_once_keep_the_cache_true_to_the_file(tmp_path: Path) -> None:
    """The daemon's API and its reconciler write from different threads; a refused write in one
    must never leave its half-folded state in the cache the other then commits on."""
    path = tmp_path / "s"
    with open_store(path, "n1") as store:
        for name in ("a", "b"):
            store.commit("Pod", name, [Op("new", ()), Op("set", IMAGE, "v0")], manager="user")

        def edits(name: str) -> None:
            for i in range(150):
                store.commit("Pod", name, [Op("set", IMAGE, f"v{i}")], manager="user")
                with contextlib.suppress(OwnershipError):  # refused after counting a revision
                    store.commit("Pod", name, [Op("set", ("status", "x"), i)], manager="user")

        threads = [threading.Thread(target=edits, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cached = {n: store.get_state("Pod", n) for n in ("a", "b")}
        after = store.commit("Pod", "a", [Op("set", IMAGE, "last")], manager="user")
        assert after.revision == 152
    with open_store(path, "n1") as reopened:  # what the file says, decoded afresh
        for name, state in cached.items():
            fresh = reopened.get_state("Pod", name)
            assert state is not None and fresh is not None
            assert state.revision == 151 and ("status", "x") not in fresh.writers
        assert reopened.get_state("Pod", "a").revision == 152  # type: ignore[union-attr]
