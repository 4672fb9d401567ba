"""History as users read it: revisions with author, time, fields, conflicts and refusals.

Pure: built from the stored `HistoryEntry` list of one object (already in fold order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from store._change import ChangeId, Op
from store._fold import HistoryEntry, ObjectState
from store._ownership import KindRules, Owners, Refusal
from store._path import Leaf, Path, format_path, is_under, same_leaf


@dataclass(frozen=True, slots=True)
class Revision:
    revision: int
    change: ChangeId
    time_ms: int
    hlc: str
    author: str
    manager: str
    fields: tuple[str, ...]
    created: bool
    deleted: bool
    conflicts: tuple[str, ...] = ()
    """Fields this change overwrote without having seen the value (it won a concurrent edit)."""
    overwritten: tuple[str, ...] = ()
    """Fields of this change that a concurrent change overwrote (it lost a concurrent edit)."""
    refused: tuple[str, ...] = ()
    """Fields this change was not allowed to write; a refused change has no effect."""

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "change": str(self.change),
            "time": self.time_ms,
            "hlc": self.hlc,
            "author": self.author,
            "manager": self.manager,
            "fields": list(self.fields),
            "created": self.created,
            "deleted": self.deleted,
            "conflicts": list(self.conflicts),
            "overwritten": list(self.overwritten),
            "refused": list(self.refused),
        }


def revisions(entries: Sequence[HistoryEntry]) -> list[Revision]:
    revision_of = {e.change: i for i, e in enumerate(entries, 1)}
    lost: dict[ChangeId, list[str]] = {}
    for e in entries:
        for path, loser in e.conflicts:
            lost.setdefault(loser, []).append(
                f"{format_path(path)} (by {e.change}, revision {revision_of[e.change]})"
            )
    out: list[Revision] = []
    for i, e in enumerate(entries, 1):
        out.append(
            Revision(
                revision=i,
                change=e.change,
                time_ms=e.hlc.wall_ms,
                hlc=str(e.hlc),
                author=e.author,
                manager=e.manager,
                fields=tuple(format_path(p) for p in e.fields),
                created=e.created,
                deleted=e.deleted,
                conflicts=tuple(
                    f"{format_path(p)} (over {c}"
                    + (f", revision {revision_of[c]})" if c in revision_of else ")")
                    for p, c in e.conflicts
                ),
                overwritten=tuple(lost.get(e.change, ())),
                refused=tuple(f"{format_path(p)} (owned by {o})" for p, o in e.refused),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    """The ops that take an object's fields in `scope` to a target, and what was left alone."""

    ops: list[Op]
    skipped: list[Refusal] = field(default_factory=list)


def plan_to(
    state: ObjectState,
    target: Mapping[Path, Leaf],
    *,
    target_exists: bool,
    manager: str,
    rules: KindRules,
    strict: bool,
) -> Plan:
    """Ops for `manager` to make the fields it may write equal `target`.

    Fields `manager` may not write are out of scope: an apply does not touch status, a rollback
    by `user` does not rewind what nodes reported. With `strict`, a target field out of scope is
    an error for the caller to raise (returned in `skipped`); otherwise it is skipped.
    """
    owners = Owners(state.name, rules, state.transfers, state.shares, state.fields)
    if not target_exists:
        return Plan([Op("del", ())] if state.exists else [])
    ops: list[Op] = [] if state.exists else [Op("new", ())]
    skipped: list[Refusal] = []
    for p in sorted(target):
        if p in state.fields and same_leaf(state.fields[p], target[p]):
            continue
        refusal = owners.may_write(manager, p)
        if refusal is not None:
            skipped.append(refusal)
            continue
        ops.append(Op("set", p, target[p]))
    for p in sorted(state.fields):
        if p in target or owners.may_write(manager, p) is not None:
            continue
        if any(is_under(p, o.path) and o.op == "del" for o in ops):
            continue
        ops.append(Op("del", p))
    if strict and skipped:
        return Plan([], skipped)
    return Plan(ops, skipped)


def seen_for(state: ObjectState, ops: Sequence[Op]) -> list[tuple[Path, ChangeId]]:
    """What the author sees as the writer of each field the ops will touch."""
    touched: dict[Path, None] = {}
    for op in ops:
        if op.op == "set":
            touched.setdefault(op.path)
        elif op.op == "del":
            for p in state.fields:
                if is_under(p, op.path):
                    touched.setdefault(p)
            if not op.path:
                touched.setdefault(())
        elif op.op == "new":
            touched.setdefault(())
    return [(p, state.writers[p]) for p in touched if p in state.writers]
