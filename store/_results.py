"""What the store's operations return: plain records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

from store._change import ChangeId
from store._hlc import Hlc
from store._path import Leaf


@dataclass(frozen=True, slots=True)
class Committed:
    change: ChangeId
    kind: str
    name: str
    revision: int
    hlc: Hlc


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of `Store.apply_remote`."""

    applied: list[ChangeId] = field(default_factory=list)
    duplicates: int = 0
    refolded: int = 0


@dataclass(frozen=True, slots=True)
class FieldDiff:
    path: str
    before: Leaf | None
    after: Leaf | None
    change: str  # added | removed | changed


@dataclass(frozen=True, slots=True)
class Rollback:
    committed: Committed | None
    skipped: list[str]


@dataclass(frozen=True, slots=True)
class Missing:
    """What a peer misses: whole per-origin runs in seq order; `complete` if nothing is left."""

    changes: list[bytes]
    complete: bool
