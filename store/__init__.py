"""The versioned store: a grow-only log of signed changes, folded into objects, on LMDB.

Public face: `Store` (the LMDB shell), the change format (`Change`, `Op`, `make_change`,
`decode_change`), ownership rules (`OwnerRule`), the key registry (`KeyEntry`), the clock
(`Hlc`, `HlcConfig`), history (`Revision`) and the errors.
"""

from store._change import (
    Change,
    ChangeId,
    NodeId,
    Op,
    author_content,
    decode_change,
    make_change,
)
from store._errors import (
    ChainError,
    ClockDriftError,
    ForbiddenManagerError,
    InvalidChangeError,
    LocalStoreError,
    MalformedChangeError,
    NotAuthorizedError,
    NotFoundError,
    OwnershipError,
    RemoteStoreError,
    SignatureError,
    StoreError,
    StoreFullError,
    UnknownKeyError,
)
from store._fold import HistoryEntry, ObjectState, fold, view
from store._history import Revision
from store._hlc import Hlc, HlcConfig, HybridClock
from store._keys import KeyEntry, KeyRegistry
from store._ownership import KindRules, OwnerRule, Rules
from store._path import Path, flatten, format_path, parse_path, unflatten
from store._results import Applied, Committed, FieldDiff, Missing, Rollback
from store.db import Store
from store.watch import ChangeApplied, Watch, WatchOverflowed

__all__ = [
    "Applied",
    "ChainError",
    "Change",
    "ChangeApplied",
    "ChangeId",
    "ClockDriftError",
    "Committed",
    "FieldDiff",
    "ForbiddenManagerError",
    "HistoryEntry",
    "Hlc",
    "HlcConfig",
    "HybridClock",
    "InvalidChangeError",
    "KeyEntry",
    "KeyRegistry",
    "KindRules",
    "LocalStoreError",
    "MalformedChangeError",
    "Missing",
    "NodeId",
    "NotAuthorizedError",
    "NotFoundError",
    "ObjectState",
    "Op",
    "OwnerRule",
    "OwnershipError",
    "Path",
    "RemoteStoreError",
    "Revision",
    "Rollback",
    "Rules",
    "SignatureError",
    "Store",
    "StoreError",
    "StoreFullError",
    "UnknownKeyError",
    "Watch",
    "WatchOverflowed",
    "author_content",
    "decode_change",
    "flatten",
    "fold",
    "format_path",
    "make_change",
    "parse_path",
    "unflatten",
    "view",
]
