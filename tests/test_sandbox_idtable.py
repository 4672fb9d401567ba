"""Pods' id ranges are persisted and never collide, across restarts and concurrent processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_in_processes

from sandbox._ids import FIRST_BASE, RANGE_SIZE
from sandbox.idtable import IdTable, IdTableCorruptError


def test_a_range_survives_a_restart_and_a_freed_one_is_reused_lowest_first(
    tmp_path: Path,
) -> None:
    table = IdTable(tmp_path / "ids.json")
    a, b, c = table.allocate("a"), table.allocate("b"), table.allocate("c")
    assert [r.base for r in (a, b, c)] == [FIRST_BASE + i * RANGE_SIZE for i in range(3)]
    reopened = IdTable(tmp_path / "ids.json")
    assert reopened.allocate("b") == b  # a pod keeps its range
    reopened.release("a")
    assert reopened.allocate("d") == a
    assert reopened.ranges() == {"b": b, "c": c, "d": a}


def _allocate_many(path: str, prefix: str) -> None:
    table = IdTable(Path(path))
    for i in range(25):
        table.allocate(f"{prefix}-{i}")


def test_processes_allocating_at_once_never_get_the_same_range(tmp_path: Path) -> None:
    path = str(tmp_path / "ids.json")
    run_in_processes(_allocate_many, [(path, p) for p in ("x", "y", "z")])
    bases = [r.base for r in IdTable(Path(path)).ranges().values()]
    assert len(bases) == 75 and len(set(bases)) == 75


def test_an_unreadable_table_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_text('{"a": "not a number"}')
    with pytest.raises(IdTableCorruptError, match=r"ids.json is unreadable .* left as it is"):
        IdTable(path).allocate("b")
    assert json.loads(path.read_text()) == {"a": "not a number"}
