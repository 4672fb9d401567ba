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


def test_a_contact_carries_the_pods_prefix_and_link_local_next_hops() -> None:
    contact = Contact(("fd00::1",), 7946, "fd12:3456:789a:bcde::/64", ("fe80::1:2",))
    assert Contact.decode(contact.encode()) == contact
    assert Contact.decode(Contact(("fd00::1",), 7946).encode()) == Contact(("fd00::1",), 7946)


def test_a_contact_whose_network_part_is_malformed_is_no_contact() -> None:
    prefix = bytes(8)
    for tail in (
        [prefix[:4], []],
        [prefix, [b"\x20\x01" + bytes(14)]],  # a next hop that is not link-local
        [prefix, "fe80::1"],
        [prefix],
    ):
        assert Contact.decode(cbor2.dumps([1, ["fd00::1"], 7946, *tail])) is None


def test_the_network_facts_stay_when_addresses_must_be_cut_to_fit() -> None:
    many = [f"fd12:3456:789a:{i:x}::{i:x}" for i in range(20)]
    hops = ["fe80::aaaa:bbbb:cccc:dddd", "fe80::1111:2222:3333:4444"]
    contact = fitting_contact(many, 7946, pod_prefix="fd12:3456:789a:1::/64", link_local=hops)
    assert len(contact.encode()) <= MAX_META_BYTES
    assert contact.pod_prefix == "fd12:3456:789a:1::/64" and contact.link_local == tuple(hops)
    assert 0 < len(contact.addresses) < 20
