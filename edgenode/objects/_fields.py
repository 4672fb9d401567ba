"""Field types shared by every kind: names, labels, paths, quantities, capabilities, relaxation
names, and the model base.

Each constrained type is `Annotated[base, validator, Expect(...)]`. The validator raises a
`PydanticCustomError` whose type names the rule (`dns_label`, `memory_quantity`, ...); `Expect`
holds the human phrase for "expected ..." that error messages use, so the phrase lives next to
the rule it describes. Maps keyed by name are sorted by key on the way in, so a model (and the
canonical document made from it) does not depend on the order the user wrote the keys in.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)
from pydantic_core import PydanticCustomError

from edgenode.objects._errors import QuantityError
from edgenode.objects._quantity import (
    CPU_EXAMPLES,
    MEMORY_EXAMPLES,
    normalize_cpu,
    normalize_memory,
)
from sandbox._oci import ALL_CAPABILITIES
from sandbox._relax import RELAXATIONS

API_VERSION: Final = "edgenode/v1"

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL_MAX = 63
LABEL_PREFIX_MAX = 253

T = TypeVar("T")


@dataclass(frozen=True)
class Expect:
    """Annotation metadata: how to say what a field expects (`a memory quantity such as 1Gi`)."""

    text: str


class StrictModel(BaseModel):
    """Base of every object model: unknown fields are errors, no silent type coercion.

    Fields are read by their YAML name (alias) only, so `restart_policy` in a manifest is an
    unknown field (with a suggestion), not a second spelling. Models are immutable.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def sorted_by_key(value: dict[str, T]) -> dict[str, T]:
    """The same map with its keys in sorted order (canonical form of maps keyed by name)."""
    return dict(sorted(value.items()))


def sorted_unique(values: list[str]) -> list[str]:
    """The same list sorted, each item once (canonical form of lists that are really sets)."""
    return sorted(set(values))


def _omit_empty(value: list[Any], handler: SerializerFunctionWrapHandler) -> Any:
    return handler(value) or None


#: Annotation for a list whose emptiness is its default: an empty one is left out of the
#: canonical document, like an empty map (lists such as `args: []` mean something, and stay).
OmitEmpty = WrapSerializer(_omit_empty)


def _fail(kind: str, message: str, value: object) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {"value": value})


def _dns_label(value: str) -> str:
    if len(value) > DNS_LABEL_MAX:
        raise _fail("dns_label", f"{len(value)} characters, at most {DNS_LABEL_MAX}", value)
    if not DNS_LABEL_RE.match(value):
        raise _fail("dns_label", "not a DNS label", value)
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME_RE.match(value):
        raise _fail("env_name", "not an environment variable name", value)
    return value


def _label_key(value: str) -> str:
    prefix, slash, name = value.rpartition("/")
    ok = bool(_LABEL_NAME_RE.match(name)) and len(name) <= LABEL_MAX
    if slash:
        ok = ok and bool(_LABEL_PREFIX_RE.match(prefix)) and len(prefix) <= LABEL_PREFIX_MAX
    if not ok:
        raise _fail("label_key", "not a label key", value)
    return value


def _label_value(value: str) -> str:
    if value and (len(value) > LABEL_MAX or not _LABEL_NAME_RE.match(value)):
        raise _fail("label_value", "not a label value", value)
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "\x00" in value:
        raise _fail("absolute_path", "not an absolute path", value)
    return value


def _image_ref(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise _fail("image_ref", "not an image reference", value)
    return value


def _squash(word: str) -> str:
    return re.sub(r"[-_\s]", "", word).lower()


def suggest(word: str, options: list[str]) -> str | None:
    """The option the user most likely meant by `word`, if any is close enough."""
    for option in options:
        if _squash(option) == _squash(word):
            return option
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def _capability(value: str) -> str:
    name = value if value.startswith("CAP_") else "CAP_" + value
    if name in ALL_CAPABILITIES:
        return name
    short = sorted(c.removeprefix("CAP_") for c in ALL_CAPABILITIES)
    better = suggest(value[4:] if value[:4].upper() == "CAP_" else value, short)
    reason = f"write {better}; " if better else ""
    reason += f"known (with or without CAP_): {', '.join(short)}"
    raise PydanticCustomError("capability", "{reason}", {"reason": reason})


def _relaxation(value: str) -> str:
    if value in RELAXATIONS:
        return value
    better = suggest(value, sorted(RELAXATIONS))
    reason = f"write {better!r}" if better else ""
    raise PydanticCustomError("relaxation", "{reason}", {"reason": reason})


def _cpu(value: object) -> str:
    try:
        return normalize_cpu(value)
    except QuantityError as exc:
        raise PydanticCustomError("cpu_quantity", "{reason}", {"reason": str(exc)}) from exc


def _memory(value: object) -> str:
    try:
        return normalize_memory(value)
    except QuantityError as exc:
        raise PydanticCustomError("memory_quantity", "{reason}", {"reason": str(exc)}) from exc


DnsLabel = Annotated[
    str,
    AfterValidator(_dns_label),
    Expect(
        "a name of lowercase letters, digits and '-' that starts and ends with a letter or "
        f"digit, at most {DNS_LABEL_MAX} characters (such as web or cache-2)"
    ),
]
EnvName = Annotated[
    str,
    AfterValidator(_env_name),
    Expect("an environment variable name of letters, digits and '_', not starting with a digit"),
]
LabelKey = Annotated[
    str,
    AfterValidator(_label_key),
    Expect(
        "a label key such as app or example.com/tier (letters, digits, '-', '_' and '.', "
        f"at most {LABEL_MAX} characters after an optional DNS prefix and '/')"
    ),
]
LabelValue = Annotated[
    str,
    AfterValidator(_label_value),
    Expect(
        "a label value: empty, or letters, digits, '-', '_' and '.' starting and ending with "
        f"a letter or digit, at most {LABEL_MAX} characters"
    ),
]
AbsolutePath = Annotated[
    str, AfterValidator(_absolute_path), Expect("an absolute path such as /srv/www")
]
ImageRef = Annotated[
    str,
    AfterValidator(_image_ref),
    Expect("an image reference without spaces, such as busybox or busybox:1.36"),
]
CpuQuantity = Annotated[
    str, BeforeValidator(_cpu), Expect(f"a CPU quantity such as {CPU_EXAMPLES}")
]
MemoryQuantity = Annotated[
    str, BeforeValidator(_memory), Expect(f"a memory quantity such as {MEMORY_EXAMPLES}")
]

Capability = Annotated[
    str,
    AfterValidator(_capability),
    Expect("a Linux capability such as NET_BIND_SERVICE or CAP_NET_RAW"),
]
"""Read as `NET_ADMIN` or `CAP_NET_ADMIN`, kept as `CAP_NET_ADMIN`."""
RelaxationName = Annotated[
    str,
    AfterValidator(_relaxation),
    Expect("the name of a relaxation: one of " + ", ".join(sorted(RELAXATIONS))),
]

Labels = Annotated[dict[LabelKey, LabelValue], AfterValidator(sorted_by_key)]
Annotations = Annotated[dict[LabelKey, str], AfterValidator(sorted_by_key)]
