"""Field paths and leaves.

An object is stored flat: a map from *field path* (a tuple of map keys, such as
``("spec", "containers", "web", "image")``) to a *leaf* value (anything but a map: a string,
number, bool, null, or a list). Maps keyed by name are what make these paths stable, and
stable paths are what per-field ownership, last-writer-wins and diffs need.

Paths print dotted (``spec.containers.web.image``); a key that is empty or contains a dot,
bracket or quote prints in brackets (``metadata.labels["app.io/tier"]``) so the printed form
stays unambiguous and parses back.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

Path = tuple[str, ...]
Leaf = Any

MAX_DEPTH = 32
MAX_SEGMENT = 253
_PLAIN = re.compile(r"^[A-Za-z0-9_\-/:@+]+$")


def flatten(doc: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Leaf]:
    """Nested maps to ``{path: leaf}``; empty maps vanish, lists are leaves."""
    out: dict[Path, Leaf] = {}
    for key, value in doc.items():
        if not isinstance(key, str):
            raise TypeError(f"map key {key!r} at {format_path(prefix)} is not a string")
        path = (*prefix, key)
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def unflatten(fields: Mapping[Path, Leaf]) -> dict[str, Any]:
    """``{path: leaf}`` back to nested maps, keys in sorted order."""
    root: dict[str, Any] = {}
    for path in sorted(fields):
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = fields[path]
    return root


def is_under(path: Path, prefix: Path) -> bool:
    return path[: len(prefix)] == prefix


@lru_cache(maxsize=65536)
def format_path(path: Path) -> str:
    if not path:
        return "(object)"
    parts: list[str] = []
    for seg in path:
        if _PLAIN.match(seg):
            parts.append(seg if not parts else "." + seg)
        else:
            parts.append("[" + json.dumps(seg) + "]")
    return "".join(parts)


@lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """Inverse of `format_path`: ``spec.env["A.B"]`` → ``("spec", "env", "A.B")``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "[":
            decoder = json.JSONDecoder()
            try:
                seg, end = decoder.raw_decode(text, i + 1)
            except json.JSONDecodeError as e:
                raise ValueError(f"bad quoted key at offset {i} in path {text!r}") from e
            if not isinstance(seg, str) or end >= len(text) or text[end] != "]":
                raise ValueError(f'expected ["key"] at offset {i} in path {text!r}')
            out.append(seg)
            i = end + 1
        else:
            if text[i] == "." and out:
                i += 1
            j = i
            while j < len(text) and text[j] not in ".[":
                j += 1
            if j == i:
                raise ValueError(f"empty key at offset {i} in path {text!r}")
            out.append(text[i:j])
            i = j
    if not out:
        raise ValueError("a field path cannot be empty")
    return tuple(out)


def check_path(path: object, *, allow_root: bool = False) -> Path:
    """A decoded path, checked: a tuple of 0..32 non-empty strings of at most 253 characters,
    without NUL. Paths repeat endlessly, so each distinct one is checked once."""
    if not isinstance(path, list | tuple):
        raise ValueError(f"a path is a list of keys, got {type(path).__name__}")
    if not path and not allow_root:
        raise ValueError("this operation needs a field path, got the object root")
    if len(path) > MAX_DEPTH:
        raise ValueError(f"a path has at most {MAX_DEPTH} keys, got {len(path)}")
    key = tuple(path)
    try:
        known = KNOWN_PATHS.get(key)
    except TypeError:  # an unhashable element: not a string anyway
        raise ValueError(f"path keys are strings, got {path!r}") from None
    if known is not None:
        return known
    for seg in key:
        if not isinstance(seg, str) or not seg or len(seg) > MAX_SEGMENT or "\0" in seg:
            raise ValueError(
                f"path keys are non-empty strings of ≤{MAX_SEGMENT} chars without NUL: {seg!r}"
            )
        if not seg.isascii():
            text(seg, "a path key")
    if len(KNOWN_PATHS) > 100_000:
        KNOWN_PATHS.clear()
    KNOWN_PATHS[key] = key
    return key


KNOWN_PATHS: dict[Path, Path] = {}
"""Paths already checked (and one shared tuple for each): paths repeat endlessly, so each
distinct one is checked once. Bounded: cleared when it grows too large."""


@lru_cache(maxsize=65536)
def prefixes_of(path: Path) -> tuple[Path, ...]:
    """Every prefix of `path`, longest first, ending with the root ``()`` (memoized)."""
    return tuple(path[:n] for n in range(len(path), -1, -1))


MIN_INT, MAX_INT = -(1 << 63), (1 << 64) - 1
"""The integers a field can hold: CBOR's up (larger ones would need tags, which changes may
not carry) and msgpack's down (the store's records of folded objects cannot hold less)."""


def check_leaf(value: object, *, depth: int = 0) -> Leaf:
    """A leaf is null, bool, int, float, str or a list of leaves; maps are flattened first.
    Integers fit in 64 bits (plus sign), floats are finite, and strings are Unicode text
    (no lone surrogates). Negative zero becomes zero: DAG-CBOR, which every receiver decodes,
    forbids it, so a change carrying it would be refused by every peer."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if value.isascii() else text(value, "a string value")
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise ValueError(f"an integer value is within -2^63..2^64-1, got {value}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a number value is finite, got {value}")
        return value + 0.0  # -0.0 + 0.0 is 0.0; every other value stays itself
    if isinstance(value, list | tuple) and depth < MAX_DEPTH:
        return [check_leaf(v, depth=depth + 1) for v in value]
    raise ValueError(f"a field value is a string, number, bool, null or list, got {value!r}")


def text(value: str, what: str) -> str:
    """`value` if it encodes as UTF-8 (what a change carries), else ValueError."""
    try:
        value.encode()
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is Unicode text, got {value!r} (a lone surrogate at offset {e.start})"
        ) from None
    return value


def same_leaf(a: Leaf, b: Leaf) -> bool:
    """Equal and of the same type all the way down (so 1, 1.0 and True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_leaf(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
