"""`edgenode up --clock-offset`: a node whose clock runs ahead stamps its changes ahead, says
so in its log, and is otherwise an ordinary node (a lab restarts nodes with it to have weeks
pass; field-tests/test_offline_weeks.py)."""

from __future__ import annotations

import json
import time

from daemonkit import running_node

FOURTEEN_DAYS_S = 14 * 86_400

DOC = """apiVersion: edgenode/v1
kind: PinnedDeployment
metadata: {name: later}
spec:
  versions:
    v1:
      replicas: 0
      template:
        spec:
          containers:
            c: {image: busybox, command: [sleep, "1"]}
"""


def test_a_node_with_a_clock_offset_stamps_its_changes_that_far_ahead() -> None:
    with running_node("ahead", "--clock-offset", str(FOURTEEN_DAYS_S)) as node:
        node.ok("apply", "-f", "-", input=DOC)
        [revision] = json.loads(node.ok("history", "pinneddeployment/later", "-o", "json"))
        ahead = revision["time"] - time.time()
        assert FOURTEEN_DAYS_S - 60 < ahead < FOURTEEN_DAYS_S + 1, ahead
        offsets = [json.loads(x) for x in node.log().splitlines() if '"clock_offset"' in x]
        assert [o["seconds"] for o in offsets] == [FOURTEEN_DAYS_S]
