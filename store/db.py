"""The versioned store on LMDB: the shell around the pure change, fold and ownership cores.

One LMDB environment, six named databases::

    log      origin \\0 seq(8, big-endian)            -> envelope   (append-only change log)
    heads    origin                                   -> [seq, digest]  (version vector + chain)
    objects  kind \\0 name                            -> ObjectState (canonical msgpack)
    history  kind \\0 name \\0 wall(8) counter(4) origin \\0 seq(8) -> HistoryEntry
    meta     b"format" | b"hlc" | b"node"             -> store metadata and the clock
    keys     key id                                   -> [public key, managers]

Every operation is one LMDB write transaction: a change (or a batch of remote changes) is in
the log, folded into its object, indexed in history and counted in the version vector all at
once, or not at all. Transactions are durable at commit (LMDB syncs), so a change the store
acknowledged survives SIGKILL and power loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from pathlib import Path as FsPath
from typing import Any

import cbor2
import lmdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from store._change import (
    ZERO_DIGEST,
    Change,
    ChangeId,
    Op,
    author_content,
    check_id,
    check_op,
    decode_change,
    make_change,
    verify_author,
)
from store._errors import (
    InvalidChangeError,
    LocalStoreError,
    NotAuthorizedError,
    NotFoundError,
    RemoteStoreError,
    SignatureError,
)
from store._fold import (
    HistoryEntry,
    ObjectState,
    apply_change,
    fold_records,
    history_records,
    leaves_changed,
    view,
)
from store._history import Revision, plan_to, revisions, seen_for
from store._hlc import Hlc, HlcConfig, HybridClock
from store._keys import KeyEntry, KeyRegistry
from store._keyspace import decode_head, history_key, log_entries, log_key, object_key
from store._ownership import Refusal, Rules, ownership_error
from store._path import flatten, format_path
from store._remote import Batch, check_batch
from store._results import Applied, Committed, FieldDiff, Missing, Rollback
from store.txn import StateCache, WriteTxn, collector_paused, full_error
from store.watch import ChangeApplied, Watch, Watchers

STORE_FORMAT = 1
DEFAULT_MAP_SIZE = 1 << 30
CATCHUP_CHUNK_BYTES = 4 << 20
"""How much `missing()` returns at once: one catch-up chunk, applied in one transaction."""
STATE_CACHE_OBJECTS = 4096
"""How many decoded object states writers keep between transactions (see `StateCache`)."""


_SORT_KEY = attrgetter("sort_key")
_new = tuple.__new__  # builds a NamedTuple from known-good values, skipping its Python __new__


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    """A node's authoritative local state. Not thread-safe: one owner (task or thread)."""

    def __init__(
        self,
        path: str | FsPath,
        *,
        node_id: str,
        signing_key: Ed25519PrivateKey,
        rules: Rules,
        node_managers: Sequence[str] | None = None,
        map_size: int = DEFAULT_MAP_SIZE,
        state_cache: int = STATE_CACHE_OBJECTS,
        hlc: HlcConfig | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.path = FsPath(path)
        self.node_id = check_id(node_id, "the node id")
        self._key = signing_key
        self.rules = rules
        self._clock_ms = clock
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.watchers = Watchers()
        self.clock = HybridClock(config=hlc or HlcConfig())
        self.registry = KeyRegistry()
        self._cache = StateCache(state_cache)
        self._write_lock = threading.Lock()
        self._batch: tuple[int, Any, list[ChangeApplied]] | None = None
        self._env = lmdb.open(
            str(self.path), map_size=map_size, max_dbs=8, subdir=True, sync=True, metasync=True
        )
        try:
            self._open(node_id, signing_key, node_managers)
        except lmdb.MapFullError:
            error = full_error(self)
            self._env.close()
            raise error from None
        except BaseException:
            self._env.close()
            raise

    def _open(
        self, node_id: str, signing_key: Ed25519PrivateKey, node_managers: Sequence[str] | None
    ) -> None:
        self._log = self._env.open_db(b"log")
        self._heads = self._env.open_db(b"heads")
        self._objects = self._env.open_db(b"objects")
        self._history = self._env.open_db(b"history")
        self._meta = self._env.open_db(b"meta")
        self._keys = self._env.open_db(b"keys")
        public = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        managers = tuple(node_managers or (f"node:{node_id}", "placement"))
        own = KeyEntry(node_id, public, managers)
        trusted: list[KeyEntry] = []
        with self._write() as txn:
            fmt = txn.get(b"format", db=self._meta)
            if fmt is None:
                txn.put(b"format", cbor2.dumps(STORE_FORMAT), db=self._meta)
                txn.put(b"node", node_id.encode(), db=self._meta)
            elif cbor2.loads(fmt) != STORE_FORMAT:
                raise LocalStoreError(
                    f"the store at {self.path} has format {cbor2.loads(fmt)}, this edgenode "
                    f"reads format {STORE_FORMAT}; nothing was changed"
                )
            elif (owner := txn.get(b"node", db=self._meta)) != node_id.encode():
                raise LocalStoreError(
                    f"the store at {self.path} belongs to node {owner.decode()!r}, not "
                    f"{node_id!r}; open it with its own node id, nothing was changed"
                )
            self._load_clock(txn)
            for k, v in txn.cursor(db=self._keys):
                pub, mgrs = cbor2.loads(v)
                trusted.append(KeyEntry(k.decode(), pub, tuple(mgrs)))
            self._put_key(txn, own)
        # Trust only what is durably written.
        for entry in [*trusted, own]:
            self.registry.add(entry)

    # --- plumbing ----------------------------------------------------------------------------

    def _write(self) -> Any:
        batch = self._batch
        if batch is not None and batch[0] == threading.get_ident():
            return _Joined(batch[1])
        return WriteTxn(self)

    def _publish(self, events: list[ChangeApplied]) -> None:
        batch = self._batch
        if batch is not None and batch[0] == threading.get_ident():
            batch[2].extend(events)  # told once the batch has committed
        else:
            self.watchers.publish(events)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write of this thread inside the block one transaction: all of them are
        kept, or (an exception leaves the block) none. One commit, one sync to disk: writing
        many objects at once costs a fraction of writing them one by one. Watchers hear of
        the changes once the batch has committed. Other threads' writes wait for it to end;
        an exception raised inside must leave the block (catching it and writing on would
        commit what came before it). A batch inside a batch is part of the outer one."""
        if self._batch is not None and self._batch[0] == threading.get_ident():
            yield
            return
        events: list[ChangeApplied] = []
        with WriteTxn(self) as txn:
            self._batch = (threading.get_ident(), txn, events)
            try:
                yield
            finally:
                self._batch = None
        self.watchers.publish(events)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_clock(self, txn: Any) -> None:
        raw = txn.get(b"hlc", db=self._meta)
        if raw is not None:
            persisted = Hlc(*cbor2.loads(raw))
            self.clock.last = max(self.clock.last, persisted)

    def _save_clock(self, txn: Any) -> None:
        last = self.clock.last
        txn.put(b"hlc", cbor2.dumps([last.wall_ms, last.counter]), db=self._meta)

    def _put_key(self, txn: Any, entry: KeyEntry) -> None:
        txn.put(
            entry.key_id.encode(),
            cbor2.dumps([entry.public_key, list(entry.managers)]),
            db=self._keys,
        )

    def register_key(self, entry: KeyEntry) -> None:
        """Trust `entry.public_key` to act as `entry.managers` (replaces an earlier entry)."""
        check_id(entry.key_id, "the key id")
        with self._write() as txn:
            self._put_key(txn, entry)
        self.registry.add(entry)  # only once it is durably written

    def _state(self, txn: Any, kind: str, name: str) -> ObjectState | None:
        raw = txn.get(object_key(kind, name), db=self._objects)
        return ObjectState.decode(raw) if raw is not None else None

    def _state_to_write(self, txn: Any, okey: bytes, kind: str, name: str) -> ObjectState:
        """The object's state for this write transaction to change in place (from the cache
        when it holds it); what it becomes is cached once the transaction commits."""
        state: ObjectState | None = self._cache.take(okey)
        if state is None:
            raw = txn.get(okey, db=self._objects)
            state = ObjectState.decode(raw) if raw is not None else ObjectState(kind, name)
        self._cache.keep(okey, state)
        return state

    def _history_values(self, txn: Any, kind: str, name: str) -> list[bytes]:
        """The stored history entries of an object, in fold order (raw)."""
        prefix = object_key(kind, name) + b"\0"
        cur = txn.cursor(db=self._history)
        out: list[bytes] = []
        if cur.set_range(prefix):
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                out.append(v)
        return out

    def _entries(self, txn: Any, kind: str, name: str) -> list[HistoryEntry]:
        return [HistoryEntry.decode(v) for v in self._history_values(txn, kind, name)]

    def _change(self, txn: Any, cid: ChangeId) -> Change:
        raw = txn.get(log_key(cid.origin, cid.seq), db=self._log)
        if raw is None:
            raise LocalStoreError(f"change {cid} is indexed but not in the log: store damaged")
        return decode_change(raw)

    # --- local writes ------------------------------------------------------------------------

    def commit(
        self,
        kind: str,
        name: str,
        ops: Iterable[Op | Sequence[Any]],
        *,
        manager: str,
        author: str | None = None,
        at: int | None = None,
        author_sig: bytes | None = None,
        author_key: Ed25519PrivateKey | None = None,
    ) -> Committed:
        """Write one change made on this node; raises `LocalStoreError` and writes nothing.

        An edit by someone other than this node names its `author` and either carries the
        author's signature (`author_sig`, made at `at` ms) or the author's key (`author_key`):
        then the store stamps `at` with its own clock and signs inside the write, once the ops
        are known (a rollback's or a document's ops are worked out there).
        """
        checked = [self._check_op(o, kind, name) for o in ops]
        if not checked:
            raise InvalidChangeError(f"{kind}/{name}: a change needs at least one op")
        committed = self._commit(
            kind,
            name,
            lambda _s: checked,
            manager=manager,
            author=author,
            at=at,
            sig=author_sig,
            author_key=author_key,
        )
        assert committed is not None  # the ops are not empty, so it wrote or raised
        return committed

    def put_document(
        self,
        kind: str,
        name: str,
        document: Mapping[str, Any],
        *,
        manager: str = "user",
        author: str | None = None,
        author_key: Ed25519PrivateKey | None = None,
    ) -> Committed | None:
        """Make the fields `manager` owns equal `document` (create the object if needed).

        ``kind``, ``apiVersion``, ``metadata.name`` and ``metadata.revision`` in the document
        are ignored; fields owned by other managers (status, assignment) are left alone.
        Returns None when nothing differs (no change is written). `author` and `author_key`:
        as for `commit`.
        """
        body = {k: v for k, v in document.items() if k not in ("kind", "apiVersion")}
        meta = {
            k: v
            for k, v in dict(body.get("metadata") or {}).items()
            if k not in ("name", "revision")
        }
        body["metadata"] = meta
        try:
            target = flatten(body)
        except TypeError as e:
            raise InvalidChangeError(f"{kind}/{name}: {e}; nothing was written") from None

        def build(state: ObjectState) -> list[Op]:
            plan = plan_to(
                state,
                target,
                target_exists=True,
                manager=manager,
                rules=self.rules.get(kind, ()),
                strict=True,
            )
            if plan.skipped:
                raise ownership_error(kind, name, plan.skipped)
            return [self._check_op(o, kind, name) for o in plan.ops]

        return self._commit(
            kind, name, build, manager=manager, author=author, author_key=author_key
        )

    def delete(
        self,
        kind: str,
        name: str,
        *,
        manager: str = "user",
        author: str | None = None,
        author_key: Ed25519PrivateKey | None = None,
    ) -> Committed:
        return self.commit(
            kind, name, [Op("del", ())], manager=manager, author=author, author_key=author_key
        )

    def rollback(
        self,
        kind: str,
        name: str,
        revision: int,
        *,
        manager: str = "user",
        author: str | None = None,
        author_key: Ed25519PrivateKey | None = None,
    ) -> Rollback:
        """A *new* change restoring, of the fields `manager` may write, those of `revision`
        (`author`, `author_key`: as for `commit`)."""
        old = self.state_at(kind, name, revision)
        skipped: list[str] = []

        def build(state: ObjectState) -> list[Op]:
            plan = plan_to(
                state,
                old.fields,
                target_exists=old.exists,
                manager=manager,
                rules=self.rules.get(kind, ()),
                strict=False,
            )
            skipped.extend(str(r) for r in plan.skipped)
            return plan.ops

        committed = self._commit(
            kind, name, build, manager=manager, author=author, author_key=author_key
        )
        return Rollback(committed, skipped)

    def _check_op(self, op: Op | Sequence[Any], kind: str, name: str) -> Op:
        try:
            return check_op(op.to_wire() if isinstance(op, Op) else list(op))
        except ValueError as e:
            raise InvalidChangeError(f"{kind}/{name}: {e}; nothing was written") from None

    def _commit(
        self,
        kind: str,
        name: str,
        build: Callable[[ObjectState], list[Op]],
        *,
        manager: str,
        author: str | None = None,
        at: int | None = None,
        sig: bytes | None = None,
        author_key: Ed25519PrivateKey | None = None,
    ) -> Committed | None:
        check_id(kind, "the kind")
        check_id(name, "the object name")
        if kind not in self.rules:
            raise InvalidChangeError(
                f"{kind}/{name}: unknown kind {kind!r}; known kinds are "
                f"{', '.join(sorted(self.rules))}; nothing was written"
            )
        author = author or self.node_id
        entry = self.registry.get(author)
        if entry is None or not entry.may_act_as(manager):
            raise NotAuthorizedError(
                f"{kind}/{name}: {author} may not write as manager {manager!r} (it may act as "
                f"{', '.join(entry.managers) if entry else 'nothing: its key is unknown'}); "
                "nothing was written"
            )
        if author_key is not None:
            self._check_author_key(
                kind, name, entry, author_key, signed=sig is not None or at is not None
            )
        elif author != self.node_id and (at is None or sig is None):
            raise NotAuthorizedError(
                f"{kind}/{name}: an edit by {author} needs its signature and signing time "
                "(or its key); nothing was written"
            )
        events: list[ChangeApplied] = []
        with self._write() as txn:
            okey = object_key(kind, name)
            state = self._state_to_write(txn, okey, kind, name)
            ops = build(state)
            if not ops:
                return None
            if not state.exists and not any(o.op == "new" for o in ops):
                raise NotFoundError(f"{kind}/{name} does not exist; nothing was written")
            self._load_clock(txn)
            head = txn.get(self.node_id.encode(), db=self._heads)
            seq, prev = cbor2.loads(head) if head else (0, ZERO_DIGEST)
            physical = self._clock_ms()
            hlc = self.clock.now(physical_ms=physical)
            if author_key is not None:  # the author signs now, on this node's clock
                at = physical
                sig = author_key.sign(
                    author_content(
                        author=author, manager=manager, kind=kind, name=name, ops=ops, at=at
                    )
                )
            change = make_change(
                signer=self._key,
                origin=self.node_id,
                seq=seq + 1,
                prev=prev,
                kind=kind,
                name=name,
                hlc=hlc,
                author=author,
                manager=manager,
                ops=ops,
                seen=seen_for(state, ops),
                at=at,
                author_sig=sig,
            )
            if author != self.node_id:
                try:
                    verify_author(change, entry.verifier)
                except SignatureError as e:
                    raise NotAuthorizedError(str(e)) from None
                self.clock.check(Hlc(at or 0, 0), physical_ms=self._clock_ms(), what="the edit")
            # The fold decides ownership exactly as it will on every peer; a refusal here
            # raises, and the transaction (and the state copy it changed) is dropped.
            entry_h = apply_change(state, change, self.rules[kind])
            if entry_h.refused:
                raise ownership_error(
                    kind, name, [Refusal(p, owner, manager) for p, owner in entry_h.refused]
                )
            self._store_new(txn, [[change]])
            txn.put(
                history_key(object_key(kind, name) + b"\0", change),
                entry_h.encode(),
                db=self._history,
            )
            txn.put(okey, state.encode(), db=self._objects)
            self._save_clock(txn)
            events.append(ChangeApplied(change.id, kind, name, state.revision, local=True))
        self._publish(events)
        return Committed(change.id, kind, name, state.revision, change.hlc)

    def _check_author_key(
        self,
        kind: str,
        name: str,
        entry: KeyEntry,
        key: Ed25519PrivateKey,
        *,
        signed: bool,
    ) -> None:
        """Refuse an `author_key` this write cannot use: with a signature too, for this node
        itself, or not the key registered for the author."""
        author = entry.key_id
        if signed:
            raise InvalidChangeError(
                f"{kind}/{name}: the edit by {author} carries its signature and also its key; "
                "give one of them; nothing was written"
            )
        if author == self.node_id:
            raise InvalidChangeError(
                f"{kind}/{name}: author_key is for an author other than this node "
                f"({self.node_id} signs its own changes); nothing was written"
            )
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if public != entry.public_key:
            raise NotAuthorizedError(
                f"{kind}/{name}: the key given for author {author} is {public.hex()[:16]}…, "
                f"expected the key registered for {author}, {entry.public_key.hex()[:16]}…; "
                "nothing was written"
            )

    def _store_new(self, txn: Any, runs: Sequence[Sequence[Change]]) -> None:
        """Append origins' contiguous runs (or a single change) to the log and their heads."""
        items = [entry for run in runs for entry in log_entries(run)]
        added = txn.cursor(db=self._log).putmulti(items, overwrite=False)[1]
        if added != len(items):
            where = ", ".join(f"{run[0].id}..{run[-1].seq}" for run in runs)
            raise LocalStoreError(
                f"{len(items) - added} of the changes {where} were already in the log, beyond "
                "their origins' heads: store damaged"
            )
        for run in runs:
            last = run[-1]
            txn.put(last.origin.encode(), cbor2.dumps([last.seq, last.digest]), db=self._heads)

    # --- remote changes ----------------------------------------------------------------------

    def apply_remote(self, envelopes: Iterable[bytes]) -> Applied:
        """Apply changes received from peers: all of them, or (raising) none.

        Idempotent: changes already held are skipped. Refused, writing nothing, with a
        `RemoteStoreError` naming the change and the reason: malformed bytes, a gap in an
        origin's sequence, a broken hash link, a fork, a bad signature, an unknown key, a
        manager the author may not act as, a timestamp beyond the drift bound.
        """
        with collector_paused():
            decoded = [decode_change(e) for e in envelopes]
            outcome = self.apply_groups([decoded])[0]
            # Free the batch while the collector is still paused: what survives the pause is
            # what the collector has to look at once it runs again.
            del decoded
        if isinstance(outcome, RemoteStoreError):
            raise outcome
        return outcome

    def apply_groups(self, groups: Sequence[Sequence[Change]]) -> list[Applied | RemoteStoreError]:
        """Apply groups of changes already decoded (by `decode_change`), each as one
        `apply_remote` call would, but all in one transaction: one commit and one sync to disk
        for all of them. Every check but the decoding runs. A group a peer's fault refuses
        gets its `RemoteStoreError` in the result and writes nothing; the other groups are
        applied all the same. Any other error writes nothing of any group.

        The groups' changes are folded together, each object once: groups of different
        origins that interleave in time (gossip's usual batch) would otherwise make each group
        after the first fold its objects again from their first change."""
        outcomes: list[Applied | RemoteStoreError] = []
        events: list[ChangeApplied] = []
        with collector_paused(), self._write() as txn:
            self._load_clock(txn)
            now = self._clock_ms()
            checked: list[tuple[int, Batch]] = []
            for group in groups:
                try:
                    batch = check_batch(
                        group,
                        head=lambda o: decode_head(txn.get(o.encode(), db=self._heads)),
                        stored_digest=lambda o, s: _digest(txn.get(log_key(o, s), db=self._log)),
                        registry=self.registry,
                        clock=self.clock,
                        now_ms=now,
                    )
                except RemoteStoreError as refusal:
                    outcomes.append(refusal)  # refused before it wrote anything
                    continue
                # Logged now (heads move on), folded below: a later group of the same origin
                # is checked against this one.
                self._store_new(txn, batch.runs)
                checked.append((len(outcomes), batch))
                outcomes.append(Applied())
            if checked:
                self._fold_batches(txn, now, outcomes, checked, events)
        self._publish(events)
        return outcomes

    def _fold_batches(
        self,
        txn: Any,
        now: int,
        outcomes: list[Applied | RemoteStoreError],
        checked: Sequence[tuple[int, Batch]],
        events: list[ChangeApplied],
    ) -> None:
        """Fold checked batches into their objects, each object once, and fill in each
        batch's `Applied` (at its index in `outcomes`)."""
        if len(checked) == 1:
            objects = checked[0][1].objects
        else:
            objects = {}
            for _, batch in checked:
                for target, incoming in batch.objects.items():
                    objects.setdefault(target, []).extend(incoming)
        history: list[tuple[bytes, bytes]] = []
        states: list[tuple[bytes, bytes]] = []
        refolded: dict[tuple[str, str], int] = {}
        revision: dict[tuple[str, str], int] = {}
        for target, incoming in objects.items():
            kind, name = target
            okey = object_key(kind, name)
            state, again = self._fold_in(txn, okey, kind, name, incoming, history=history)
            states.append((okey, state.encode()))
            refolded[target] = again
            revision[target] = state.revision
        txn.cursor(db=self._history).putmulti(history)
        txn.cursor(db=self._objects).putmulti(states)
        newest: Hlc | None = None
        merged = len(checked) > 1  # then each batch's own lists were not sorted by the fold
        for index, batch in checked:
            ids: list[ChangeId] = []
            again = 0
            for target, incoming in batch.objects.items():
                kind, name = target
                rev = revision[target]
                folded = [c.id for c in (sorted(incoming, key=_SORT_KEY) if merged else incoming)]
                ids += folded
                again += refolded[target]
                events += [_new(ChangeApplied, (cid, kind, name, rev, False)) for cid in folded]
            outcomes[index] = Applied(ids, batch.duplicates, again)
            if batch.newest is not None and (newest is None or batch.newest > newest):
                newest = batch.newest
        if newest is not None:
            self.clock.observe(newest, physical_ms=now)
            self._save_clock(txn)

    def _fold_in(
        self,
        txn: Any,
        okey: bytes,
        kind: str,
        name: str,
        incoming: list[Change],
        *,
        history: list[tuple[bytes, bytes]],
    ) -> tuple[ObjectState, int]:
        """Fold new changes into an object, adding their history entries to `history`; also
        says (1) if it had to fold from the start."""
        rules = self.rules.get(kind, ())
        state = self._state_to_write(txn, okey, kind, name)
        incoming.sort(key=_SORT_KEY)
        again = 0
        if state.last_key is not None and incoming[0].sort_key < state.last_key:
            # A late change older than what is folded: fold the whole object again.
            old = [self._change(txn, e.change) for e in self._entries(txn, kind, name)]
            state = ObjectState(kind, name)
            self._cache.keep(okey, state)
            incoming = sorted([*old, *incoming], key=_SORT_KEY)
            again = 1
        fold_records(state, incoming, rules, okey + b"\0", history)
        return state, again

    # --- reads -------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object as users see it, or None if it does not exist (or was deleted)."""
        with self._env.begin() as txn:
            state = self._state(txn, kind, name)
        return view(state) if state is not None and state.exists else None

    def get_state(self, kind: str, name: str) -> ObjectState | None:
        """The folded state, deleted objects included."""
        with self._env.begin() as txn:
            return self._state(txn, kind, name)

    def list_objects(self, kind: str) -> list[dict[str, Any]]:
        prefix = f"{kind}\0".encode()
        out: list[dict[str, Any]] = []
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._objects)
            if cur.set_range(prefix):
                for k, v in cur:
                    if not k.startswith(prefix):
                        break
                    state = ObjectState.decode(v)
                    if state.exists:
                        out.append(view(state))
        return out

    def history(self, kind: str, name: str) -> list[Revision]:
        """Every revision of an object, oldest first."""
        with self._env.begin() as txn, collector_paused():
            records = history_records(self._history_values(txn, kind, name))
            if not records:
                raise NotFoundError(f"{kind}/{name} has no history: no such object")
            return revisions(records)

    def state_at(self, kind: str, name: str, revision: int) -> ObjectState:
        """The object as it was right after `revision` (1 = its first change)."""
        with self._env.begin() as txn:
            entries = self._entries(txn, kind, name)
            if not entries:
                raise NotFoundError(f"{kind}/{name} has no history: no such object")
            if not 1 <= revision <= len(entries):
                raise NotFoundError(
                    f"{kind}/{name} has revisions 1..{len(entries)}, not {revision}"
                )
            state = ObjectState(kind, name)
            rules = self.rules.get(kind, ())
            for e in entries[:revision]:
                apply_change(state, self._change(txn, e.change), rules)
        return state

    def diff(self, kind: str, name: str, a: int, b: int | None = None) -> list[FieldDiff]:
        """Field-level differences from revision `a` to revision `b` (default: current)."""
        before = self.state_at(kind, name, a)
        if b is None:
            after = self.get_state(kind, name)
            assert after is not None
        else:
            after = self.state_at(kind, name, b)
        out = [
            FieldDiff(format_path(p), x, y, what)
            for p, x, y, what in leaves_changed(before.fields, after.fields)
        ]
        if before.exists != after.exists:
            out.insert(
                0,
                FieldDiff(
                    "(object)",
                    before.exists,
                    after.exists,
                    "created" if after.exists else "deleted",
                ),
            )
        return out

    def state_digest(self) -> str:
        """SHA-256 of every object's folded state as stored, deleted ones included, in key
        order. The fold is byte-deterministic, so two stores holding the same changes have
        the same digest, and one holding anything else another; no state is decoded, so a
        convergence check can poll it without stalling the node."""
        h = hashlib.sha256()
        with self._env.begin(buffers=True) as txn:
            for k, v in txn.cursor(db=self._objects):
                h.update(len(k).to_bytes(4, "big"))
                h.update(k)
                h.update(len(v).to_bytes(4, "big"))
                h.update(v)
        return h.hexdigest()

    def version_vector(self) -> dict[str, int]:
        with self._env.begin() as txn:
            return {k.decode(): cbor2.loads(v)[0] for k, v in txn.cursor(db=self._heads)}

    def missing(self, peer: Mapping[str, int], *, max_bytes: int = CATCHUP_CHUNK_BYTES) -> Missing:
        """The changes a peer with version vector `peer` lacks, up to about `max_bytes`."""
        out: list[bytes] = []
        size = 0
        with self._env.begin() as txn:
            log = txn.cursor(db=self._log)
            for k, v in txn.cursor(db=self._heads):
                origin = k.decode()
                have = peer.get(origin, 0)
                if cbor2.loads(v)[0] <= have:
                    continue
                prefix = k + b"\0"
                if not log.set_range(log_key(origin, have + 1)):
                    continue
                for lk, env in log:
                    if not lk.startswith(prefix):
                        break
                    if size and size + len(env) > max_bytes:
                        return Missing(out, complete=False)
                    out.append(bytes(env))
                    size += len(env)
        return Missing(out, complete=True)

    def changes(self, origin: str, first: int = 1) -> list[Change]:
        """An origin's changes from seq `first` on, decoded (for tools and tests)."""
        with self._env.begin() as txn:
            out: list[Change] = []
            seq = first
            while (raw := txn.get(log_key(origin, seq), db=self._log)) is not None:
                out.append(decode_change(raw))
                seq += 1
        return out

    def watch(
        self, *, kinds: Iterable[str] | None = None, name: str | None = None, maxsize: int = 1024
    ) -> Watch:
        """Async notification of applied changes; call from the loop that will iterate it."""
        return self.watchers.add(
            kinds=set(kinds) if kinds is not None else None, name=name, maxsize=maxsize
        )

    def stat(self) -> dict[str, int]:
        info = self._env.info()
        st = self._env.stat()
        return {"map_size": info["map_size"], "used": st["psize"] * (info["last_pgno"] + 1)}


def _digest(raw: bytes | None) -> bytes | None:
    return hashlib.sha256(raw).digest() if raw is not None else None


class _Joined:
    """A write inside a batch: the batch's transaction, committed or aborted by the batch."""

    def __init__(self, txn: Any) -> None:
        self._txn = txn

    def __enter__(self) -> Any:
        return self._txn

    def __exit__(self, *exc: object) -> None:
        return None
