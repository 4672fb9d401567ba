"""The CLI's verbs against a node's own store, until the daemon and its socket API land.

A node keeps its state in one directory (``/var/lib/edgenode`` by default): ``node.key``, its
Ed25519 key, ``store``, its versioned store and, once it belongs to a cluster, ``cluster/``
(see `gossip.identity`). `open_store` opens the store with a key registry to match:

- a lone node (no ``cluster/cluster.json``): its key acts as the node, as placement and as
  ``user`` (whoever reaches its root-only socket);
- a cluster node: its credentials are checked against the trust root first; its key acts only
  as ``node:<name>`` and ``placement``, and its local operator's credential (``cluster/
  operator.cred``) is registered to act as ``user``. User writes are then authored by that
  operator (`user_author`): signed with ``cluster/operator.key``, so peers that trust the
  operator, and not the node, for ``user`` accept them.

- Apply: `read_manifests` validates every file first; `plan` reads what is stored and, through
  `edgenode._confirm`, works out which relaxations each change adds and the document to write
  (with its ``edgenode.io/insecure`` annotation); the CLI checks confirmations for every object
  before `write` writes any.
- Describe: `describe` gathers an object, its relaxations with the revision that introduced
  each, the sandbox defaults still in force, and for a Node what its sandbox has and lacks.
"""

from __future__ import annotations

import difflib
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import lmdb
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edgenode._confirm import (
    ANNOTATION_PATH,
    INSECURE_ANNOTATION,
    InsecureChange,
    Marking,
    Relaxation,
    annotated,
    annotation_names,
    insecure_change,
    introduced,
    stored_relaxations,
)
from edgenode._ownership import KIND_RULES
from edgenode.objects import KINDS, FieldProblem, Manifest, ManifestError, duplicate_problems
from edgenode.objects._deployment import OWNER_ANNOTATION
from edgenode.objects.manifest import load_manifests
from gossip.identity import IdentityError, LocalIdentity, local_identity, registry_entry
from sandbox._relax import RELAXATIONS
from store import Store, format_path

KEY_FILE = "node.key"
STORE_DIR = "store"


class LocalError(Exception):
    """Base of the errors of the CLI's local verbs; each says that nothing was written."""


class StateDirError(LocalError):
    """The node's state directory or store cannot be used (missing, unreadable, another
    node's); nothing was written."""


class UnknownObjectError(LocalError):
    """The object named does not exist (or the kind is unknown); nothing was changed."""


# -- the node's state directory ----------------------------------------------------------------


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The node's Ed25519 key, created on first use; readable by root only."""
    if path.exists():
        return Ed25519PrivateKey.from_private_bytes(path.read_bytes())
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return key


def default_node_name() -> str:
    name = socket.gethostname().split(".")[0].lower()
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in name).strip("-") or "node"


class Author(NamedTuple):
    """Who writes as ``user`` on a cluster node: the local operator's name and key."""

    name: str
    key: Ed25519PrivateKey


def _identity(state_dir: Path, node: str | None, now: int | None) -> LocalIdentity | None:
    try:
        return local_identity(state_dir, node, now=int(time.time()) if now is None else now)
    except IdentityError as exc:
        raise StateDirError(
            f"{state_dir}: this node's cluster credentials cannot be used: {exc}. Nothing was "
            "changed."
        ) from None
    except PermissionError as exc:
        raise StateDirError(
            f"{state_dir}: permission denied ({exc.filename}); run as the node's user (root), "
            "or pass --state-dir; nothing was written."
        ) from None


def user_author(state_dir: Path, *, now: int | None = None) -> Author | None:
    """Who authors this node's ``user`` writes: its local operator on a cluster node (checked
    as `open_store` checks it; `StateDirError` if it cannot be used), None on a lone node
    (the node itself writes as ``user``)."""
    identity = _identity(state_dir, None, now)
    if identity is None:
        return None
    return Author(identity.operator.subject, identity.operator_key)


