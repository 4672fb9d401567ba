"""What the mesh keeps about nodes: contacts fit membership metadata, lag is counted right."""

from __future__ import annotations

import cbor2

from edgenode._nodefacts import Contact, behind, fitting_contact
from gossip._membership_wire import MAX_META_BYTES


def test_a_contact_round_trips_through_member_metadata() -> None:
    contact = Contact(("fd00::1", "10.0.0.1"), 7946)
    assert Contact.decode(contact.encode()) == contact


def test_a_peers_bad_metadata_is_no_contact() -> None:
    for data in (b"", b"\xff", cbor2.dumps([1, ["x"], 0]), cbor2.dumps([2, [], 7946])):
        assert Contact.decode(data) is None
    assert Contact.decode(cbor2.dumps([1, ["a" * 65], 7946])) is None


def test_a_contact_keeps_the_first_addresses_that_fit_member_metadata() -> None:
    many = [f"fd12:3456:789a:{i:x}::{i:x}" for i in range(20)]
    contact = fitting_contact(many, 7946)
    assert len(contact.encode()) <= MAX_META_BYTES
    assert (
        0 < len(contact.addresses) < 20
        and list(contact.addresses) == many[: len(contact.addresses)]
    )


def test_behind_counts_the_changes_the_other_vector_lacks() -> None:
    assert behind({"a": 10, "b": 3}, {"a": 7}) == 6
    assert behind({"a": 10}, {"a": 12, "c": 1}) == 0
    assert behind({"a": 1}, None) is None
