"""Changes: the unit of replicated state.

Theory of operation. Every write is a change made by one node, its *origin*::

    body = [1 (format), origin, seq, prev, kind, name, wall_ms, counter, author, manager,
            ops, seen, at (only when the author is not the origin)]
    envelope = [body (canonical CBOR bytes), origin_sig, author_sig | null]
    digest = sha256(envelope)

The body is a positional array, not a keyed map: it decodes faster and is smaller, and a
format version leads it, so a later version can reshape the rest. Body and envelope hold
only arrays, byte and text strings, integers of at most 64 bits, finite floats (always
8 bytes), booleans and null, in definite lengths and shortest integer forms: deterministic
CBOR that is also DAG-CBOR. Any CBOR decoder reads it; `decode_change_reference` decodes
with `libipld`'s strict DAG-CBOR decoder (Rust), three times faster than a general one on a
typical body. `decode_change` first tries the C decoder (store/_cchange.c), which reads the
common shape in one pass, four times faster again, and leaves the rest to the reference: this
is the path every received change takes. (Encoding stays with cbor2: libipld's
encoder turns byte strings that start with 0x01 into tag 42 links.)

Each origin numbers its changes 1, 2, 3 … (``seq``) and puts the digest of its previous
envelope in ``prev`` (32 zero bytes for seq 1), so an origin's changes form a hash chain. The
origin signs the body with Ed25519. Because the digest covers the whole envelope, signatures
included, the signature on the newest change of a contiguous run vouches for every change
before it: a receiver checks N hash links and *one* signature.

When the author is not the origin (an operator's edit accepted by a node), the author also
signs ``author_content`` (author, manager, target, ops, ``at``: when the author signed); a
node accepts such a change only within the clock drift bound of ``at``, which bounds replay.

``ops`` are ``["set", path, leaf]``, ``["del", path]`` (the root path ``[]`` deletes the
object), ``["new", []]`` (creates or re-creates the object), ``["share", path, [managers]]``
and ``["own", path, manager]`` (grant write access to, or transfer ownership of, the fields
under ``path``). ``seen`` records, for each field the change overwrites, which change had last
written it when the author looked: the fold uses it to tell an informed overwrite from a
concurrent one (a conflict).

Decoding never trusts its input: anything that is not exactly this shape raises
`MalformedChangeError`, a peer's fault. That includes an envelope that decodes to a valid
body and signatures but is not their one encoding: its digest would differ from the one the
origin's next change links to, so a relay could otherwise wedge that origin's chain.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NewType

import cbor2
import libipld
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from store._errors import MalformedChangeError, SignatureError
from store._hlc import MAX_COUNTER, Hlc
from store._path import KNOWN_PATHS, MIN_INT, Path, check_leaf, check_path, format_path, text

NodeId = NewType("NodeId", str)
FORMAT_VERSION = 1
ZERO_DIGEST = b"\x00" * 32
MAX_CHANGE_BYTES = 1 << 20
MAX_OPS = 10_000
OP_NAMES = frozenset({"set", "del", "new", "share", "own"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-@/]{0,252}$")


class ChangeId(NamedTuple):
    """A change's id: its origin and its number in that origin's chain (a tuple, so hashing and
    comparing run at C speed: the fold does both for every field it touches)."""

    origin: str
    seq: int

    def __str__(self) -> str:
        return f"{self.origin}:{self.seq}"


class Op(NamedTuple):
    """One operation of a change: set, del, new, share or own (see the module docstring)."""

    op: str
    path: Path
    arg: Any = None

    def to_wire(self) -> list[Any]:
        if self.op in ("del", "new"):
            return [self.op, list(self.path)]
        if self.op == "share":
            return [self.op, list(self.path), list(self.arg)]
        return [self.op, list(self.path), self.arg]

    def __str__(self) -> str:
        if self.op in ("del", "new"):
            return f"{self.op} {format_path(self.path)}"
        return f"{self.op} {format_path(self.path)} {self.arg!r}"


Seen = tuple[Path, ChangeId]
SortKey = tuple[int, int, str, int]


@dataclass(slots=True)
class Change:
    """One change, decoded. Treat it as immutable (it is not frozen only because building
    frozen objects costs several times more, and a node builds one per change it receives)."""

    origin: str
    seq: int
    prev: bytes
    kind: str
    name: str
    hlc: Hlc
    author: str
    manager: str
    ops: tuple[Op, ...]
    seen: dict[Path, ChangeId]
    """For each field the change overwrites, the change its author saw as its writer (the last
    entry of a path the body lists twice)."""
    at: int | None
    body: bytes
    origin_sig: bytes
    author_sig: bytes | None
    envelope: bytes
    digest: bytes
    id: ChangeId
    sort_key: SortKey
    """Fold order: (hlc, origin), then seq (an origin's hlc never repeats)."""

    @property
    def target(self) -> str:
        return f"{self.kind}/{self.name}"


# Ids, kinds, names and managers repeat endlessly; each distinct valid one is checked once
# and then found by a lookup that also gives its first copy, so the changes of a batch and
# the states they fold into share one string per id instead of holding one each (the memos
# are bounded: cleared when they grow too large).
_GOOD_IDS: dict[str, str] = {}
_GOOD_MANAGERS: dict[str, str] = {}
_MEMO_LIMIT = 100_000


def check_id(value: object, what: str) -> str:
    """`value` if it is a valid id (its first copy seen), else ValueError."""
    good: str | None = _GOOD_IDS.get(value)  # type: ignore[call-overload]
    if good is not None:
        return good
    if not isinstance(value, str) or _ID.match(value) is None:
        raise ValueError(f"{what} must be 1-253 characters of [A-Za-z0-9._-@/], got {value!r}")
    if len(_GOOD_IDS) > _MEMO_LIMIT:
        _GOOD_IDS.clear()
    _GOOD_IDS[value] = value
    return value


def check_manager(value: object) -> str:
    """`value` if it is a valid manager (its first copy seen), else ValueError."""
    good: str | None = _GOOD_MANAGERS.get(value)  # type: ignore[call-overload]
    if good is not None:
        return good
    if not isinstance(value, str) or not value or len(value) > 253:
        raise ValueError(f"a manager is a non-empty string of ≤253 chars, got {value!r}")
    if not value.isascii():
        text(value, "a manager")
    if len(_GOOD_MANAGERS) > _MEMO_LIMIT:
        _GOOD_MANAGERS.clear()
    _GOOD_MANAGERS[value] = value
    return value


def check_op(raw: object) -> Op:
    if type(raw) is list and len(raw) == 3 and raw[0] == "set":  # the common case, fast
        arg = raw[2]
        if arg is not None and (type(arg) is not str or not arg.isascii()):
            arg = check_leaf(arg)
        return Op("set", check_path(raw[1]), arg)
    if not isinstance(raw, list | tuple) or not 2 <= len(raw) <= 3:
        raise ValueError(f"an op is [name, path] or [name, path, arg], got {raw!r}")
    name = raw[0]
    if name not in OP_NAMES:
        raise ValueError(f"unknown op {name!r}; known ops are {sorted(OP_NAMES)}")
    if name in ("del", "new"):
        if len(raw) != 2:
            raise ValueError(f"op {name!r} takes no argument")
        path = check_path(raw[1], allow_root=True)
        if name == "new" and path:
            raise ValueError("op 'new' applies to the object root, []")
        return Op(name, path)
    if len(raw) != 3:
        raise ValueError(f"op {name!r} needs an argument")
    path = check_path(raw[1], allow_root=name != "set")
    arg = raw[2]
    if name == "set":
        arg = check_leaf(arg)
    elif name == "share":
        if not isinstance(arg, list | tuple):
            raise ValueError(f"'share' takes a list of managers, got {arg!r}")
        arg = tuple(sorted({check_manager(m) for m in arg}))
    else:
        arg = check_manager(arg)
    return Op(name, path, arg)


def author_content(
    *, author: str, manager: str, kind: str, name: str, ops: Sequence[Op], at: int
) -> bytes:
    """The bytes an author (e.g. an operator) signs for an edit a node will commit."""
    return cbor2.dumps(
        {"a": author, "m": manager, "t": [kind, name], "ops": [o.to_wire() for o in ops], "at": at},
        canonical=True,
    )


def make_change(
    *,
    signer: Ed25519PrivateKey,
    origin: str,
    seq: int,
    prev: bytes,
    kind: str,
    name: str,
    hlc: Hlc,
    author: str,
    manager: str,
    ops: Sequence[Op],
    seen: Sequence[Seen] = (),
    at: int | None = None,
    author_sig: bytes | None = None,
) -> Change:
    """Encode and sign a change made by this node (`origin`)."""
    fields: list[Any] = [
        FORMAT_VERSION,
        origin,
        seq,
        prev,
        kind,
        name,
        hlc.wall_ms,
        hlc.counter,
        author,
        manager,
        [o.to_wire() for o in ops],
        [[list(p), c.origin, c.seq] for p, c in seen],
    ]
    if author != origin:
        if at is None or author_sig is None:
            raise ValueError("a change authored by someone else needs `at` and `author_sig`")
        fields.append(at)
    else:
        at = None
    body = cbor2.dumps(fields)  # no maps, floats as 8 bytes: see the module docstring
    sig = signer.sign(body)
    envelope = cbor2.dumps([body, sig, author_sig if author != origin else None])
    return Change(
        origin=origin,
        seq=seq,
        prev=prev,
        kind=kind,
        name=name,
        hlc=hlc,
        author=author,
        manager=manager,
        ops=tuple(ops),
        seen=dict(seen),
        at=at,
        body=body,
        origin_sig=sig,
        author_sig=author_sig if author != origin else None,
        envelope=envelope,
        digest=hashlib.sha256(envelope).digest(),
        id=ChangeId(origin, seq),
        sort_key=(hlc.wall_ms, hlc.counter, origin, seq),
    )


def decode_change(envelope: object) -> Change:
    """Bytes from anywhere → a well-formed `Change`, or `MalformedChangeError`."""
    if _native is not None and type(envelope) is bytes:
        change = _native(envelope)
        if change is not None:
            return change
    return decode_change_reference(envelope)


def decode_change_reference(envelope: object) -> Change:
    """`decode_change` in Python alone: the definition of what a change is. `decode_change`
    first tries the C decoder (store/_cchange.c), which reads the common shape in one pass
    and leaves everything else, including every refusal, to this."""
    if not isinstance(envelope, bytes | bytearray | memoryview):
        raise MalformedChangeError(f"a change is CBOR bytes, got {type(envelope).__name__}")
    envelope = bytes(envelope)
    if len(envelope) > MAX_CHANGE_BYTES:
        raise MalformedChangeError(
            f"a change is at most {MAX_CHANGE_BYTES} bytes, got {len(envelope)}"
        )
    try:
        outer = libipld.decode_dag_cbor(envelope)
        if not (isinstance(outer, list) and len(outer) == 3):
            raise ValueError("the envelope is [body, origin_sig, author_sig]")
        body, sig, asig = outer
        if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
            raise ValueError("the envelope holds the body bytes and a 64-byte signature")
        if asig is not None and (not isinstance(asig, bytes) or len(asig) != 64):
            raise ValueError("the author signature is 64 bytes or null")
        if envelope != _wrap(body, sig, asig):
            # The digest, and so the next change's `prev`, is over these very bytes: another
            # encoding of the same signed body would be stored here and break the chain.
            raise ValueError("the envelope is not in its one encoding (shortest lengths)")
        m = libipld.decode_dag_cbor(body)
        return _from_body(m, body=body, sig=sig, asig=asig, envelope=envelope)
    except MalformedChangeError:
        raise
    except Exception as e:  # any decoding failure of untrusted bytes is the peer's fault
        raise MalformedChangeError(
            f"refused a malformed change ({type(e).__name__}: {e}); nothing was written"
        ) from None


def _wrap(body: bytes, sig: bytes, asig: bytes | None) -> bytes:
    """The envelope's bytes as `make_change` writes them: cbor2's shortest forms."""
    n = len(body)
    if n < 24:
        head = bytes((0x83, 0x40 | n))
    elif n < 0x100:
        head = bytes((0x83, 0x58, n))
    elif n < 0x10000:
        head = b"\x83\x59" + n.to_bytes(2, "big")
    else:
        head = b"\x83\x5a" + n.to_bytes(4, "big")
    tail = b"\xf6" if asig is None else b"\x58\x40" + asig
    return b"".join((head, body, b"\x58\x40", sig, tail))


_SCALARS = frozenset({str, int, float, bool})
_new = tuple.__new__  # builds a NamedTuple from checked values without its Python-level __new__
_BODY_LEN = 12  # 13 with `at`


def _from_body(
    m: object, *, body: bytes, sig: bytes, asig: bytes | None, envelope: bytes
) -> Change:
    # One pass, cheapest checks first: this runs for every change a node receives.
    if type(m) is not list:
        raise ValueError(f"the body is an array of {_BODY_LEN} or {_BODY_LEN + 1} items")
    if len(m) == _BODY_LEN:
        v, origin, seq, prev, kind, name, wall, counter, author, manager, raw_ops, raw_seen = m
        at = None
    elif len(m) == _BODY_LEN + 1:
        v, origin, seq, prev, kind, name, wall, counter, author, manager, raw_ops, raw_seen, at = m
    else:
        raise ValueError(f"the body is an array of {_BODY_LEN} or {_BODY_LEN + 1} items")
    if v != FORMAT_VERSION:
        raise ValueError(f"format version {v!r} is not {FORMAT_VERSION}")
    good = _GOOD_IDS
    origin = good.get(origin) or check_id(origin, "the origin")
    if type(seq) is not int or seq < 1:
        raise ValueError(f"seq is an integer ≥ 1, got {seq!r}")
    if type(prev) is not bytes or len(prev) != 32:
        raise ValueError("prev is a 32-byte digest")
    kind = good.get(kind) or check_id(kind, "the kind")
    name = good.get(name) or check_id(name, "the object name")
    if not (
        type(wall) is int
        and type(counter) is int
        and 0 <= wall < 2**63
        and 0 <= counter <= MAX_COUNTER
    ):
        raise ValueError(f"hlc is wall_ms, counter: integers, got {wall!r}, {counter!r}")
    author = good.get(author) or check_id(author, "the author")
    manager = _GOOD_MANAGERS.get(manager) or check_manager(manager)
    if type(raw_ops) is not list or not 1 <= len(raw_ops) <= MAX_OPS:
        raise ValueError(f"ops is a list of 1..{MAX_OPS} operations")
    paths = KNOWN_PATHS
    ops_list: list[Op] = []
    for raw in raw_ops:
        if type(raw) is list and len(raw) == 3 and raw[0] == "set" and type(raw[1]) is list:
            # The common case, inline: a set of a scalar at a path seen before.
            path = paths.get(tuple(raw[1])) or check_path(raw[1])
            if not path:
                raise ValueError("op 'set' needs a field path, got the object root")
            arg = raw[2]
            if arg is not None and type(arg) not in _SCALARS:
                arg = check_leaf(arg)
            elif type(arg) is int and arg < MIN_INT:  # decoded, other scalars are in range
                check_leaf(arg)  # raises
            ops_list.append(_new(Op, ("set", path, arg)))
        else:
            ops_list.append(check_op(raw))
    if type(raw_seen) is not list or len(raw_seen) > 4 * MAX_OPS:
        raise ValueError("seen is a list of [path, origin, seq]")
    seen: dict[Path, ChangeId] = {}
    for entry in raw_seen:
        if not (
            type(entry) is list
            and len(entry) == 3
            and type(entry[0]) is list
            and type(entry[2]) is int
            and entry[2] >= 1
        ):
            raise ValueError(f"a seen entry is [path, origin, seq], got {entry!r}")
        path = paths.get(tuple(entry[0])) or check_path(entry[0], allow_root=True)
        writer = good.get(entry[1]) or check_id(entry[1], "origin")
        seen[path] = _new(ChangeId, (writer, entry[2]))
    if author is origin or author == origin:
        if at is not None or asig is not None:
            raise ValueError("a change authored by its origin carries no `at` nor author signature")
    elif type(at) is not int or asig is None:
        raise ValueError("a change authored by someone else needs `at` and an author signature")
    return Change(
        origin,
        seq,
        prev,
        kind,
        name,
        _new(Hlc, (wall, counter)),
        author,
        manager,
        tuple(ops_list),
        seen,
        at,
        body,
        sig,
        asig,
        envelope,
        hashlib.sha256(envelope).digest(),
        _new(ChangeId, (origin, seq)),
        (wall, counter, origin, seq),
    )


def _load_native() -> Callable[[bytes], Change | None] | None:
    """The C decoder, handed this module's types and memos; None where it was not built (the
    install found no C compiler)."""
    try:
        import store._cchange as native  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return None
    native.configure(
        Change, Op, ChangeId, Hlc, _GOOD_IDS, _GOOD_MANAGERS, KNOWN_PATHS,
        MAX_CHANGE_BYTES, MAX_OPS, MAX_COUNTER,
    )  # fmt: skip
    decode: Callable[[bytes], Change | None] = native.decode
    return decode


_BUILT = _load_native()
_native = _BUILT
NATIVE_DECODER = _BUILT is not None
"""Whether the C decoder was built (`decode_change` uses it unless `use_native(False)`)."""


def use_native(on: bool) -> bool:
    """Let `decode_change` use the C decoder, if it was built (the default), or not (the
    Python reference alone, for comparing the two); returns whether it now does."""
    global _native  # noqa: PLW0603
    _native = _BUILT if on else None
    return _native is not None


def verify_origin(change: Change, key: Ed25519PublicKey) -> None:
    try:
        key.verify(change.origin_sig, change.body)
    except InvalidSignature:
        raise SignatureError(
            f"change {change.id} ({change.target}): the origin signature does not verify "
            f"against {change.origin}'s registered key; nothing was written"
        ) from None


def verify_author(change: Change, key: Ed25519PublicKey) -> None:
    assert change.at is not None and change.author_sig is not None
    content = author_content(
        author=change.author,
        manager=change.manager,
        kind=change.kind,
        name=change.name,
        ops=change.ops,
        at=change.at,
    )
    try:
        key.verify(change.author_sig, content)
    except InvalidSignature:
        raise SignatureError(
            f"change {change.id} ({change.target}): the signature of its author "
            f"{change.author} does not verify; nothing was written"
        ) from None
