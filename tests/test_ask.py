"""The ask channel's messages: exact round trips, and a peer's bad bytes become a reason."""

from __future__ import annotations

import cbor2
import pytest

from edgenode import _ask


def test_requests_and_answers_round_trip() -> None:
    for message in (
        _ask.Request(7, "logs", {"ref": "pod/web", "tail": 10}),
        _ask.Answer(7, True, ["line 1", "line 2"]),
        _ask.Answer(8, False, ("pod web has no containers", 4)),
    ):
        assert _ask.decode(_ask.encode(message)) == message


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\x00",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps([1, -1, "logs", {}]),
        cbor2.dumps([1, 2**40, "logs", {}]),
        cbor2.dumps([1, 1, 5, {}]),
        cbor2.dumps([1, 1, "logs", []]),
        cbor2.dumps([2, 1, "yes", None]),
        cbor2.dumps([2, 1, False, "just text"]),
        cbor2.dumps([2, 1, False, ["msg", True]]),
        cbor2.dumps([9, 1, "logs", {}]),
    ],
)
def test_bad_bytes_from_a_peer_are_rejected_with_a_reason(data: bytes) -> None:
    result = _ask.decode(data)
    assert isinstance(result, _ask.Rejected) and result.reason


def test_only_reads_of_node_local_data_are_answered_for_peers() -> None:
    assert {"logs", "workflow", "why"} == _ask.ANSWERED
    assert not _ask.ANSWERED & {"apply", "delete", "set", "rollback", "restart", "edit"}
