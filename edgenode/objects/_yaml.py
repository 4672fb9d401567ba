"""YAML text to validated manifests, with line numbers for every problem.

The text is parsed once: PyYAML composes each document into a node tree (which knows the line
of every key), and a fresh safe constructor turns that tree into plain Python data for
validation. From the tree we also catch what PyYAML would let pass silently: a key given twice
in one map (the last would win), and documents that expand through aliases into something huge.

Empty documents (`---` with nothing after it, or only comments) are skipped but still counted,
so "document 3" is the third document in the file. A YAML syntax error ends the reading of the
file; it is reported together with the problems of the documents before it.
"""

from __future__ import annotations

import dataclasses

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgenode.objects._errors import FieldProblem, ManifestError
from edgenode.objects._parse import Manifest, check_document, duplicate_problems, place
from edgenode.objects._schema import Loc
from edgenode.objects._translate import Issue, nothing_applied

#: Most YAML nodes one document may hold, counting every alias expansion.
MAX_NODES = 100_000
#: Deepest nesting of maps and lists one document may have.
MAX_DEPTH = 64

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclasses.dataclass
class _Index:
    """What the node tree of one document tells us: lines by path, and its own problems."""

    lines: dict[tuple[str, ...], int]
    issues: list[Issue]
    too_big: bool = False

    def line_of(self, loc: Loc) -> int | None:
        return self.lines.get(tuple(str(s) for s in loc))


def _index(root: Node) -> _Index:
    """Walk a document's node tree (iteratively): key lines, duplicate keys, size limits."""
    index = _Index(lines={(): root.start_mark.line + 1}, issues=[])
    stack: list[tuple[Node, tuple[str, ...]]] = [(root, ())]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_NODES or len(path) > MAX_DEPTH:
            index.too_big = True
            return index
        if isinstance(node, MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    stack.append((value, path))
                    continue
                text = key.value if isinstance(key, ScalarNode) else repr(key.value)
                line = key.start_mark.line + 1
                if text in first_line:
                    index.issues.append(
                        Issue(
                            (*path, text),
                            "each key once in a map",
                            f"{text!r} again (first on line {first_line[text]})",
                            "YAML would silently keep only the last one; remove or merge "
                            "the duplicates. " + nothing_applied("fix the key"),
                            line=line,
                        )
                    )
                    continue
                first_line[text] = line
                index.lines.setdefault((*path, text), line)
                stack.append((value, (*path, text)))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                index.lines.setdefault((*path, str(i)), item.start_mark.line + 1)
                stack.append((item, (*path, str(i))))
    return index


def _syntax_problem(exc: yaml.YAMLError, *, source: str, index: int, text: str) -> FieldProblem:
    line = column = None
    problem = str(exc)
    hint = "Check the indentation and quoting there. " + nothing_applied("fix the YAML")
    if isinstance(exc, yaml.constructor.ConstructorError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            line, column = mark.line + 1, mark.column + 1
        problem = exc.problem or "a value YAML cannot build"
        hint = (
            "Manifests hold plain maps, lists, strings, numbers and booleans; remove the tag "
            "or quote the value. " + nothing_applied("fix the YAML")
        )
    elif isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            line, column = mark.line + 1, mark.column + 1
        problem = exc.problem or exc.context or "unreadable YAML"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            hint = (
                f"It started {exc.context} on line {exc.context_mark.line + 1}; check the "
                "indentation and quoting there. " + nothing_applied("fix the YAML")
            )
        lines = text.splitlines()
        at = lines[line - 1] if line is not None and 0 < line <= len(lines) else ""
        if "\\t" in problem or "\t" in problem or "\t" in at[: len(at) - len(at.lstrip())]:
            hint = "YAML does not allow tabs for indentation; use spaces. " + nothing_applied(
                "fix the YAML"
            )
    elif isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        problem = f"a character YAML does not allow: {exc.reason}, #x{exc.character:04x}"
        hint = "Remove the character or escape it in a double-quoted string. " + nothing_applied(
            "fix the YAML"
        )
    return FieldProblem.whole(
        source,
        document=index,
        line=line,
        expected="valid YAML",
        actual=f"a syntax error ({problem})",
        hint=hint,
        column=column,
    )


def _too_big(source: str, index: int, line: int) -> FieldProblem:
    return FieldProblem.whole(
        source,
        document=index,
        line=line,
        expected=(
            f"a document of at most {MAX_NODES} YAML nodes (counting alias expansions) "
            f"nested at most {MAX_DEPTH} deep"
        ),
        actual="a larger document",
        hint="Split it up or remove repeated aliases. " + nothing_applied("fix the YAML"),
    )


# libyaml's parser, where PyYAML was built with it, composes the same nodes (marks included)
# about ten times faster than the pure-Python one: it matters for files of many documents.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_manifests_text(text: str, *, source: str) -> list[Manifest]:
    """Validate every document of YAML `text` (named `source` in messages).

    Returns the manifests in file order; raises `ManifestError` with every problem of the text
    (including a YAML syntax error, with its line and column) if there is any.
    """
    problems: list[FieldProblem] = []
    manifests: list[Manifest] = []
    name_lines: dict[int, int | None] = {}
    index = 0
    loader: yaml.SafeLoader | None = None
    try:
        loader = _LOADER(text)
        while loader.check_node():
            root = loader.get_node()
            index += 1
            if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
                continue
            tree = _index(root)
            if tree.too_big:
                problems.append(_too_big(source, index, root.start_mark.line + 1))
                continue
            try:
                doc = SafeConstructor().construct_document(root)
            except yaml.YAMLError as exc:
                problems.append(_syntax_problem(exc, source=source, index=index, text=text))
                continue
            problems.extend(
                place(tree.issues, source=source, index=index, doc=doc, line_of=tree.line_of)
            )
            result = check_document(doc, source=source, index=index, line_of=tree.line_of)
            if isinstance(result, Manifest):
                manifests.append(result)
                name_lines[index] = tree.line_of(("metadata", "name"))
            else:
                problems.extend(result)
    except yaml.YAMLError as exc:
        problems.append(_syntax_problem(exc, source=source, index=index + 1, text=text))
    except RecursionError:
        problems.append(_too_big(source, index + 1, 1))
    finally:
        if loader is not None:
            loader.dispose()
    for dup in duplicate_problems(manifests):
        problems.append(dataclasses.replace(dup, line=name_lines.get(dup.document)))
    if problems:
        problems.sort(key=lambda p: (p.document, p.line if p.line is not None else 0))
        raise ManifestError(problems)
    return manifests
