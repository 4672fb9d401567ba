"""The fold: an object's state is a deterministic function of its set of changes.

Theory of operation. An object's changes are applied in *fold order*, ascending
``(hlc, origin, seq)``. Applying a change in that order gives per-field last-writer-wins by
``(hlc, origin)`` for free: a field holds the value of the last change in fold order that wrote
it. Deleting a field or the whole object leaves a tombstone (the deleting change becomes the
field's writer), so nothing deleted comes back unless a later change writes it again, and
re-creating a deleted object takes an explicit ``new`` op.

Every change becomes one revision, numbered by its place in fold order; ``revision`` is how
many changes the object has. A change that arrives late with an older timestamp (after a
partition) takes its place in that order: the store folds the object again from its first
change, and later revision numbers move up by one. Any two nodes holding the same changes hold
byte-identical state (`ObjectState.encode`) and identical history.

Conflicts. A change lists, for each field it overwrites, the change its author saw as that
field's writer (``seen``). If the field's writer at that point of the fold is a different
change, the two edits were concurrent: the later one wins, and its history entry records the
field and the change it overwrote without having seen it.

Ownership is decided here too, against the state just before the change, so every node reaches
the same verdict. A change touching a field its manager may not write has no effect at all
(a change is atomic); its history entry lists the fields and their owners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import msgpack

from store._change import Change, ChangeId, SortKey
from store._hlc import Hlc
from store._keyspace import history_key
from store._ownership import (
    KindRules,
    Owners,
    Refusal,
    _compiled,
    resolve,
    rule_owner,
    rule_owners,
)
from store._path import Leaf, Path, format_path, is_under, same_leaf, unflatten

CREATED = 1
DELETED = 2
_new = tuple.__new__  # builds a NamedTuple from known-good values, skipping its Python __new__


# One packer, reused (msgpack.packb builds one per call, which costs more than packing a
# history record). Safe across threads: packing these plain values runs in C under the GIL.
_pack: Callable[[list[Any]], bytes] = msgpack.Packer().pack


def _array_header(n: int) -> bytes:
    """msgpack's header of an array of `n` items."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _joined(path: Path) -> str:
    """A path as one string: keys joined by NUL (which keys may not contain)."""
    return "\0".join(path)


_KEYS: dict[tuple[Path, ...], list[str]] = {}


def _keys(paths: tuple[Path, ...]) -> list[str]:
    """`paths` as stored path keys (memoized: the same few sets of fields recur endlessly;
    bounded, cleared when it grows too large). Read only: the lists are shared."""
    keys = _KEYS.get(paths)
    if keys is None:
        if len(_KEYS) > 65536:
            _KEYS.clear()
        keys = _KEYS[paths] = [_joined(p) for p in paths]
    return keys


def _split(key: str) -> Path:
    return tuple(key.split("\0")) if key else ()


@lru_cache(maxsize=65536)
def display_key(key: str) -> str:
    """A stored path key (see `_joined`) as users read it, e.g. ``spec.containers.web``."""
    return format_path(_split(key))


def history_records(values: Iterable[bytes]) -> list[list[Any]]:
    """Stored history entries as plain records, for listing many at once:
    ``[origin, seq, wall_ms, counter, author, manager, [path key], conflicts, refused, flags]``
    (conflicts ``[[path key, origin, seq]]``, refused ``[[path key, owner]]``)."""
    unpacker = msgpack.Unpacker(use_list=True)
    unpacker.feed(b"".join(values))
    return list(unpacker)


