"""Change logs behind the dissemination core's `Log` seam, and the credential book.

- `MemoryLog`: an in-memory log for simulation. Its envelopes are small opaque bytes that
  encode (origin, seq, payload) with an 8-byte checksum standing in for a signature: cheap to
  make and to check, so a thousand simulated nodes can hold thousands of changes each.
- `StoreLog`: the adapter over a real `store.Store`. It decodes a batch once and hands each
  origin's run to `Store.apply_groups`, which checks the runs one by one (one origin's bad run
  does not block the others) and writes them in one transaction; it turns the store's
  refusals into the `ApplyResult` (never raising for a peer's data).
- `CredentialBook`: the key material that travels with changes. It holds encoded credentials
  (`Credential.encode`), trusts a new one only if `gossip._credentials.check` accepts it
  against the cluster's trust root, registers trusted keys in the store, and keeps them in a
  file (a CBOR list, written to a temporary name, fsynced and renamed).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import cbor2

from gossip._credentials import Credential, CredentialError, check
from gossip._dissemination import ApplyResult, Refusal
from gossip.identity import registry_entry
from store import (
    Change,
    MalformedChangeError,
    StoreError,
    UnknownKeyError,
    decode_change,
)
from store.db import Store
from store.txn import collector_paused

__all__ = ["CredentialBook", "MemoryLog", "StoreLog", "parse_memory_envelope"]

_MAGIC = 0x4D  # "M"
_HEAD = struct.Struct(">BB")
_SEQ = struct.Struct(">Q")
_TAG_BYTES = 8


def _tag(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_TAG_BYTES).digest()


def parse_memory_envelope(data: bytes) -> tuple[str, int, bytes] | str:
    """(origin, seq, payload) of a `MemoryLog` envelope, or why it is not one."""
    try:
        magic, olen = _HEAD.unpack_from(data, 0)
        start = _HEAD.size
        origin = data[start : start + olen].decode()
        (seq,) = _SEQ.unpack_from(data, start + olen)
    except (struct.error, UnicodeDecodeError):
        return "malformed envelope"
    body_end = len(data) - _TAG_BYTES
    if magic != _MAGIC or not origin or seq < 1 or body_end < start + olen + _SEQ.size:
        return "malformed envelope"
    if _tag(data[:body_end]) != data[body_end:]:
        return f"bad checksum on {origin}:{seq}"
    return origin, seq, data[start + olen + _SEQ.size : body_end]


class MemoryLog:
    """An in-memory change log for simulation (see the module docstring)."""

    def __init__(self, node: str) -> None:
        encoded = node.encode()
        if not 0 < len(encoded) < 256:
            raise ValueError(f"node: expected 1..255 bytes of UTF-8, got {node!r}")
        self.node = node
        self._chains: dict[str, list[bytes]] = {}
        self._rolling: dict[str, bytes] = {}

    # -- local ---------------------------------------------------------------------------

    def append_local(self, payload: bytes) -> bytes:
        """A new change of this node's own, appended; returns its envelope."""
        origin = self.node.encode()
        seq = len(self._chains.get(self.node, ())) + 1
        body = _HEAD.pack(_MAGIC, len(origin)) + origin + _SEQ.pack(seq) + payload
        envelope = body + _tag(body)
        self._append(self.node, envelope)
        return envelope

    def _append(self, origin: str, envelope: bytes) -> None:
        self._chains.setdefault(origin, []).append(envelope)
        previous = self._rolling.get(origin, b"")
        self._rolling[origin] = hashlib.blake2b(previous + envelope, digest_size=16).digest()

    # -- the Log protocol ----------------------------------------------------------------

    def version_vector(self) -> dict[str, int]:
        return {origin: len(chain) for origin, chain in self._chains.items()}

    def missing(self, peer: Mapping[str, int], *, max_bytes: int) -> tuple[list[bytes], bool]:
        out: list[bytes] = []
        size = 0
        for origin in sorted(self._chains):
            chain = self._chains[origin]
            for envelope in chain[peer.get(origin, 0) :]:
                if out and size + len(envelope) > max_bytes:
                    return out, False
                out.append(envelope)
                size += len(envelope)
        return out, True

    def apply(self, envelopes: Sequence[bytes], keys: Sequence[bytes]) -> ApplyResult:
        by_origin: dict[str, dict[int, tuple[int, bytes]]] = {}
        refused: list[Refusal] = []
        for index, envelope in enumerate(envelopes):
            parsed = parse_memory_envelope(envelope)
            if isinstance(parsed, str):
                refused.append(Refusal("?", parsed))
                continue
            origin, seq, _ = parsed
            by_origin.setdefault(origin, {}).setdefault(seq, (index, envelope))
        new: list[int] = []
        origins: list[str] = []
        gaps: list[str] = []
        duplicates = 0
        for origin in sorted(by_origin):
            chain = self._chains.get(origin, [])
            runs = by_origin[origin]
            applied_before = len(new)
            for seq in sorted(runs):
                index, envelope = runs[seq]
                head = len(chain)
                if seq <= head:
                    if chain[seq - 1] == envelope:
                        duplicates += 1
                    else:
                        refused.append(Refusal(origin, f"fork of {origin} at seq {seq}"))
                    continue
                if seq != head + 1:
                    gaps.append(origin)
                    break
                self._append(origin, envelope)
                chain = self._chains[origin]
                new.append(index)
            if len(new) > applied_before:
                origins.append(origin)
        return ApplyResult(tuple(new), tuple(origins), duplicates, tuple(gaps), tuple(refused))

    def keys_for(self, envelopes: Sequence[bytes]) -> list[bytes]:
        return []

    # -- queries -------------------------------------------------------------------------

    def state_hash(self) -> bytes:
        """A digest of everything held: equal for two logs holding the same changes."""
        h = hashlib.blake2b(digest_size=16)
        for origin in sorted(self._rolling):
            h.update(f"{origin}\0{len(self._chains[origin])}\0".encode() + self._rolling[origin])
        return h.digest()

    def holds(self, envelope: bytes) -> bool:
        parsed = parse_memory_envelope(envelope)
        if isinstance(parsed, str):
            return False
        origin, seq, _ = parsed
        chain = self._chains.get(origin, [])
        return seq <= len(chain) and chain[seq - 1] == envelope

    def __len__(self) -> int:
        return sum(len(chain) for chain in self._chains.values())


