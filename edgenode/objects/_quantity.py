"""CPU and memory quantities, written the Kubernetes way.

CPU: a number of cores (`2`, `0.5`, `1.25`) or of millicores (`500m`); the smallest unit is one
millicore. Memory: a number of bytes (`1000000`) with an optional decimal suffix (`k M G T`,
powers of 1000) or binary suffix (`Ki Mi Gi Ti`, powers of 1024); it must come to whole bytes.

Manifests keep the quantity as the user wrote it (`normalize_*` only turns YAML numbers into
strings: `2` -> `"2"`); `cpu_millis` and `memory_bytes` turn a quantity into a plain integer.
Every error says what was wrong and what to write instead.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from edgenode.objects._errors import QuantityError

CPU_EXAMPLES = "500m, 0.5 or 2"
MEMORY_EXAMPLES = "128Mi, 1Gi or 512M"

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_CPU_RE = re.compile(rf"^(?P<number>{_NUMBER})(?P<suffix>m?)$")
_MEMORY_RE = re.compile(rf"^(?P<number>{_NUMBER})(?P<suffix>[A-Za-z]*)$")

MEMORY_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}

# Suffixes people write by habit, and what they most likely meant.
_MEMORY_HABITS: dict[str, str] = {
    "m": "'m' is not a memory unit (it would mean thousandths of a byte); use M or Mi",
    "K": "use k (1000) or Ki (1024)",
    "KB": "use k (1000) or Ki (1024)",
    "kb": "use k (1000) or Ki (1024)",
    "kB": "use k (1000) or Ki (1024)",
    "KiB": "write Ki, without the B",
    "MB": "use M (10^6) or Mi (2^20), without the B",
    "mb": "use M (10^6) or Mi (2^20)",
    "MiB": "write Mi, without the B",
    "mi": "units are case-sensitive; write Mi",
    "GB": "use G (10^9) or Gi (2^30), without the B",
    "gb": "use G (10^9) or Gi (2^30)",
    "GiB": "write Gi, without the B",
    "gi": "units are case-sensitive; write Gi",
    "g": "units are case-sensitive; write G or Gi",
    "TB": "use T (10^12) or Ti (2^40), without the B",
    "TiB": "write Ti, without the B",
    "ti": "units are case-sensitive; write Ti",
    "ki": "units are case-sensitive; write Ki",
}


def _as_text(quantity: object, what: str, examples: str) -> str:
    """The quantity as a string: strings as given, YAML integers and decimals as digits."""
    if isinstance(quantity, bool):
        raise QuantityError(f"{what} must be a quantity such as {examples}, not a boolean")
    if isinstance(quantity, int):
        return str(quantity)
    if isinstance(quantity, float):
        if not math.isfinite(quantity):
            raise QuantityError(f"{what} must be a finite quantity such as {examples}")
        return format(Decimal(repr(quantity)), "f")
    if isinstance(quantity, str):
        return quantity
    raise QuantityError(
        f"{what} must be a quantity such as {examples}, not {type(quantity).__name__}"
    )


def normalize_cpu(quantity: object) -> str:
    """Check a CPU quantity and return it as the string to store (as written, ints as digits)."""
    text = _as_text(quantity, "CPU", CPU_EXAMPLES)
    cpu_millis(text)
    return text


def normalize_memory(quantity: object) -> str:
    """Check a memory quantity and return it as the string to store."""
    text = _as_text(quantity, "memory", MEMORY_EXAMPLES)
    memory_bytes(text)
    return text


def cpu_millis(quantity: str | int | float) -> int:
    """Millicores in a CPU quantity: `"500m"` -> 500, `"0.5"` -> 500, `2` -> 2000.

    Raises `QuantityError` for anything else (negative, a unit other than `m`, finer than 1m).
    """
    text = _as_text(quantity, "CPU", CPU_EXAMPLES)
    match = _CPU_RE.match(text)
    if match is None:
        if text.startswith("-"):
            raise QuantityError(f"CPU cannot be negative; write e.g. {CPU_EXAMPLES}")
        if text.endswith("M"):
            raise QuantityError("millicores are a lowercase m, as in 500m")
        raise QuantityError(
            f"a CPU quantity is a number of cores (0.5, 2) or millicores (500m); "
            f"write e.g. {CPU_EXAMPLES}"
        )
    number = Decimal(match["number"])
    millis = number if match["suffix"] == "m" else number * 1000
    if millis != millis.to_integral_value():
        raise QuantityError("the smallest CPU unit is 1m (a thousandth of a core); round it")
    return int(millis)


def memory_bytes(quantity: str | int | float) -> int:
    """Bytes in a memory quantity: `"128Mi"` -> 134217728, `"1k"` -> 1000, `1000000` -> 1000000.

    Raises `QuantityError` for anything else, naming the units it accepts.
    """
    text = _as_text(quantity, "memory", MEMORY_EXAMPLES)
    match = _MEMORY_RE.match(text)
    if match is None:
        if text.startswith("-"):
            raise QuantityError(f"memory cannot be negative; write e.g. {MEMORY_EXAMPLES}")
        raise QuantityError(
            f"a memory quantity is a number of bytes with an optional unit; "
            f"write e.g. {MEMORY_EXAMPLES}"
        )
    suffix = match["suffix"]
    if suffix not in MEMORY_SUFFIXES:
        habit = _MEMORY_HABITS.get(suffix)
        if habit is not None:
            raise QuantityError(f"unknown unit {suffix!r}: {habit}")
        raise QuantityError(
            f"unknown unit {suffix!r}; use one of Ki, Mi, Gi, Ti (powers of 1024) "
            f"or k, M, G, T (powers of 1000)"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{text!r} is not a number") from exc
    total = number * MEMORY_SUFFIXES[suffix]
    if total != total.to_integral_value():
        raise QuantityError("memory must come to a whole number of bytes; use a smaller unit")
    return int(total)
