"""Turn pydantic's validation errors into problems a person can act on.

pydantic reports `{'type': 'extra_forbidden', 'loc': ('spec', 'containers', 'web', 'imagee')}`;
a user needs "spec.containers.web.imagee: expected no field 'imagee' here (did you mean
'image'?), got 'busybox'". `translate` produces one `Issue` per error: the location (without
pydantic's `[key]` markers), the expected phrase (from `_schema.describe`), the value found, and
advice. Placing the issue in a file (source, document, line) is the caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from edgenode.objects._fields import suggest
from edgenode.objects._schema import (
    Loc,
    describe,
    fields_by_yaml_name,
    quote_choices,
    resolve,
)

_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_SHOWN = 60


def nothing_applied(fix: str = "fix the value") -> str:
    return f"Nothing was applied; {fix} and try again."


@dataclass(frozen=True)
class Issue:
    """A problem at a location of one document, not yet placed in a file."""

    loc: Loc
    expected: str
    actual: str
    hint: str
    line: int | None = None  # when known better than the line of `loc` (a repeated key)


def path_text(loc: Loc) -> str:
    """`spec.containers.web.command[2]`; keys with dots or slashes as `labels["a.b/c"]`."""
    out = ""
    for segment in loc:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif _PLAIN_SEGMENT.match(segment):
            out += f".{segment}" if out else segment
        else:
            out += '["' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


def render_value(value: object) -> str:
    """A value as a user would recognise it from YAML: `'12x'`, `8080`, `true`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_SHOWN else value[: _MAX_SHOWN - 3] + "..."
        return repr(shown)
    if isinstance(value, dict):
        if not value:
            return "an empty map"
        keys = [render_value(k) for k in list(value)[:3]]
        more = ", ..." if len(value) > 3 else ""
        return f"a map with keys {', '.join(keys)}{more}"
    if isinstance(value, list):
        if not value:
            return "an empty list"
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"


def dns_label_for(text: str) -> str:
    """A DNS label close to `text` (`Web_Server` -> `web-server`), for suggestions."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:63].strip("-")


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _with_tail(advice: str, fix: str = "fix the value") -> str:
    return f"{_sentence(advice)} {nothing_applied(fix)}" if advice else nothing_applied(fix)


def _advice(error: ErrorDetails, value: object, optional: bool) -> str:
    """What to do about one error, beyond "fix the value"."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in (
        "cpu_quantity",
        "memory_quantity",
        "capability",
        "relaxation",
        "duration",
        "port_ref",
    ):
        return str(ctx.get("reason", ""))
    if kind == "dns_label" and isinstance(value, str):
        better = dns_label_for(value)
        return f"try {better!r}" if better and better != value else ""
    if kind == "env_name" and isinstance(value, str):
        better = re.sub(r"\W", "_", value)
        better = "_" + better if better[:1].isdigit() else better
        return f"try {better!r}" if better and better != value else ""
    if kind in ("dict_type", "model_type", "model_attributes_type") and isinstance(value, list):
        return (
            "write a map keyed by name, such as 'web: {image: busybox}', instead of a list; "
            "edgenode keys containers, ports, env, volumes, volume mounts and versions by name"
        )
    if value is None:
        if optional:
            return "write a value here, or remove the key to use the default"
        return "write a value here"
    if kind == "string_type":
        if isinstance(value, bool):
            return (
                "YAML reads unquoted true, false, yes, no, on and off as booleans; "
                "put the value in quotes"
            )
        if isinstance(value, int | float):
            return f'put it in quotes ("{value}") so YAML reads it as text'
    if kind in ("int_type", "int_parsing"):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return "remove the quotes so YAML reads it as a number"
        if isinstance(value, float):
            return "use a whole number"
    if kind == "bool_type" and isinstance(value, str):
        return "write true or false, without quotes"
    if kind == "list_type" and isinstance(value, str):
        if value and not any(c.isspace() for c in value):
            return f"write a YAML list such as [{value}]"
        return "write a YAML list such as [httpd, -f]; a single string is not split into words"
    if kind == "literal_error" and isinstance(value, str):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        choice = suggest(value, choices)
        if choice is not None:
            return f"write {choice!r}"
    if kind == "too_short":
        return "add at least one entry"
    return ""


def _extra_field(root: type[BaseModel], loc_raw: Loc, loc: Loc, value: object) -> Issue:
    key = str(loc[-1])
    parent = resolve(root, loc_raw[:-1])
    model = parent.model() if parent is not None else None
    names = list(fields_by_yaml_name(model)) if model is not None else []
    names = [n for n in names if n not in ("apiVersion", "kind")]
    better = suggest(key, names)
    if better is not None:
        expected = f"no field {key!r} here (did you mean {better!r}?)"
        advice = f"rename {key} to {better}"
    else:
        expected = f"no field {key!r} here (fields here: {', '.join(names)})"
        advice = f"remove {key}"
        if key == "name" and len(loc) >= 2:
            advice = f"remove name: in a map keyed by name the key ({loc[-2]!s}) is the name"
    return Issue(loc, expected, render_value(value), _with_tail(advice, "fix the field"))


def translate(root: type[BaseModel], errors: list[ErrorDetails]) -> list[Issue]:
    """One `Issue` per pydantic error raised while validating `root`."""
    issues: list[Issue] = []
    for error in errors:
        loc_raw: Loc = tuple(error["loc"])
        loc: Loc = tuple(s for s in loc_raw if s != "[key]")
        value = error.get("input")
        kind = error["type"]
        if kind == "extra_forbidden":
            issues.append(_extra_field(root, loc_raw, loc, value))
            continue
        slot = resolve(root, loc_raw)
        described = describe(slot) if slot is not None else str(error["msg"])
        if kind == "missing":
            field = str(loc[-1]) if loc else "the field"
            issues.append(
                Issue(
                    loc,
                    "a value (required)",
                    "nothing",
                    _with_tail(f"add {field}: {described}", "add the field"),
                )
            )
            continue
        if kind == "literal_error" and slot is None:
            described = "one of " + quote_choices(
                re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
            )
        advice = _advice(error, value, slot.optional if slot is not None else False)
        issues.append(Issue(loc, described, render_value(value), _with_tail(advice)))
    return issues