def _unix_now() -> int:
    return int(time.time())


class CredentialBook:
    """Known credentials: checked against the trust root, registered in the store, persisted.

    ``path`` is the file that keeps them (created if absent); ``root_public`` the cluster's
    trust root; ``clock`` gives the Unix seconds a credential must be valid at.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        store: Store,
        root_public: bytes,
        clock: Callable[[], int] = _unix_now,
    ) -> None:
        self.path = Path(path)
        self._store = store
        self._root = root_public
        self._clock = clock
        self._by_subject: dict[str, bytes] = {}
        self._known: set[bytes] = set()
        self.refused: dict[bytes, str] = {}
        """Blobs refused so far and why (bounded: cleared past 1024 entries)."""
        if self.path.exists():
            blobs = cbor2.loads(self.path.read_bytes())
            if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
                raise ValueError(f"{self.path}: expected a CBOR list of credentials")
            for blob in blobs:
                self._take(blob, now=self._clock())

    def add(self, blob: bytes, *, now: int | None = None) -> str | None:
        """Trust, register and persist ``blob``; returns why it was refused (None: trusted)."""
        if blob in self._known:
            return None
        reason = self._take(blob, now=self._clock() if now is None else now)
        if reason is None:
            self._save()
        elif len(self.refused) < 1024:
            self.refused[blob] = reason
        else:
            self.refused.clear()
        return reason

    def add_all(self, blobs: Iterable[bytes], *, now: int | None = None) -> list[str]:
        """`add` each; returns the reasons of those refused."""
        reasons = [self.add(b, now=now) for b in blobs]
        return [r for r in reasons if r is not None]

    def encoded(self, subject: str) -> bytes | None:
        """The trusted credential of ``subject``, as `Credential.encode` made it."""
        return self._by_subject.get(subject)

    def subjects(self) -> list[str]:
        return sorted(self._by_subject)

    def _take(self, blob: bytes, *, now: int) -> str | None:
        try:
            cred = Credential.decode(blob)
        except CredentialError as exc:
            return str(exc)
        reason = check(cred, root_public=self._root, now=now)
        if reason is not None:
            return reason
        held = self._by_subject.get(cred.subject)
        if held is not None and Credential.decode(held).not_after >= cred.not_after:
            self._known.add(blob)
            return None  # an older or equal credential of a subject we already trust
        self._store.register_key(registry_entry(cred))
        self._by_subject[cred.subject] = blob
        self._known.add(blob)
        return None

    def _save(self) -> None:
        data = cbor2.dumps([self._by_subject[s] for s in sorted(self._by_subject)])
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class StoreLog:
    """The `Log` over a real `Store` (see the module docstring)."""

    def __init__(self, store: Store, credentials: CredentialBook) -> None:
        self.store = store
        self.credentials = credentials

    def version_vector(self) -> dict[str, int]:
        return self.store.version_vector()

    def missing(self, peer: Mapping[str, int], *, max_bytes: int) -> tuple[list[bytes], bool]:
        result = self.store.missing(peer, max_bytes=max_bytes)
        return result.changes, result.complete

    def apply(self, envelopes: Sequence[bytes], keys: Sequence[bytes]) -> ApplyResult:
        # A batch's decoded changes stay alive until it is applied: see `collector_paused`.
        with collector_paused():
            return self._apply(envelopes, keys)

    def _apply(self, envelopes: Sequence[bytes], keys: Sequence[bytes]) -> ApplyResult:
        refused: list[Refusal] = []
        for reason in self.credentials.add_all(keys):
            refused.append(Refusal("?", f"credential refused: {reason}", count=0))
        by_origin: dict[str, dict[int, tuple[int, Change]]] = {}
        for index, envelope in enumerate(envelopes):
            try:
                change = decode_change(envelope)
            except MalformedChangeError as exc:
                refused.append(Refusal("?", str(exc)))
                continue
            by_origin.setdefault(change.origin, {}).setdefault(change.seq, (index, change))
        heads = self.store.version_vector()
        runs: list[tuple[str, list[tuple[int, Change]]]] = []
        gaps: list[str] = []
        duplicates = 0
        for origin in sorted(by_origin):
            held = by_origin[origin]
            head = heads.get(origin, 0)
            expected = head + 1
            run: list[tuple[int, Change]] = []
            for seq in sorted(held):
                if seq <= head:
                    duplicates += 1  # already held: dropped before the store sees it
                    continue
                if seq != expected:
                    gaps.append(origin)
                    break
                run.append(held[seq])
                expected += 1
            if run:
                runs.append((origin, run))
        # The changes decoded above go to the store as they are, each origin's run checked on
        # its own but all written in one transaction: one decode and one sync per batch.
        outcomes = self.store.apply_groups([[c for _, c in run] for _, run in runs])
        new: list[int] = []
        origins: list[str] = []
        for (origin, run), outcome in zip(runs, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                unknown = isinstance(outcome, UnknownKeyError)
                refused.append(Refusal(origin, str(outcome), count=len(run), unknown_key=unknown))
                continue
            count = len(outcome.applied)
            duplicates += len(run) - count
            new.extend(index for index, _ in run[:count])
            if count:
                origins.append(origin)
        new.sort()
        return ApplyResult(tuple(new), tuple(origins), duplicates, tuple(gaps), tuple(refused))

    def keys_for(self, envelopes: Sequence[bytes]) -> list[bytes]:
        names: dict[str, None] = {}
        for envelope in envelopes:
            try:
                change = decode_change(envelope)
            except MalformedChangeError:
                continue
            names[change.origin] = None
            names[change.author] = None
        out = [self.credentials.encoded(name) for name in names]
        return [blob for blob in out if blob is not None]
