"""Errors of the object model, and how a problem with a manifest is told to a person.

Every problem found in a manifest becomes one `FieldProblem`: where it is (file, document, line,
field path), what was expected, what was found and what to do. `ManifestError` carries all the
problems of an input at once, so a user fixes a file in one pass instead of one error per run.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Appended to every hint: validation never changes any state.
NOTHING_APPLIED = "Nothing was applied; fix the value and try again."


class ObjectError(Exception):
    """Base of every error raised by `edgenode.objects`."""


class QuantityError(ObjectError, ValueError):
    """A CPU or memory quantity could not be read. The message says why and what to write."""


class DurationError(ObjectError, ValueError):
    """A duration (`30s`, `1h30m`) could not be read. The message says why and what to write."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of one manifest document.

    `document` is the 1-based number of the document in its source, or 0 for a problem with the
    source as a whole (an unreadable file). `path` is the dotted field path
    (`spec.containers.web.resources.memory`, list items as `command[2]`), empty for the document
    itself. `actual` is already rendered for display (`'12x'`, `8080`, `nothing`).
    """

    source: str
    document: int
    kind: str | None
    name: str | None
    line: int | None
    path: str
    expected: str
    actual: str
    hint: str
    column: int | None = None

    @classmethod
    def whole(
        cls,
        source: str,
        *,
        expected: str,
        actual: str,
        hint: str,
        document: int = 0,
        line: int | None = None,
        column: int | None = None,
    ) -> FieldProblem:
        """A problem with a whole file (`document` 0) or a whole document, not one field."""
        return cls(source, document, None, None, line, "", expected, actual, hint, column)

    def where(self) -> str:
        """`file, document 2 (Pod web), line 12`: as much of the location as is known."""
        parts = [self.source]
        if self.document > 0:
            doc = f"document {self.document}"
            who = " ".join(p for p in (self.kind, self.name) if p)
            if who:
                doc += f" ({who})"
            parts.append(doc)
        if self.line is not None:
            at = f"line {self.line}"
            if self.column is not None:
                at += f", column {self.column}"
            parts.append(at)
        return ", ".join(parts)

    def render(self) -> str:
        """One line: location, field path, expected and actual value, and what to do."""
        field = f"{self.path}: " if self.path else ""
        text = f"{self.where()}: {field}expected {self.expected}, got {self.actual}."
        if self.hint:
            text += f" {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


class ManifestError(ObjectError):
    """One or more manifests are invalid. `problems` lists every problem found, in file order."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        if not problems:
            raise ValueError("ManifestError needs at least one problem")
        self.problems: list[FieldProblem] = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        """One line per problem."""
        return "\n".join(p.render() for p in self.problems)

    def __str__(self) -> str:
        return self.render()
