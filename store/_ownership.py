"""Field ownership: which manager may write which field of an object.

Theory of operation. Each kind declares *owner rules*: a field-path prefix and the manager
owning every field under it, e.g. for a Pod::

    ()             -> user                      # creating and deleting the object
    ("spec",)      -> user
    ("assignment",)-> placement
    ("status",)    -> node:{assignment.node}    # a template, resolved from the object itself

The owner of a field is given by the longest matching prefix. An object may override its kind's
rules: ``own`` transfers a prefix to another manager, ``share`` lets named managers write the
fields under a prefix as well. Both are ops inside ordinary changes, so they are in history and
replicate like everything else. Only a prefix's owner may share or transfer it.

Templates (``{name}`` for the object's name, ``{a.b}`` for the current value of field a.b)
make ownership depend on the object's state. That is why the store checks a remote change's
ownership inside the deterministic fold (where every node sees the same state at the same
point) and checks a local change against the current state before writing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from store._errors import OwnershipError
from store._path import Leaf, Path, format_path, parse_path, prefixes_of

_TEMPLATE = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True, slots=True)
class OwnerRule:
    prefix: Path
    owner: str

    def __post_init__(self) -> None:
        for ref in _TEMPLATE.findall(self.owner):
            if ref != "name":
                parse_path(ref)


KindRules = Sequence[OwnerRule]
Rules = Mapping[str, KindRules]


@dataclass(frozen=True, slots=True)
class Refusal:
    """`manager` may not write `path`, owned by `owner` (a manager, or why there is none)."""

    path: Path
    owner: str
    manager: str

    def __str__(self) -> str:
        return (
            f"field {format_path(self.path)} is owned by {self.owner}, not by {self.manager}; "
            f"ask its owner to share it with {self.manager} or to transfer it"
        )


@dataclass(frozen=True, slots=True)
class Owners:
    """What the fold needs to decide ownership for one object."""

    name: str
    rules: KindRules
    transfers: Mapping[Path, str]
    shares: Mapping[Path, tuple[str, ...]]
    fields: Mapping[Path, Leaf]

    def owner_of(self, path: Path) -> str:
        """The manager owning `path`; an unresolved template is returned with its reason.

        The longest matching prefix wins; at equal length a transfer beats the kind's rule."""
        transfers = self.transfers
        if transfers:
            table = _table(self.rules)[0]
            for prefix in prefixes_of(path):
                owner = transfers.get(prefix) or table.get(prefix)
                if owner is not None:
                    return resolve(owner, self.name, self.fields)
            return NOBODY
        return resolve(rule_owner(self.rules, path), self.name, self.fields)

    def may_write(self, manager: str, path: Path) -> Refusal | None:
        owner = self.owner_of(path)
        if owner == manager:
            return None
        if self.shares:
            for prefix in prefixes_of(path):
                if manager in self.shares.get(prefix, ()):
                    return None
        return Refusal(path, owner, manager)

    def may_govern(self, manager: str, path: Path) -> Refusal | None:
        """Sharing and transferring are for the owner alone, not for managers shared with."""
        owner = self.owner_of(path)
        return None if owner == manager else Refusal(path, owner, manager)


NOBODY = "nobody (this kind declares no owner for it)"


def rule_owner(rules: KindRules, path: Path) -> str:
    """The owner the kind's rules give `path` (longest matching prefix), templates unexpanded;
    `NOBODY` if no rule matches. Memoized per rules object: the fold asks for every field."""
    table, memo = _table(rules)
    owner = memo.get(path)
    if owner is None:
        owner = next((table[p] for p in prefixes_of(path) if p in table), NOBODY)
        if len(memo) > 65536:
            memo.clear()
        memo[path] = owner
    return owner


def rule_owners(rules: KindRules) -> Mapping[Path, str]:
    """The memo `rule_owner` fills: owners by full path, for lookups without a call."""
    return _table(rules)[1]


def resolve(owner: str, name: str, fields: Mapping[Path, Leaf]) -> str:
    """`owner` with its template references filled in from the object (``{name}`` and field
    values); a reference to an unset field leaves it unresolved, with the reason."""
    if "{" not in owner:
        return owner
    parts = _compiled(owner)
    if len(parts) == 1:
        literal, ref = parts[0]  # the common shape, e.g. node:{assignment.node}
        value = fields.get(ref) if ref is not None and ref != ("name",) else None
        if type(value) is str and value:
            return literal + value
    out: list[str] = []
    for literal, ref in parts:
        out.append(literal)
        if ref is None:
            continue
        if ref == ("name",):
            out.append(name)
            continue
        value = fields.get(ref)
        if type(value) is not str or not value:
            return f"{owner} (nobody while {format_path(ref)} is unset)"
        out.append(value)
    return "".join(out)


@lru_cache(maxsize=256)
def _compiled(template: str) -> tuple[tuple[str, Path | None], ...]:
    """``"node:{assignment.node}"`` → ``(("node:", ("assignment", "node")),)``; ``{name}`` is
    the reference ``("name",)`` (the object's name)."""
    parts: list[tuple[str, Path | None]] = []
    pos = 0
    for m in _TEMPLATE.finditer(template):
        ref = m.group(1)
        parts.append((template[pos : m.start()], ("name",) if ref == "name" else parse_path(ref)))
        pos = m.end()
    if pos < len(template):
        parts.append((template[pos:], None))
    return tuple(parts)


# Compiled rule tables (prefix -> owner) and their memo of owners by full path, one per rules
# object (kept alive here, so its id is never reused).
_TABLES: dict[int, tuple[KindRules, dict[Path, str], dict[Path, str]]] = {}


def _table(rules: KindRules) -> tuple[dict[Path, str], dict[Path, str]]:
    hit = _TABLES.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1], hit[2]
    table = {r.prefix: r.owner for r in rules}
    if len(_TABLES) > 1024:
        _TABLES.clear()
    memo: dict[Path, str] = {}
    _TABLES[id(rules)] = (rules, table, memo)
    return table, memo


def ownership_error(kind: str, name: str, refused: Sequence[Refusal]) -> OwnershipError:
    first = refused[0]
    more = ""
    if len(refused) > 1:
        more = f" (and {len(refused) - 1} more: {'; '.join(map(str, refused[1:]))})"
    return OwnershipError(
        f"{kind}/{name}: {first}{more}; nothing was written",
        path=format_path(first.path),
        owner=first.owner,
        manager=first.manager,
    )
