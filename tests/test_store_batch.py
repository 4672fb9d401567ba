"""A batch of writes is one transaction: all kept or none, watchers told after it commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from storekit import open_store, snapshot

from store import ChangeApplied, Op, OwnershipError

POD = {"spec": {"containers": {"web": {"image": "busybox"}}}}


def test_a_batch_keeps_every_write_in_it(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", "n1")
    with store.batch():
        for i in range(50):
            store.put_document("Pod", f"p{i}", POD)
        store.put_document("Pod", "p0", {"spec": {"containers": {"web": {"image": "b2"}}}})
    assert len(store.list_objects("Pod")) == 50
    assert store.version_vector() == {"n1": 51}
    assert [r.revision for r in store.history("Pod", "p0")] == [1, 2]


def test_a_failure_inside_a_batch_writes_nothing_of_it(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", "n1")
    store.put_document("Pod", "kept", POD)
    before = snapshot(store)
    with pytest.raises(OwnershipError), store.batch():
        store.put_document("Pod", "p1", POD)
        store.commit("Pod", "p1", [Op("set", ("spec", "x"), 1)], manager="placement")
    assert snapshot(store) == before
    assert store.get("Pod", "p1") is None
    # The store is usable afterwards, and its cache did not keep the dropped state.
    store.put_document("Pod", "p1", POD)
    assert store.get("Pod", "p1") is not None
    assert store.version_vector() == {"n1": 2}


def test_watchers_hear_of_a_batch_only_once_it_has_committed(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", "n1")

    async def run() -> tuple[int, list[ChangeApplied]]:
        watch = store.watch()
        with store.batch():
            for i in range(3):
                store.put_document("Pod", f"p{i}", POD)
            await asyncio.sleep(0.01)
            during = watch._queue.qsize()
        heard = [await asyncio.wait_for(watch.__anext__(), 1) for _ in range(3)]
        return during, [e for e in heard if isinstance(e, ChangeApplied)]

    during, heard = asyncio.run(run())
    assert during == 0
    assert [e.name for e in heard] == ["p0", "p1", "p2"]
