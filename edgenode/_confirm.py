"""The third gate for insecure settings: what a change adds, whether the command line
confirmed it, and what history records about it.

Theory of operation. A relaxation of the sandbox (`sandbox._relax.RELAXATIONS`) needs three
things: the setting in the spec, its acknowledgement in the manifest (`acknowledge: [NAME]`,
enforced when the manifest is validated), and, when a change *adds* it, a confirmation on the
command line (``--confirm-insecure=NAME`` or an interactive yes). This module is the pure part
of the third gate:

- `insecure_change(kind, name, stored, model)` compares the stored document (None when the
  object does not exist) with the new validated model, through `object_relaxations`, and
  returns what the change adds (`InsecureChange`). Keeping a relaxation is not adding it, so
  re-applying the same manifest needs no confirmation.
- `parse_confirmations(values)` reads the command line's names (repeatable, comma-separated)
  and says which are not relaxations; `unconfirmed(changes, confirmed)` lists each added
  relaxation nobody confirmed, as an `Unconfirmed` problem whose message names the object, the
  relaxation, the field asking for it, the flag to add, and that nothing was applied.
- `annotated(document, current)` is the document to write: it carries, in the same change,
  ``metadata.annotations["edgenode.io/insecure"]`` = the sorted, comma-separated names of all
  the object's relaxations (no annotation when there are none), so history shows which
  revision turned an insecure setting on. `introduced(timeline)` reads that back: for each
  relaxation in force, the revision since which the annotation has named it.

A stored document whose spec no longer validates counts as having no relaxations: everything
the new spec asks for then needs confirmation (the safe side). No I/O, no clocks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from edgenode.objects._fields import suggest
from edgenode.objects._kinds import KINDS, ObjectModel
from edgenode.objects._security import object_relaxations
from sandbox._relax import RELAXATIONS, added

INSECURE_ANNOTATION: Final = "edgenode.io/insecure"
"""The annotation naming an object's relaxations, written by every apply."""
ANNOTATION_PATH: Final = ("metadata", "annotations", INSECURE_ANNOTATION)
"""Its field path in the store."""
FLAG: Final = "--confirm-insecure"


@dataclass(frozen=True, slots=True)
class Relaxation:
    """One relaxation an object asks for: its name, the field asking, and what it does."""

    name: str
    where: str
    what: str


@dataclass(frozen=True, slots=True)
class InsecureChange:
    """What one change does to an object's relaxations."""

    ref: str
    """`Pod/web`."""
    current: Mapping[str, str]
    """Every relaxation the object asks for after the change, with the field asking."""
    added: tuple[Relaxation, ...]
    """Those the stored object did not ask for, sorted by field path."""


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """An added relaxation that was not confirmed on the command line."""

    ref: str
    relaxation: Relaxation

    @property
    def flag(self) -> str:
        """The exact flag that confirms it: `--confirm-insecure=run-as-root`."""
        return f"{FLAG}={self.relaxation.name}"

    def render(self) -> str:
        r = self.relaxation
        return (
            f"{self.ref}: {r.where}: this change adds {r.name}, which {r.what}; expected a "
            f"confirmation on the command line ({self.flag}), got none. Add {self.flag} to "
            "apply it anyway, or remove the setting. Nothing was applied."
        )

    def __str__(self) -> str:
        return self.render()


def _relaxation(name: str, where: str) -> Relaxation:
    return Relaxation(name, where, RELAXATIONS[name])


def stored_relaxations(kind: str, name: str, stored: Mapping[str, Any] | None) -> dict[str, str]:
    """The relaxations (name → field) the stored document's spec asks for; {} for none, for a
    missing object, or for a spec that no longer validates (so its settings count as new)."""
    model_type = KINDS.get(kind)
    if stored is None or model_type is None or not isinstance(stored.get("spec"), Mapping):
        return {}
    # Only the spec decides relaxations: metadata.revision, status and assignment (written by
    # the store, nodes and placement) are not part of the manifest's model.
    body = {"kind": kind, "metadata": {"name": name}, "spec": stored["spec"]}
    try:
        model = model_type.model_validate(body)
    except ValidationError:
        return {}
    assert isinstance(model, ObjectModel)
    return object_relaxations(model)


def insecure_change(
    kind: str, name: str, stored: Mapping[str, Any] | None, model: ObjectModel
) -> InsecureChange:
    """What applying `model` over `stored` (None: a new object) does to its relaxations."""
    before = stored_relaxations(kind, name, stored)
    after = object_relaxations(model)
    new = [_relaxation(n, after[n]) for n in added(before, after)]
    return InsecureChange(
        ref=f"{kind}/{name}",
        current=dict(sorted(after.items())),
        added=tuple(sorted(new, key=lambda r: (r.where, r.name))),
    )


def parse_confirmations(values: Iterable[str]) -> tuple[frozenset[str], list[str]]:
    """The relaxation names given with `--confirm-insecure` (repeatable, comma-separated),
    and one problem message per name that is not a relaxation."""
    names: set[str] = set()
    problems: list[str] = []
    known = sorted(RELAXATIONS)
    for value in values:
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                continue
            if item in RELAXATIONS:
                names.add(item)
                continue
            better = suggest(item, known)
            advice = f"Did you mean {FLAG}={better}? " if better else ""
            problems.append(
                f"{FLAG}: expected the name of a relaxation (one of {', '.join(known)}), "
                f"got {item!r}. {advice}Nothing was applied."
            )
    return frozenset(names), problems


def unconfirmed(changes: Iterable[InsecureChange], confirmed: Collection[str]) -> list[Unconfirmed]:
    """Each relaxation the changes add that is not in `confirmed`, in order."""
    return [
        Unconfirmed(change.ref, r)
        for change in changes
        for r in change.added
        if r.name not in confirmed
    ]


def annotation_value(current: Iterable[str]) -> str | None:
    """`host-path,run-as-root`: the annotation for these relaxations; None for none."""
    names = sorted(set(current))
    return ",".join(names) if names else None


def annotated(document: Mapping[str, Any], current: Iterable[str]) -> dict[str, Any]:
    """`document` with the insecure annotation naming `current` (replacing whatever the
    manifest said there), or without it when `current` is empty. `document` is not changed."""
    out = dict(document)
    metadata = dict(out.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()}
    value = annotation_value(current)
    if value is None:
        annotations.pop(INSECURE_ANNOTATION, None)
    else:
        annotations[INSECURE_ANNOTATION] = value
    if annotations:
        metadata["annotations"] = dict(sorted(annotations.items()))
    else:
        metadata.pop("annotations", None)
    out["metadata"] = metadata
    return out


def annotation_names(value: object) -> frozenset[str]:
    """The relaxation names an annotation value lists (anything not a string lists none)."""
    if not isinstance(value, str):
        return frozenset()
    return frozenset(n.strip() for n in value.split(",") if n.strip())


@dataclass(frozen=True, slots=True)
class Marking:
    """The insecure annotation as one revision left it (None: absent, or object deleted)."""

    revision: int
    manager: str
    author: str
    value: str | None


def introduced(timeline: Iterable[Marking]) -> dict[str, Marking]:
    """For each relaxation the last marking names, the marking since which it has been named
    without a break. `timeline` is oldest first; it need only hold the revisions that touched
    the annotation (creations and deletions included)."""
    since: dict[str, Marking] = {}
    for mark in timeline:
        names = annotation_names(mark.value)
        since = {n: m for n, m in since.items() if n in names}
        for n in names:
            since.setdefault(n, mark)
    return dict(sorted(since.items()))
