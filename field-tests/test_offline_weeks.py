"""A node offline for fourteen days of clock time while 10,000 changes happen, then its rejoin.

Three nodes converge on 1,000 objects. n3's link goes down (an edge site losing its uplink).
Fourteen days pass on every clock: a running daemon's clock cannot be stepped, so each daemon
is restarted with ``--clock-offset`` of fourteen days (``EDGENODE_CLOCK_OFFSET_S``; the store's
clock is persisted, so it only moves on), n3 still without its link. Meanwhile n1 and n2
write 10,000 changes (one apply of 5,000 objects on each) stamped fourteen days after n3 last
heard from them, and n3 writes a few of its own. Then n3's link comes back: neighbour
discovery finds the others, and n3 and they exchange what each lacks.

It shows that n3 holds every change, with the same state digest as the others; that it was
sent only what it lacked (bytes received within 1.3 × the envelopes it applied, and no
duplicates: not the 1,000 it held, nor anything twice), and that the changes it took are
stamped fourteen days on, within the drift bound of its own (moved-on) clock.

Figures: `changes_applied` and `bytes_received` by n3 during the catch-up, `bytes_per_change`,
`overhead` (received / applied bytes), `rejoin_s` (link up until all three see all alive),
`catch_up_s` (link up until identical state), `transfer_s` (the two apart), `writes_s` (the
10,000 changes written), `clock_ahead_days` of the newest change n3 took.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from fieldkit import (
    Lab,
    all_see_all,
    apply_text,
    call,
    converged,
    deployments,
    named_lab,
    report,
    waited,
)

NODES = ["n1", "n2", "n3"]
AWAY, STAYING = "n3", ["n1", "n2"]
FOURTEEN_DAYS_S = 14 * 86_400
BEFORE, WHILE_AWAY = 1_000, 10_000


def counters(lab: Lab, node: str) -> dict[str, Any]:
    state = call(lab, node, "mesh")
    d = state["dissemination"]
    return {
        "changes": state["applied"]["changes"],
        "bytes": state["applied"]["bytes"],
        "received": d["bytes_received"],
        "duplicates": d["duplicates"],
        "held": sum(state["versionVector"].values()),
    }


def test_a_node_back_after_fourteen_days_and_10000_changes_receives_only_what_it_lacked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with named_lab("fw") as lab:
        lab.up(len(NODES))
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh to form")
        apply_text(lab, "n1", deployments(f"before-{i}" for i in range(BEFORE)))
        waited(lambda: converged(lab, NODES), timeout=120, what="the 1,000 on every node")

        lab.link(AWAY, up=False)
        monkeypatch.setenv("EDGENODE_CLOCK_OFFSET_S", str(FOURTEEN_DAYS_S))
        for node in NODES:  # fourteen days on, for every clock; n3 still cut off
            lab.kill(node, signal.SIGTERM)
            lab.start(node)
        waited(lambda: all_see_all(lab, STAYING), timeout=60, what="n1 and n2 together again")

        writing = time.monotonic()
        for node in STAYING:
            half = range(WHILE_AWAY // 2)
            apply_text(lab, node, deployments(f"away-{node}-{i}" for i in half))
        apply_text(lab, AWAY, deployments(f"offline-{i}" for i in range(5)))
        waited(lambda: converged(lab, STAYING), timeout=300, what="the 10,000 on n1 and n2")
        writes_s = time.monotonic() - writing

        before = counters(lab, AWAY)
        lab.link(AWAY, up=True)
        back = time.monotonic()
        rejoin_s = waited(lambda: all_see_all(lab, NODES), timeout=60, what="n3 seen again")
        waited(lambda: converged(lab, NODES), timeout=300, interval=0.1, what="n3 caught up")
        catch_up_s = time.monotonic() - back
        after = counters(lab, AWAY)

        took = after["changes"] - before["changes"]
        received = after["received"] - before["received"]
        applied_bytes = after["bytes"] - before["bytes"]
        # Only the delta: the 10,000 (and the few the others' restarts wrote), not the 1,000
        # n3 held, and nothing twice.
        assert WHILE_AWAY <= took < WHILE_AWAY + 100, (before, after)
        assert received <= 1.3 * applied_bytes, (received, applied_bytes)
        assert after["duplicates"] == before["duplicates"], (before, after)
        [newest] = call(lab, AWAY, "history", ref="pinneddeployment/away-n2-4999")
        ahead_days = (newest["time"] - time.time()) / 86_400
        assert 13.9 < ahead_days < 14.1, ahead_days
        report(
            "offline_weeks",
            nodes=len(NODES),
            offline_days=FOURTEEN_DAYS_S / 86_400,
            held_before=before["held"],
            changes_while_away=WHILE_AWAY,
            changes_applied=took,
            bytes_received=received,
            bytes_applied=applied_bytes,
            bytes_per_change=round(received / took, 1),
            overhead=round(received / applied_bytes, 3),
            duplicates=after["duplicates"] - before["duplicates"],
            writes_s=round(writes_s, 1),
            rejoin_s=round(rejoin_s, 2),
            catch_up_s=round(catch_up_s, 2),
            transfer_s=round(catch_up_s - rejoin_s, 2),
            clock_ahead_days=round(ahead_days, 3),
        )
