"""The key registry: which public keys are trusted, and which managers each may act as.

A node's key typically acts as ``node:<its id>`` and ``placement``; an operator's as ``user``.
The mesh milestone feeds this registry from cluster credentials; here it is a plain map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    public_key: bytes
    managers: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ValueError(f"key {self.key_id}: an Ed25519 public key is 32 bytes")

    @cached_property
    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def may_act_as(self, manager: str) -> bool:
        return manager in self.managers


class KeyRegistry:
    def __init__(self, entries: Iterable[KeyEntry] = ()) -> None:
        self._entries: dict[str, KeyEntry] = {e.key_id: e for e in entries}

    def add(self, entry: KeyEntry) -> None:
        self._entries[entry.key_id] = entry

    def get(self, key_id: str) -> KeyEntry | None:
        return self._entries.get(key_id)

    def entries(self) -> Mapping[str, KeyEntry]:
        return dict(self._entries)