def store_author(store: Store) -> Author | None:
    """`user_author` of the state directory `store` lives in (None: a store elsewhere)."""
    if store.path.name != STORE_DIR:
        return None
    return user_author(store.path.parent)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def open_store(
    state_dir: Path,
    node: str | None = None,
    *,
    create: bool = True,
    now: int | None = None,
    clock_ms: Callable[[], int] | None = None,
) -> Store:
    """The store of the node whose state is in `state_dir` (its name: `node`, else its node
    credential's subject on a cluster node, else the host name). With `create`, a missing
    directory, key and store are made; without, they must exist (a read-only verb does not
    make a node). Raises `StateDirError` when the directory, key, store or cluster
    credentials (checked at `now`, default the wall clock) cannot be used, and the store's own
    `LocalStoreError` when the store refuses to open (another node's, another format).
    `clock_ms`: the wall clock (Unix milliseconds) the store stamps changes with and bounds
    peers' timestamps by; default the machine's."""
    key_path, store_path = state_dir / KEY_FILE, state_dir / STORE_DIR
    if not create and not (key_path.is_file() and store_path.is_dir()):
        raise StateDirError(
            f"{state_dir}: expected a node's state directory (with {KEY_FILE} and "
            f"{STORE_DIR}/), got {'a directory without them' if state_dir.is_dir() else 'nothing'}"
            ". Nothing has been applied on this node yet, or --state-dir (EDGENODE_STATE_DIR) "
            "points elsewhere; nothing was changed."
        )
    identity = _identity(state_dir, node, now)
    if identity is None:
        node = node or default_node_name()
        # A lone node: whoever reaches its root-only socket acts as its user, through its key.
        managers: tuple[str, ...] = (f"node:{node}", "placement", "user")
    else:
        node = identity.node.subject
        managers = (f"node:{node}", "placement")
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = load_or_create_key(key_path)
        store = Store(
            store_path,
            node_id=node,
            signing_key=key,
            rules=KIND_RULES,
            node_managers=managers,
            clock=clock_ms or _wall_clock_ms,
        )
    except PermissionError as exc:
        raise StateDirError(
            f"{state_dir}: permission denied ({exc.filename}); run as the node's user (root), "
            "or pass --state-dir; nothing was written."
        ) from None
    except (OSError, ValueError, lmdb.Error) as exc:
        raise StateDirError(
            f"{state_dir}: cannot open the node's key and store ({exc}); nothing was written."
        ) from None
    if identity is not None:
        try:
            store.register_key(registry_entry(identity.operator))
        except BaseException:
            store.close()
            raise
    return store


# -- apply -------------------------------------------------------------------------------------


def read_manifests(files: Iterable[str]) -> tuple[list[Manifest], list[FieldProblem]]:
    """Every valid object of `files` (`-` is standard input), and every problem of every file:
    unreadable or invalid files, files without objects, objects defined twice."""
    manifests: list[Manifest] = []
    problems: list[FieldProblem] = []
    for name in files:
        try:
            found = load_manifests(name)
        except ManifestError as exc:
            problems.extend(exc.problems)
            continue
        if not found:
            problems.append(
                FieldProblem.whole(
                    "<stdin>" if name == "-" else name,
                    expected="at least one object",
                    actual="no YAML documents with content",
                    hint="Nothing was applied; check that this is the file you meant.",
                )
            )
            continue
        manifests.extend(found)
    problems.extend(duplicate_problems(manifests))
    return manifests, problems


@dataclass(frozen=True)
class Planned:
    """One object to apply: the manifest, what is stored now, and what the change does."""

    manifest: Manifest
    stored: dict[str, Any] | None
    insecure: InsecureChange
    document: dict[str, Any]
    """The canonical document with its insecure annotation: what `write` writes."""


def plan(store: Store, manifests: Iterable[Manifest]) -> list[Planned]:
    """What applying `manifests` would do, read from the store; writes nothing."""
    out = []
    for m in manifests:
        stored = store.get(m.kind, m.name)
        change = insecure_change(m.kind, m.name, stored, m.model)
        out.append(Planned(m, stored, change, annotated(m.document(), change.current)))
    return out


def creation_refusals(planned: Iterable[Planned]) -> list[str]:
    """Objects the user may not write, found before anything is written: a Node exists only
    once its node has made it (the kind's whole object belongs to ``node:{name}``), and a
    PinnedDeployment's pods are written from its template alone."""
    problems = []
    for p in planned:
        m = p.manifest
        made_by = deployment_owner(p.stored)
        if made_by is not None:
            problems.append(
                f"{m.ref} ({m.source}, document {m.index}): {owned_pod_refusal(m.ref, made_by)}"
            )
            continue
        owner = next((r.owner for r in KIND_RULES.get(m.kind, ()) if r.prefix == ()), "user")
        if p.stored is None and owner != "user":
            problems.append(
                f"{m.ref} ({m.source}, document {m.index}): expected an existing {m.kind}, got "
                f"none; a {m.kind} is created by {owner.replace('{name}', m.name)} itself, and "
                "apply may then change its metadata and spec. Check the name, or apply it "
                "once the node has joined. Nothing was applied."
            )
    return problems


