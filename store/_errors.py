"""Errors of the store.

One base, `StoreError`, split the h11 way: `LocalStoreError` is our caller's mistake (a bad
edit, a field it does not own, a revision that does not exist, a full map); `RemoteStoreError`
is a peer's fault (garbage bytes, a broken hash chain, a bad signature, a clock too far ahead).
Every message says what happened to state: the store writes a change or a batch whole, or not
at all, so each refusal ends with "nothing was written".
"""

from __future__ import annotations

NOTHING_WRITTEN = "nothing was written"


class StoreError(Exception):
    """Base of every store error."""


class LocalStoreError(StoreError):
    """The caller asked for something the store refuses; nothing was written."""


class RemoteStoreError(StoreError):
    """A peer sent changes the store refuses; nothing from that batch was written."""


# --- the caller's mistakes -------------------------------------------------------------------


class InvalidChangeError(LocalStoreError):
    """An operation, path or value that is not well formed."""


class NotFoundError(LocalStoreError):
    """The object or revision named does not exist."""


class OwnershipError(LocalStoreError):
    """A write touched a field that the writing manager does not own."""

    def __init__(self, message: str, *, path: str, owner: str, manager: str) -> None:
        super().__init__(message)
        self.path = path
        self.owner = owner
        self.manager = manager


class NotAuthorizedError(LocalStoreError):
    """The author's key may not act as the manager it claims."""


class StoreFullError(LocalStoreError):
    """The LMDB map is full."""


# --- a peer's faults -------------------------------------------------------------------------


class MalformedChangeError(RemoteStoreError):
    """Bytes that do not decode to a well-formed change."""


class ChainError(RemoteStoreError):
    """A gap in an origin's sequence, a broken hash link, or a fork of an origin's chain."""


class SignatureError(RemoteStoreError):
    """A signature that does not verify."""


class UnknownKeyError(RemoteStoreError):
    """A change from an origin or author whose key is not in the registry."""


class ForbiddenManagerError(RemoteStoreError):
    """A change whose author may not act as the manager it names."""


class ClockDriftError(RemoteStoreError):
    """A change stamped further in the future than the drift bound allows."""
