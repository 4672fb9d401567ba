"""Validate one decoded manifest document into a `Manifest`, or say everything wrong with it.

Order of checks: the document must be a map; `apiVersion` (optional) must be `edgenode/v1`;
`kind` must name a known kind; users may not write a Pod's or PinnedDeployment's `status`; then
the kind's model validates every field, and cross-field rules run on a valid object. All
problems found are reported together, each placed at its line when `line_of` can tell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from edgenode.objects._checks import cross_field_issues
from edgenode.objects._errors import FieldProblem, ManifestError
from edgenode.objects._fields import API_VERSION, suggest
from edgenode.objects._kinds import KINDS, NODE_WRITTEN_STATUS, ObjectModel, to_document
from edgenode.objects._schema import Loc, quote_choices
from edgenode.objects._translate import (
    Issue,
    nothing_applied,
    path_text,
    render_value,
    translate,
)

LineOf = Callable[[Loc], int | None]


@dataclass(frozen=True)
class Manifest:
    """One valid object read from a manifest: which, from where, and the validated model."""

    kind: str
    name: str
    source: str
    index: int
    model: ObjectModel = field(hash=False)

    @property
    def ref(self) -> str:
        """`Pod/web`."""
        return f"{self.kind}/{self.name}"

    def document(self) -> dict[str, Any]:
        """The canonical plain dict of the object (see `to_document`)."""
        return to_document(self.model)


def identify(doc: object) -> tuple[str | None, str | None]:
    """The kind and name a document claims (when they are strings), for error messages."""
    if not isinstance(doc, dict):
        return None, None
    kind = doc.get("kind")
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (
        kind if isinstance(kind, str) and kind else None,
        name if isinstance(name, str) and name else None,
    )


def place(
    issues: list[Issue],
    *,
    source: str,
    index: int,
    doc: object,
    line_of: LineOf | None,
) -> list[FieldProblem]:
    """Turn issues into problems of document `index` of `source`, each at its nearest line."""
    kind, name = identify(doc)
    problems = []
    for issue in issues:
        line = issue.line
        if line is None and line_of is not None:
            loc = issue.loc
            while line is None:
                line = line_of(loc)
                if not loc:
                    break
                loc = loc[:-1]
        problems.append(
            FieldProblem(
                source=source,
                document=index,
                kind=kind,
                name=name,
                line=line,
                path=path_text(issue.loc),
                expected=issue.expected,
                actual=issue.actual,
                hint=issue.hint,
            )
        )
    return problems


def _envelope_issues(doc: dict[Any, Any], allow_status: bool) -> list[Issue]:
    issues: list[Issue] = []
    if "apiVersion" in doc and doc["apiVersion"] != API_VERSION:
        issues.append(
            Issue(
                ("apiVersion",),
                f"{API_VERSION!r} (or no apiVersion)",
                render_value(doc["apiVersion"]),
                f"This edgenode reads only {API_VERSION}; change apiVersion or remove it. "
                + nothing_applied(),
            )
        )
    kind = doc.get("kind")
    kinds = list(KINDS)
    expected_kind = "one of " + quote_choices(kinds)
    if "kind" not in doc:
        issues.append(
            Issue(
                ("kind",),
                expected_kind,
                "nothing",
                "Add kind: Pod, PinnedDeployment or Node. " + nothing_applied("add the field"),
            )
        )
    elif not isinstance(kind, str) or kind not in KINDS:
        better = suggest(kind, kinds) if isinstance(kind, str) else None
        advice = f"Write kind: {better}. " if better else ""
        issues.append(
            Issue(("kind",), expected_kind, render_value(kind), advice + nothing_applied())
        )
    elif kind in NODE_WRITTEN_STATUS and "status" in doc and not allow_status:
        issues.append(
            Issue(
                ("status",),
                "no status in a manifest",
                render_value(doc["status"]),
                "Status is written by the node, remove it. " + nothing_applied("remove status"),
            )
        )
    return issues


def check_document(
    doc: object,
    *,
    source: str = "<input>",
    index: int = 1,
    line_of: LineOf | None = None,
    allow_status: bool = False,
) -> Manifest | list[FieldProblem]:
    """Like `parse_document`, but returns the problems instead of raising them."""

    def placed(issues: list[Issue]) -> list[FieldProblem]:
        return place(issues, source=source, index=index, doc=doc, line_of=line_of)

    if not isinstance(doc, dict):
        return placed(
            [
                Issue(
                    (),
                    "a map with kind, metadata and spec",
                    render_value(doc),
                    "Each YAML document must be one object such as "
                    "'kind: Pod', 'metadata: {name: web}', 'spec: {...}'. " + nothing_applied(),
                )
            ]
        )
    issues = _envelope_issues(doc, allow_status)
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        return placed(issues)
    body = {k: v for k, v in doc.items() if k != "apiVersion"}
    if any(i.loc == ("status",) for i in issues):
        body.pop("status", None)
    model_type = KINDS[kind]
    try:
        model = model_type.model_validate(body)
    except ValidationError as exc:
        issues.extend(translate(model_type, exc.errors()))
        return placed(issues)
    assert isinstance(model, ObjectModel)
    issues.extend(cross_field_issues(model))
    if issues:
        return placed(issues)
    return Manifest(kind=kind, name=model.metadata.name, source=source, index=index, model=model)


def parse_document(
    doc: object,
    *,
    source: str = "<input>",
    index: int = 1,
    line_of: LineOf | None = None,
    allow_status: bool = False,
) -> Manifest:
    """Validate one decoded document (a dict from YAML or JSON) into a `Manifest`.

    `source` and `index` (1-based document number) say where the document came from;
    `line_of` maps a field path to its 1-based line, when known. Raises `ManifestError` with
    every problem found. `allow_status=True` accepts the node-written `status` of a Pod (for
    documents that come from nodes, not users).
    """
    result = check_document(
        doc, source=source, index=index, line_of=line_of, allow_status=allow_status
    )
    if isinstance(result, Manifest):
        return result
    raise ManifestError(result)


def duplicate_problems(manifests: list[Manifest]) -> list[FieldProblem]:
    """Problems for each object defined again after its first definition in `manifests`."""
    first: dict[tuple[str, str], Manifest] = {}
    problems: list[FieldProblem] = []
    for m in manifests:
        key = (m.kind, m.name)
        if key not in first:
            first[key] = m
            continue
        earlier = first[key]
        where = (
            f"document {earlier.index}"
            if earlier.source == m.source
            else f"{earlier.source}, document {earlier.index}"
        )
        problems.append(
            FieldProblem(
                source=m.source,
                document=m.index,
                kind=m.kind,
                name=m.name,
                line=None,
                path="metadata.name",
                expected=f"a name no other {m.kind} in this input has",
                actual=f"{m.name!r}, already defined in {where}",
                hint="Rename one of them or remove the duplicate. "
                + nothing_applied("fix the input"),
            )
        )
    return problems