def deployment_owner(doc: Mapping[str, Any] | None) -> str | None:
    """The PinnedDeployment that made this stored pod (its ``edgenode.io/owner``), or None."""
    if doc is None or doc.get("kind") not in (None, "Pod"):
        return None
    notes = (doc.get("metadata") or {}).get("annotations") or {}
    owner = notes.get(OWNER_ANNOTATION)
    return owner if isinstance(owner, str) and owner.startswith("pinneddeployment/") else None


def owned_pod_refusal(ref: str, owner: str) -> str:
    """Why a user write of a deployment's pod is refused, and what to do instead."""
    return (
        f"{ref} belongs to {owner}, which writes it from its template: a direct edit would be "
        f"undone. Edit the template or the replicas instead (edgenode edit {owner}); nothing "
        "was changed."
    )


@dataclass(frozen=True)
class Outcome:
    """What `write` did to one object."""

    ref: str
    result: Literal["created", "configured", "unchanged"]
    revision: int
    added: tuple[str, ...]
    """The relaxations this change turned on (confirmed before `write` was called)."""


def write(
    store: Store, planned: Iterable[Planned], *, author: Author | None = None
) -> Iterator[Outcome]:
    """Write each planned object as ``user``, authored by `author` (default: `store_author`,
    the local operator of a cluster node; on a lone node, the node), yielding what happened
    as it goes. A `StoreError` stops it: the objects yielded before were written, that one
    and the rest were not."""
    author = author or store_author(store)
    todo = list(planned)
    for start in range(0, len(todo), WRITE_BATCH):
        # One transaction (one sync to disk) per batch; a batch's outcomes are told once it
        # has committed, so what was yielded is always what was written.
        done: list[Outcome] = []
        with store.batch():
            for p in todo[start : start + WRITE_BATCH]:
                done.append(_write_one(store, p, author))
        yield from done


WRITE_BATCH = 500
"""Objects written per store transaction by `write`."""


def _write_one(store: Store, p: Planned, author: Author | None) -> Outcome:
    m = p.manifest
    committed = store.put_document(
        m.kind,
        m.name,
        p.document,
        author=author.name if author else None,
        author_key=author.key if author else None,
    )
    if committed is None:
        revision = int(p.stored["metadata"]["revision"]) if p.stored else 0
        return Outcome(m.ref, "unchanged", revision, ())
    result: Literal["created", "configured"] = "created" if p.stored is None else "configured"
    added = tuple(sorted(r.name for r in p.insecure.added))
    return Outcome(m.ref, result, committed.revision, added)


# -- describe ----------------------------------------------------------------------------------

#: What each relaxation lifts: the sandbox default that holds while no setting asks for it.
SANDBOX_DEFAULTS: Mapping[str, str] = {
    "no-user-namespace": "a user namespace of the pod's own: its ids are unprivileged on the node",
    "run-as-root": "a non-root user inside the container",
    "add-capability": "no Linux capabilities, no new privileges",
    "privileged": "masked and read-only kernel paths (/proc, /sys)",
    "unconfined-seccomp": "the seccomp filter (mount, namespaces, BPF, modules ... are denied)",
    "writable-root": "a read-only root filesystem (with a private writable /tmp)",
    "host-path": "no path of the node mounted into containers",
    "host-network": "the pod's own network namespace",
}
#: Relaxations that lift more than their own default.
_LIFTS: Mapping[str, frozenset[str]] = {
    "privileged": frozenset({"privileged", "add-capability", "unconfined-seccomp"}),
}
#: How `describe node` names the features a node reports in status.sandbox.
FEATURE_LABELS: Mapping[str, str] = {
    "apparmor": "AppArmor",
    "seccomp": "seccomp",
    "user-namespaces": "user namespaces",
    "cgroups": "cgroups",
}
#: Kinds with pod specs, whose describe has a Security section of relaxations.
POD_KINDS = frozenset({"Pod", "PinnedDeployment"})
_ALIASES: Mapping[str, str] = {
    **{k.lower(): k for k in KINDS},
    **{k.lower() + "s": k for k in KINDS},
    "po": "Pod",
    "pd": "PinnedDeployment",
    "no": "Node",
}


