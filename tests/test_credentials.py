"""Cluster identity: ids and ULA prefixes derive from the trust root; credentials are trusted
only when the root signed them, for this cluster, within their validity."""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from gossip._credentials import (
    Credential,
    CredentialError,
    check,
    cluster_id,
    managers,
    ula_prefix,
)


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


ROOT = Ed25519PrivateKey.generate()
NODE = Ed25519PrivateKey.generate()


def issued(subject: str = "n1", role: str = "node", *, by: Ed25519PrivateKey = ROOT) -> Credential:
    unsigned = Credential(cluster_id(raw(ROOT)), subject, role, raw(NODE), 1000, 2000)  # type: ignore[arg-type]
    return replace(unsigned, signature=by.sign(unsigned.body()))


def test_the_cluster_id_and_ula_prefix_derive_from_the_trust_root() -> None:
    other = raw(Ed25519PrivateKey.generate())
    assert cluster_id(raw(ROOT)) == cluster_id(raw(ROOT)) != cluster_id(other)
    net = ipaddress.IPv6Network(ula_prefix(cluster_id(raw(ROOT))))
    assert net.prefixlen == 48 and net.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert ula_prefix(cluster_id(raw(ROOT))) != ula_prefix(cluster_id(other))


def test_a_credential_signed_by_the_root_is_trusted_within_its_window() -> None:
    cred = issued()
    assert check(cred, root_public=raw(ROOT), now=1500) is None
    assert check(Credential.decode(cred.encode()), root_public=raw(ROOT), now=1500) is None


def test_another_clusters_credential_is_refused_naming_both_clusters() -> None:
    other_root = Ed25519PrivateKey.generate()
    reason = check(issued(), root_public=raw(other_root), now=1500)
    assert reason is not None and "belongs to cluster" in reason
    assert cluster_id(raw(other_root)) in reason


def test_a_forged_or_tampered_credential_is_refused() -> None:
    forged = issued(by=Ed25519PrivateKey.generate())
    assert "does not verify" in (check(forged, root_public=raw(ROOT), now=1500) or "")
    tampered = replace(issued(), subject="n2")
    assert "does not verify" in (check(tampered, root_public=raw(ROOT), now=1500) or "")
    promoted = replace(issued(), role="operator")
    assert "does not verify" in (check(promoted, root_public=raw(ROOT), now=1500) or "")


def test_an_expired_or_not_yet_valid_credential_is_refused() -> None:
    assert "expired at 2000" in (check(issued(), root_public=raw(ROOT), now=2001) or "")
    assert "not valid before 1000" in (check(issued(), root_public=raw(ROOT), now=999) or "")


def test_roles_decide_the_store_managers() -> None:
    assert managers(issued("n1", "node")) == ("node:n1", "placement")
    assert managers(issued("alice", "operator")) == ("user",)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("subject", "Bad_Name", "expected a DNS label"),
        ("role", "admin", "role expected one of node, operator"),
        ("public_key", b"short", "expected 32 bytes"),
        ("not_after", 500, "expected not_after after not_before"),
    ],
)
def test_malformed_credentials_are_refused_with_the_field(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(CredentialError, match=message):
        replace(issued(), **{field: value})


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_credential_or_a_clear_error(data: bytes) -> None:
    with contextlib.suppress(CredentialError):  # anything else escaping is the failure
        Credential.decode(data)
