"""Zero-config formation: five daemons started with nothing but the cluster's credentials
(no seeds, no addresses) find each other (mDNS, IPv6 neighbours), all see all five alive, and
hold the same state (each node's Node object).

Figures: `up_s`, from the lab's start until every daemon answers on its socket (namespaces,
credentials, daemon start); `all_see_all_s`, from then until every node holds all five alive;
`first_sees_all_s` / `last_sees_all_s`, when the first and the last node did; `converged_s`,
from answering until every node holds the same changes and the same state digest.
"""

from __future__ import annotations

import time

from fieldkit import alive_seen_by, all_see_all, call, converged, named_lab, report, waited

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_five_nodes_with_only_the_cluster_credential_all_see_all_and_converge() -> None:
    with named_lab("ff") as lab:
        started = time.monotonic()
        lab.up(len(NODES))
        answering = time.monotonic()
        assert not any(a.startswith("--seed") for a in lab.extra_daemon_args())
        sees_all: dict[str, float] = {}

        def everyone_sees_all() -> bool:
            for node in NODES:
                if node not in sees_all and alive_seen_by(lab, node) >= set(NODES):
                    sees_all[node] = time.monotonic() - answering
            return len(sees_all) == len(NODES)

        all_s = waited(everyone_sees_all, timeout=60, what="every node to see all five alive")
        assert all_see_all(lab, NODES)  # and still so: nobody dropped out meanwhile
        waited(lambda: converged(lab, NODES), timeout=30, what="the same state on all five")
        converged_s = time.monotonic() - answering
        for node in NODES:  # every node holds every node's own description of itself
            names = {d["metadata"]["name"] for d in call(lab, node, "get", kind="node", name=None)}
            assert names == set(NODES), (node, names)
        report(
            "formation",
            nodes=len(NODES),
            up_s=round(answering - started, 2),
            all_see_all_s=round(all_s, 2),
            first_sees_all_s=round(min(sees_all.values()), 2),
            last_sees_all_s=round(max(sees_all.values()), 2),
            converged_s=round(converged_s, 2),
        )
