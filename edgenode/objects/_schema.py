"""Read the models' own type annotations to say, in words, what a field expects.

Error messages must say "expected an integer from 1 to 65535", "expected a map of names to
containers", or "expected no field 'imagee' here (did you mean 'image'?)". Rather than keep a
second table of phrases per field, `resolve` walks a model's annotations along an error's
location and `describe` turns the annotation found there into a phrase. Constrained types carry
their own phrase as `Expect` metadata (see `_fields`).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edgenode.objects._fields import Expect

Loc = tuple[str | int, ...]

#: Plural nouns for the key types of maps, by their `Expect` phrase's first words.
_KEY_NOUNS: tuple[tuple[str, str], ...] = (
    ("a name of lowercase", "names"),
    ("an environment variable name", "variable names"),
    ("a label key", "label keys"),
    ("a label value", "label values"),
)


@dataclass(frozen=True)
class Slot:
    """What one location of a document may hold: a bare type and the constraints on it."""

    annotation: Any
    metadata: tuple[object, ...] = ()
    optional: bool = False

    def expect(self) -> Expect | None:
        found = [m for m in self.metadata if isinstance(m, Expect)]
        return found[-1] if found else None

    def model(self) -> type[BaseModel] | None:
        a = self.annotation
        return a if isinstance(a, type) and issubclass(a, BaseModel) else None


def _flatten(metadata: tuple[object, ...] | list[Any]) -> tuple[object, ...]:
    out: list[object] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.extend(_flatten(item.metadata))
        else:
            out.append(item)
    return tuple(out)


def unwrap(annotation: Any, metadata: tuple[object, ...] = (), optional: bool = False) -> Slot:
    """Strip `Annotated` (collecting its metadata) and `| None` from an annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            args = get_args(annotation)
            annotation, metadata = args[0], (*metadata, *_flatten(args[1:]))
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(rest) < len(get_args(annotation))
            if len(rest) != 1:
                return Slot(annotation, metadata, optional)
            annotation = rest[0]
        else:
            return Slot(annotation, metadata, optional)


def field_slot(field: FieldInfo) -> Slot:
    return unwrap(field.annotation, _flatten(field.metadata), not field.is_required())


def fields_by_yaml_name(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by the name they have in YAML (their alias), in declaration order."""
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def resolve(root: type[BaseModel], loc: Loc) -> Slot | None:
    """The slot at `loc` (a pydantic error location) under `root`, or None if it has none."""
    slot = Slot(root)
    i = 0
    while i < len(loc):
        segment = loc[i]
        model = slot.model()
        origin = get_origin(slot.annotation)
        if model is not None:
            field = fields_by_yaml_name(model).get(str(segment))
            if field is None:
                return None
            slot = field_slot(field)
        elif origin is dict:
            key_type, value_type = get_args(slot.annotation)
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                slot = unwrap(key_type)
                i += 1
            else:
                slot = unwrap(value_type)
        elif origin is list:
            slot = unwrap(get_args(slot.annotation)[0])
        else:
            return None
        i += 1
    return slot


def _article(noun: str) -> str:
    return noun.removeprefix("a ").removeprefix("an ")


def _plural(slot: Slot) -> str:
    expect = slot.expect()
    if expect is not None:
        for prefix, noun in _KEY_NOUNS:
            if expect.text.startswith(prefix):
                return noun
    model = slot.model()
    if model is not None:
        noun = _article(str(getattr(model, "noun", model.__name__)))
        if noun.endswith("status"):
            return noun + "es"
        return noun if noun.endswith("s") else noun + "s"
    if slot.annotation is str:
        return "strings"
    if slot.annotation is int:
        return "integers"
    return "values"


def _min_len(slot: Slot) -> int:
    lengths = [m.min_length for m in slot.metadata if isinstance(m, annotated_types.MinLen)]
    return max(lengths, default=0)


def _int_range(slot: Slot) -> str:
    low = [m.ge for m in slot.metadata if isinstance(m, annotated_types.Ge)]
    high = [m.le for m in slot.metadata if isinstance(m, annotated_types.Le)]
    if low and high:
        return f"an integer from {low[0]} to {high[0]}"
    if low:
        return f"an integer of {low[0]} or more"
    if high:
        return f"an integer of {high[0]} or less"
    return "an integer"


def quote_choices(choices: list[str]) -> str:
    quoted = [repr(c) for c in choices]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def model_summary(model: type[BaseModel]) -> str:
    names = [n for n in fields_by_yaml_name(model) if n not in ("apiVersion", "kind")]
    noun = str(getattr(model, "noun", model.__name__))
    return f"{noun} (a map with fields {', '.join(names)})"


def describe(slot: Slot) -> str:
    """In words, what `slot` accepts: `a list of strings`, `'tcp' or 'udp'`, ..."""
    expect = slot.expect()
    if expect is not None:
        return expect.text
    a = slot.annotation
    origin = get_origin(a)
    model = slot.model()
    if model is not None:
        return model_summary(model)
    if origin is Literal:
        choices = [str(c) for c in get_args(a)]
        return ("one of " if len(choices) > 2 else "") + quote_choices(choices)
    if a is bool:
        return "true or false"
    if a is int:
        return _int_range(slot)
    if a is str:
        return "a non-empty string" if _min_len(slot) else "a string"
    if origin is list:
        text = f"a list of {_plural(unwrap(get_args(a)[0]))}"
        return f"a non-empty {text.removeprefix('a ')}" if _min_len(slot) else text
    if origin is dict:
        key, value = (unwrap(t) for t in get_args(a))
        text = f"a map of {_plural(key)} to {_plural(value)}"
        if _min_len(slot):
            text += " with at least one entry"
        return text
    return getattr(a, "__name__", str(a))
