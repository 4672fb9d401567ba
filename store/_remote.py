"""Checking a batch of changes from peers before any of it is stored.

Theory of operation. Changes are grouped by origin. Within an origin, a change whose seq the
store already holds must be byte-identical to the stored one (else the origin forked its chain:
refused); the rest must continue the stored chain without a gap, each ``prev`` equal to the
digest of the change before it. Because a digest covers the whole envelope, checking these
links and then the origin's signature on the *newest* change of the run authenticates the run:
N hashes and one Ed25519 verification for N changes. Per change, the timestamp must be within
the drift bound and the author must be allowed to act as the change's manager (with its own
signature when it is not the origin).

Ownership of fields is not checked here: it can depend on state, so the fold decides it, the
same way on every node. Reads of stored heads and digests come in as callables; the core does
no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from store._change import Change, verify_author, verify_origin
from store._errors import ChainError, ClockDriftError, ForbiddenManagerError, UnknownKeyError
from store._hlc import Hlc, HybridClock
from store._keys import KeyEntry, KeyRegistry


@dataclass(slots=True)
class Batch:
    runs: list[list[Change]] = field(default_factory=list)
    """The new changes of each origin, in seq order, origins in order."""
    objects: dict[tuple[str, str], list[Change]] = field(default_factory=dict)
    """The same changes by object (kind, name), in the order objects first appear in `runs`."""
    duplicates: int = 0
    newest: Hlc | None = None


def check_batch(
    changes: Sequence[Change],
    *,
    head: Callable[[str], tuple[int, bytes]],
    stored_digest: Callable[[str, int], bytes | None],
    registry: KeyRegistry,
    clock: HybridClock,
    now_ms: int,
) -> Batch:
    """The new changes of `changes`, checked, as per-origin runs; raises on the first fault."""
    batch = Batch()
    groups: dict[str, dict[int, Change]] = {}
    for c in changes:
        group = groups.get(c.origin)
        if group is None:
            group = groups[c.origin] = {}
        same = group.setdefault(c.seq, c)
        if same is not c:
            if same.digest != c.digest:
                raise _fork(c)
            batch.duplicates += 1
    drift = clock.config.max_drift_ms
    latest = now_ms + drift
    objects = batch.objects
    newest = batch.newest
    for origin in sorted(groups):
        entry = registry.get(origin)
        if entry is None:
            raise UnknownKeyError(
                f"changes from origin {origin!r}, whose key is not registered on this node: "
                "refused, nothing was written"
            )
        head_seq, prev = head(origin)
        group = groups[origin]
        new: list[Change] = []
        expected = head_seq + 1
        for seq in sorted(group):  # the held ones first: a fork is named before a gap
            c = group[seq]
            if seq <= head_seq:
                if stored_digest(origin, seq) != c.digest:
                    raise _fork(c)
                batch.duplicates += 1
                continue
            if seq != expected:
                raise ChainError(
                    f"gap in the changes of {origin}: this node holds up to seq {expected - 1} "
                    f"and got seq {seq}; send seq {expected}..{seq - 1} first; nothing "
                    "was written"
                )
            if c.prev != prev:
                raise ChainError(
                    f"change {c.id} does not link to {origin}'s change {seq - 1} (its prev "
                    f"digest is {c.prev.hex()[:16]}…, expected {prev.hex()[:16]}…): the chain "
                    "is broken or tampered with; nothing was written"
                )
            prev = c.digest
            expected += 1
            new.append(c)
        if not new:
            continue
        verify_origin(new[-1], entry.verifier)
        for c in new:
            hlc = c.hlc
            if hlc.wall_ms > latest:  # the message is built only for a refusal
                clock.check(hlc, physical_ms=now_ms, what=f"change {c.id} ({c.target})")
            author = c.author
            actor = entry if author == origin else _author(c, registry, drift)
            if c.manager not in actor.managers:
                raise ForbiddenManagerError(
                    f"change {c.id} ({c.target}) writes as manager {c.manager!r}, but "
                    f"{actor.key_id} may act only as {', '.join(actor.managers) or 'nothing'}; "
                    "nothing was written"
                )
            if newest is None or hlc > newest:
                newest = hlc
            target = (c.kind, c.name)
            same_object = objects.get(target)
            if same_object is None:
                objects[target] = [c]
            else:
                same_object.append(c)
        batch.runs.append(new)
    batch.newest = newest
    return batch


def _author(c: Change, registry: KeyRegistry, drift: int) -> KeyEntry:
    """The key entry of a change's author other than its origin, its signature checked."""
    author = registry.get(c.author)
    if author is None:
        raise UnknownKeyError(
            f"change {c.id} ({c.target}) is authored by {c.author!r}, whose key is "
            "not registered on this node; nothing was written"
        )
    verify_author(c, author.verifier)
    assert c.at is not None
    if abs(c.hlc.wall_ms - c.at) > drift:
        raise ClockDriftError(
            f"change {c.id} ({c.target}) was signed by {c.author} at {c.at} ms but "
            f"committed at {c.hlc.wall_ms} ms, further apart than the drift bound "
            f"of {drift} ms (a replayed edit?); nothing was written"
        )
    return author


def _fork(c: Change) -> ChainError:
    return ChainError(
        f"{c.origin} has two different changes numbered {c.seq} ({c.target}): its chain "
        "forked (a restored backup or a stolen key); refused, nothing was written"
    )
