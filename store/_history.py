"""History as users read it: revisions with author, time, fields, conflicts and refusals.

Pure: built from the stored `HistoryEntry` list of one object (already in fold order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from store._change import ChangeId, Op
from store._fold import CREATED, DELETED, ObjectState, display_key
from store._ownership import KindRules, Owners, Refusal
from store._path import Leaf, Path, is_under, same_leaf


class Revision(NamedTuple):
    """One revision as history shows it (a tuple: history builds thousands at a time, and a
    tuple is built in a third of a dataclass's time)."""

    revision: int
    change: ChangeId
    time_ms: int
    counter: int
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

    @property
    def hlc(self) -> str:
        """The hybrid logical timestamp, ``wall_ms.counter``."""
        return f"{self.time_ms}.{self.counter}"

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


_new = tuple.__new__  # builds a NamedTuple from a stored record's values, skipping its __new__


def revisions(records: Sequence[list[Any]]) -> list[Revision]:
    """Revisions numbered from 1 in fold order (records from `history_records`), with both
    sides of each conflict marked. Built straight from the records: history lists thousands."""
    has_conflicts = any(r[7] for r in records)
    revision_of: dict[tuple[str, int], int] = {}
    lost: dict[tuple[str, int], list[str]] = {}
    if has_conflicts:
        revision_of = {(r[0], r[1]): i for i, r in enumerate(records, 1)}
        for r in records:
            for key, origin, seq in r[7]:
                lost.setdefault((origin, seq), []).append(
                    f"{display_key(key)} (by {r[0]}:{r[1]}, revision {revision_of[r[0], r[1]]})"
                )
    out: list[Revision] = []
    append = out.append
    for i, (o, s, w, c, a, m, f, cf, rf, fl) in enumerate(records, 1):
        append(
            _new(
                Revision,
                (
                    i,
                    _new(ChangeId, (o, s)),
                    w,
                    c,
                    a,
                    m,
                    tuple(map(display_key, f)),
                    bool(fl & CREATED),
                    bool(fl & DELETED),
                    _conflicts(cf, revision_of) if cf else (),
                    tuple(lost[o, s]) if lost and (o, s) in lost else (),
                    tuple(f"{display_key(k)} (owned by {owner})" for k, owner in rf) if rf else (),
                ),
            )
        )
    return out


def _conflicts(
    conflicts: list[list[Any]], revision_of: Mapping[tuple[str, int], int]
) -> tuple[str, ...]:
    out = []
    for key, origin, seq in conflicts:
        rev = revision_of.get((origin, seq))
        where = f", revision {rev})" if rev is not None else ")"
        out.append(f"{display_key(key)} (over {origin}:{seq}{where}")
    return tuple(out)


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