class HistoryEntry(NamedTuple):
    """One revision of an object, as history lists it (a tuple: the fold makes one per
    change)."""

    change: ChangeId
    hlc: Hlc
    author: str
    manager: str
    fields: tuple[Path, ...]
    conflicts: tuple[tuple[Path, ChangeId], ...] = ()
    refused: tuple[tuple[Path, str], ...] = ()
    flags: int = 0

    @property
    def created(self) -> bool:
        return bool(self.flags & CREATED)

    @property
    def deleted(self) -> bool:
        return bool(self.flags & DELETED)

    def encode(self) -> bytes:
        (origin, seq), (wall, counter), author, manager, fields, conflicts, refused, flags = self
        return _pack(
            [
                origin,
                seq,
                wall,
                counter,
                author,
                manager,
                _keys(fields),
                [[_joined(p), c[0], c[1]] for p, c in conflicts] if conflicts else [],
                [[_joined(p), o] for p, o in refused] if refused else [],
                flags,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> HistoryEntry:
        return cls.from_record(msgpack.unpackb(data))

    @classmethod
    def from_record(cls, record: list[Any]) -> HistoryEntry:
        o, s, w, c, a, m, f, cf, rf, fl = record
        return _new(
            cls,
            (
                ChangeId(o, s),
                Hlc(w, c),
                a,
                m,
                tuple(map(_split, f)),
                tuple((_split(p), ChangeId(co, cs)) for p, co, cs in cf) if cf else (),
                tuple((_split(p), ow) for p, ow in rf) if rf else (),
                fl,
            ),
        )


@dataclass(slots=True)
class ObjectState:
    """The folded state of one object, including what the fold needs to continue."""

    kind: str
    name: str
    exists: bool = False
    fields: dict[Path, Leaf] = field(default_factory=dict)
    writers: dict[Path, ChangeId] = field(default_factory=dict)
    transfers: dict[Path, str] = field(default_factory=dict)
    shares: dict[Path, tuple[str, ...]] = field(default_factory=dict)
    revision: int = 0
    last_key: SortKey | None = None
    order: list[Path] = field(default_factory=list, compare=False, repr=False)
    """`writers` sorted, kept between encodes (`writers` only grows: tombstones stay)."""
    rows: list[bytes] = field(default_factory=list, compare=False, repr=False)
    """Each path's encoded row, in `order`, kept between encodes."""
    slot: dict[Path, int] = field(default_factory=dict, compare=False, repr=False)
    """Where each path of `order` is."""
    dirty: list[Path] = field(default_factory=list, compare=False, repr=False)
    """Paths `apply_change` wrote since the last encode: their rows are packed again."""

    def owners(self, rules: KindRules) -> Owners:
        return Owners(self.name, rules, self.transfers, self.shares, self.fields)

    def encode(self) -> bytes:
        """Canonical bytes: equal states encode to equal bytes.

        One row per field path, sorted: ``[path, writer origin, writer seq, value]`` for a
        field, ``[path, writer origin, writer seq]`` for a tombstone (the root path ``""`` holds
        the writer of the object's existence). msgpack, not CBOR: this record is internal,
        rewritten on every change, and msgpack encodes it several times faster, deterministically.
        Only the rows of the paths written since the last encode are packed again (in C, by
        store/_cchange.c, when no path is new and nothing is transferred or shared).
        """
        if _native_encode is not None:
            out = _native_encode(self)
            if out is not None:
                return out
        rows = self.rows
        if len(self.order) != len(self.writers):
            rows = self._reorder()
        elif self.dirty:
            slot, dirty = self.slot, self.dirty
            for p in dict.fromkeys(dirty) if len(dirty) > 1 else dirty:
                rows[slot[p]] = self._row(p)
            dirty.clear()
        head = _pack([self.kind, self.name, self.exists, self.revision, self.last_key])
        if self.transfers or self.shares:
            tail = _pack(
                [
                    [[_joined(p), m] for p, m in sorted(self.transfers.items())],
                    [[_joined(p), list(m)] for p, m in sorted(self.shares.items())],
                ]
            )[1:]
        else:
            tail = b"\x90\x90"
        # The same bytes as packing the whole 8-item record at once: an array header, then
        # each item (`head` and `tail` are 5- and 2-item arrays, one header byte each).
        parts = [b"\x98", head[1:], _array_header(len(rows))]
        parts += rows
        parts.append(tail)
        return b"".join(parts)

    def _row(self, p: Path) -> bytes:
        w = self.writers[p]
        fields = self.fields
        if p in fields:
            return _pack([_joined(p), w.origin, w.seq, fields[p]])
        return _pack([_joined(p), w.origin, w.seq])

    def _reorder(self) -> list[bytes]:
        """New paths were written: sort them in, keeping the rows of the paths not rewritten."""
        kept = dict(zip(self.order, self.rows, strict=True))
        for p in self.dirty:
            kept.pop(p, None)
        self.dirty.clear()
        order = self.order = sorted(self.writers)
        self.slot = {p: i for i, p in enumerate(order)}
        rows = self.rows = [kept.get(p) or self._row(p) for p in order]
        return rows

    @classmethod
    def decode(cls, data: bytes) -> ObjectState:
        kind, name, exists, revision, last, rows, transfers, shares = msgpack.unpackb(data)
        fields: dict[Path, Leaf] = {}
        writers: dict[Path, ChangeId] = {}
        for row in rows:
            p = _split(row[0])
            writers[p] = ChangeId(row[1], row[2])
            if len(row) == 4:
                fields[p] = row[3]
        return cls(
            kind=kind,
            name=name,
            exists=exists,
            revision=revision,
            last_key=(last[0], last[1], last[2], last[3]) if last else None,
            fields=fields,
            writers=writers,
            transfers={_split(p): m for p, m in transfers},
            shares={_split(p): tuple(m) for p, m in shares},
        )


def refusals(state: ObjectState, change: Change, rules: KindRules) -> list[Refusal]:
    """Every field `change` touches that its manager may not write, given `state`."""
    if not state.transfers and not state.shares and _plainly_allowed(state, change, rules):
        return []
    manager = change.manager
    owners = state.owners(rules)
    out: list[Refusal] = []
    for op in change.ops:
        if op.op in ("set", "new"):
            paths: Iterable[Path] = (op.path,)
        elif op.op == "del":
            under = [p for p in state.fields if is_under(p, op.path)] if op.path else []
            paths = under or (op.path,)
        else:  # share, own: for the owner alone
            r = owners.may_govern(manager, op.path)
            if r is not None:
                out.append(r)
            continue
        for p in paths:
            r = owners.may_write(manager, p)
            if r is not None:
                out.append(r)
    return out


def apply_change(state: ObjectState, change: Change, rules: KindRules) -> HistoryEntry:
    """Apply `change` to `state` (in place), which must come after every change folded so far."""
    key = change.sort_key
    last = state.last_key
    if last is not None and key <= last:
        raise ValueError(f"change {change.id} is not after {last} in fold order")
    state.revision += 1
    state.last_key = key
    ops = change.ops
    touched = (ops[0][1],) if len(ops) == 1 else tuple(dict.fromkeys([op[1] for op in ops]))
    if state.transfers or state.shares or not _plainly_allowed(state, change, rules):
        refused = refusals(state, change, rules)  # the slow path: this change may be refused
        if refused:
            return HistoryEntry(
                change.id,
                change.hlc,
                change.author,
                change.manager,
                touched,
                refused=tuple(dict.fromkeys((r.path, r.owner) for r in refused)),
            )
    seen = change.seen
    conflicts: dict[Path, ChangeId] = {}
    me = change.id
    writers, fields, dirty = state.writers, state.fields, state.dirty
    flags = 0
    for name, path, arg in ops:
        if name == "set":
            prev = writers.get(path)
            if prev is not None and prev != me and prev != seen.get(path):
                conflicts.setdefault(path, prev)
            writers[path] = me
            fields[path] = arg
            dirty.append(path)
            continue
        if name == "del":
            gone = [p for p in fields if is_under(p, path)]
            if not path:
                gone.append(())
                state.exists = False
                flags |= DELETED
        elif name == "new":
            gone = [()]
            state.exists = True
            flags |= CREATED
        else:
            if name == "share":
                if arg:
                    state.shares[path] = arg
                else:
                    state.shares.pop(path, None)
            elif name == "own":
                state.transfers[path] = arg
            continue
        for p in gone:  # `new` and `del` write the fields they remove (and the root)
            prev = writers.get(p)
            if prev is not None and prev != me and prev != seen.get(p):
                conflicts.setdefault(p, prev)
            writers[p] = me
            fields.pop(p, None)
            dirty.append(p)
    return _new(
        HistoryEntry,
        (
            me,
            change.hlc,
            change.author,
            change.manager,
            touched,
            tuple(conflicts.items()) if conflicts else (),
            (),
            flags,
        ),
    )


def _plainly_allowed(state: ObjectState, change: Change, rules: KindRules) -> bool:
    """Whether every op of `change` is a set or new its manager owns by the kind's rules (the
    common case, decided from the memoized rule table; `refusals` decides the others)."""
    manager = change.manager
    memo = rule_owners(rules)
    for name, path, _ in change.ops:
        if name not in {"set", "new"}:
            return False
        owner = memo.get(path) or rule_owner(rules, path)
        if owner != manager and resolve(owner, state.name, state.fields) != manager:
            return False
    return True


def fold_records(
    state: ObjectState,
    changes: list[Change],
    rules: KindRules,
    hprefix: bytes,
    records: list[tuple[bytes, bytes]],
) -> None:
    """Apply `changes` (in fold order, after what `state` holds) to `state` in place, adding
    to `records` what the store writes for each: (history key, encoded `HistoryEntry`).

    The C fold (store/_cchange.c) takes the common case, changes whose every op is a set or
    new its manager owns by the kind's rules on an object nothing of which is transferred or
    shared, and stops before any other change, which `apply_change` applies; this loop is
    the only place that mixes the two."""
    native = _native_fold
    at, n = 0, len(changes)
    while at < n:
        if native is not None:
            at = native(state, changes, at, rule_owners(rules), hprefix, records)
            if at >= n:
                break
        c = changes[at]
        records.append((history_key(hprefix, c), apply_change(state, c, rules).encode()))
        at += 1


NativeFold = Callable[
    [ObjectState, list[Change], int, Mapping[Path, str], bytes, list[tuple[bytes, bytes]]], int
]
NativeEncode = Callable[[ObjectState], bytes | None]


def _load_native_fold() -> tuple[NativeFold, NativeEncode] | None:
    try:
        import store._cchange as native  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return None
    native.configure_fold(ObjectState, _compiled)
    return native.fold, native.encode_state


_BUILT_FOLD = _load_native_fold()
_native_fold: NativeFold | None = None
_native_encode: NativeEncode | None = None


def use_native_fold(on: bool) -> bool:
    """Let `fold_records` and `ObjectState.encode` use the C fold and encoder, if they were
    built (the default), or not (the Python reference alone); returns whether they now do."""
    global _native_fold, _native_encode
    _native_fold, _native_encode = _BUILT_FOLD if on and _BUILT_FOLD else (None, None)
    return _native_fold is not None


use_native_fold(True)


def fold(
    kind: str, name: str, changes: Iterable[Change], rules: KindRules
) -> tuple[ObjectState, list[HistoryEntry]]:
    """Fold any collection of an object's changes (any order, duplicates allowed)."""
    unique = {c.id: c for c in changes}
    state = ObjectState(kind, name)
    entries = [apply_change(state, c, rules) for c in sorted(unique.values(), key=_key)]
    return state, entries


def _key(c: Change) -> SortKey:
    return c.sort_key


def view(state: ObjectState) -> dict[str, Any]:
    """The object as users see it: ``{kind, metadata: {name, revision, ...}, spec, status}``."""
    doc = unflatten(state.fields)
    meta = doc.pop("metadata", {})
    out: dict[str, Any] = {
        "kind": state.kind,
        "metadata": {"name": state.name, "revision": state.revision, **meta},
    }
    out.update(doc)
    return out


def leaves_changed(
    before: Mapping[Path, Leaf], after: Mapping[Path, Leaf]
) -> list[tuple[Path, Leaf | None, Leaf | None, str]]:
    """Field-level differences, sorted by path: (path, before, after, added|removed|changed)."""
    out: list[tuple[Path, Leaf | None, Leaf | None, str]] = []
    for p in sorted(set(before) | set(after)):
        if p not in after:
            out.append((p, before[p], None, "removed"))
        elif p not in before:
            out.append((p, None, after[p], "added"))
        elif not same_leaf(before[p], after[p]):
            out.append((p, before[p], after[p], "changed"))
    return out