def defaults_in_force(relaxations: Iterable[str]) -> list[str]:
    """The sandbox defaults no relaxation of `relaxations` lifts, in `SANDBOX_DEFAULTS` order."""
    lifted: set[str] = set()
    for name in relaxations:
        lifted |= _LIFTS.get(name, frozenset({name}))
    return [text for n, text in SANDBOX_DEFAULTS.items() if n not in lifted]


def feature_label(key: str) -> str:
    """`AppArmor` for `apparmor`, `runtime runc` for `runtime-runc`."""
    if key in FEATURE_LABELS:
        return FEATURE_LABELS[key]
    if key.startswith("runtime-"):
        return "runtime " + key.removeprefix("runtime-")
    return key


def resolve_ref(ref: str) -> tuple[str, str]:
    """`pod/web` (any case of the kind, plural or short forms) → `("Pod", "web")`."""
    kind_text, slash, name = ref.partition("/")
    kind = _ALIASES.get(kind_text.lower())
    if not slash or not name or kind is None:
        known = ", ".join(f"{k.lower()}/NAME" for k in KINDS)
        got = f"kind {kind_text!r}" if slash and name else f"{ref!r}"
        raise UnknownObjectError(
            f"expected KIND/NAME with a kind edgenode knows ({known}), got {got}; nothing was "
            "changed."
        )
    return kind, name


@dataclass(frozen=True)
class InForce:
    """A relaxation an object asks for, and the revision since which history records it."""

    relaxation: Relaxation
    since: Marking | None
    """None when no revision recorded it (written before `apply` kept the annotation)."""


@dataclass(frozen=True)
class Feature:
    """One protection or runtime class of a node's sandbox, as the node reported it."""

    key: str
    label: str
    available: bool
    detail: str


@dataclass(frozen=True)
class Description:
    """What `describe` shows of one object."""

    kind: str
    name: str
    revision: int
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any] | None
    assignment: dict[str, Any] | None
    relaxations: tuple[InForce, ...]
    defaults: tuple[str, ...]
    """Sandbox defaults no relaxation lifts (kinds that run pods only)."""
    sandbox: tuple[Feature, ...]
    """A Node's status.sandbox, unavailable features first."""


def _timeline(store: Store, kind: str, name: str) -> list[Marking]:
    """The insecure annotation as each revision that may have touched it left it."""
    shown = format_path(ANNOTATION_PATH)
    out: list[Marking] = []
    for rev in store.history(kind, name):
        touched = (
            rev.created
            or rev.deleted
            or any(
                f in ("(object)", shown) or shown.startswith((f + ".", f + "[")) for f in rev.fields
            )
        )
        if not touched:
            continue
        state = store.state_at(kind, name, rev.revision)
        value = state.fields.get(ANNOTATION_PATH) if state.exists else None
        out.append(Marking(rev.revision, rev.manager, rev.author, value))
    return out


def _features(status: Mapping[str, Any] | None) -> tuple[Feature, ...]:
    sandbox = (status or {}).get("sandbox")
    if not isinstance(sandbox, Mapping):
        return ()
    found = []
    for key, value in sandbox.items():
        info = value if isinstance(value, Mapping) else {}
        available = info.get("available") is True
        detail = str(info.get("detail") or "")
        found.append(Feature(str(key), feature_label(str(key)), available, detail))
    return tuple(sorted(found, key=lambda f: (f.available, f.key)))


def _not_found(store: Store, kind: str, name: str, state_dir: Path) -> UnknownObjectError:
    names = sorted(str(o["metadata"]["name"]) for o in store.list_objects(kind))
    similar = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    if similar:
        others = f"similar {kind} names: {', '.join(similar)}"
    elif names:
        shown = names[:10]
        more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
        others = f"the {kind}s there are {', '.join(shown)}{more}"
    else:
        others = f"there are no {kind}s there"
    return UnknownObjectError(
        f"{kind}/{name}: expected an object in the store of {state_dir}, got no such {kind}; "
        f"{others}. Check the name (or --state-dir); nothing was changed."
    )


def describe(store: Store, kind: str, name: str, *, state_dir: Path) -> Description:
    """What `describe KIND/NAME` shows; raises `UnknownObjectError` if there is no such
    object (naming similar ones)."""
    doc = store.get(kind, name)
    if doc is None:
        raise _not_found(store, kind, name, state_dir)
    metadata = doc.get("metadata") or {}
    relaxations: tuple[InForce, ...] = ()
    defaults: tuple[str, ...] = ()
    if kind in POD_KINDS:
        asked = stored_relaxations(kind, name, doc)
        recorded = annotation_names((metadata.get("annotations") or {}).get(INSECURE_ANNOTATION))
        # The spec says what is asked for; the annotation may name more if the spec no longer
        # reads (then the field is unknown).
        where = {**dict.fromkeys(recorded, "(field unknown)"), **asked}
        since = introduced(_timeline(store, kind, name)) if where else {}
        relaxations = tuple(
            InForce(Relaxation(n, where[n], RELAXATIONS.get(n, "")), since.get(n))
            for n in sorted(where)
        )
        defaults = tuple(defaults_in_force(where))
    status = doc.get("status")
    return Description(
        kind=kind,
        name=name,
        revision=int(metadata.get("revision", 0)),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        spec=dict(doc.get("spec") or {}),
        status=dict(status) if isinstance(status, Mapping) else None,
        assignment=doc.get("assignment") if isinstance(doc.get("assignment"), dict) else None,
        relaxations=relaxations,
        defaults=defaults,
        sandbox=_features(status) if kind == "Node" else (),
    )


# -- describe, as text -------------------------------------------------------------------------


def _yaml_block(value: object) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines())


def _pairs(title: str, values: dict[str, str]) -> str:
    if not values:
        return f"{title:<13}<none>"
    lines = [f"{k}={v}" for k, v in values.items()]
    return f"{title:<13}" + ("\n" + " " * 13).join(lines)


def describe_lines(d: Description) -> list[str]:
    """What `describe` prints, line by line (plain text: the CLI adds colour)."""
    out: list[str] = []
    out.append(f"{'Kind:':<13}{d.kind}")
    out.append(f"{'Name:':<13}{d.name}")
    out.append(f"{'Revision:':<13}{d.revision}")
    out.append(_pairs("Labels:", d.labels))
    out.append(_pairs("Annotations:", d.annotations))
    out.append("Spec:" + ("" if d.spec else " <none>"))
    if d.spec:
        out.append(_yaml_block(d.spec))
    if d.assignment:
        out.append("Assignment:")
        out.append(_yaml_block(d.assignment))
    status = dict(d.status or {})
    if d.kind == "Node":
        status.pop("sandbox", None)  # shown under Security
    out.append("Status:" + ("" if status else " <none reported>"))
    if status:
        out.append(_yaml_block(status))
    out.append("Security:")
    if d.kind == "Node":
        _sandbox_lines(out, d.sandbox)
        return out
    out.append("  Sandbox defaults in force:")
    for default in d.defaults:
        out.append(f"    {default}")
    if not d.defaults:
        out.append("    none: every default is lifted by a relaxation below")
    if not d.relaxations:
        out.append("  Relaxations: none")
        return out
    out.append("  Relaxations (insecure settings, acknowledged and confirmed):")
    name_w = max(len(r.relaxation.name) for r in d.relaxations)
    where_w = max(len(r.relaxation.where) for r in d.relaxations)
    for r in d.relaxations:
        since = (
            f"(since revision {r.since.revision}, by {r.since.manager})"
            if r.since
            else "(not recorded in history)"
        )
        out.append(
            f"    {r.relaxation.name.ljust(name_w)}  {r.relaxation.where.ljust(where_w)}  {since}"
        )
        if r.relaxation.what:
            out.append(f"      {r.relaxation.what}")
    return out


def _sandbox_lines(out: list[str], features: tuple[Feature, ...]) -> None:
    if not features:
        out.append("  Sandbox: <not reported by the node yet>")
        return
    out.append("  Sandbox on this node:")
    for f in features:
        state = "available" if f.available else "unavailable"
        out.append(f"    {f.label}: {state}" + (f" — {f.detail}" if f.detail else ""))
