"""What an edit of a running pod restarts: the in-place update plan, as data.

Theory of operation. A pod is mutable: its sandbox (network namespace, address, id range)
stays while containers change. `plan_update(old, new)` compares two definitions and names an
action per container:

- ``keep``: nothing about it changed;
- ``resize``: only its resources changed, and the runtime can apply them to the running
  container (``runc update``), so it keeps running;
- ``recreate``: its definition changed (image, command, args, env, working dir, user,
  security settings), or only resources changed but the runtime cannot resize live: it is
  stopped with its grace period and started again from the new definition, in the same sandbox;
- ``create`` / ``remove``: it was added to or dropped from the pod.

A change of the pod's runtime class, pod-wide relaxations or host port names (every container
sees every port's variable) recreates every container; a change of restart policy or grace
period alone is ``reconfigure``: nothing restarts, and the node applies the new rules from its
next decision (the policy) or stop (the grace period).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from sandbox._spec import PodDef

Action = Literal["keep", "resize", "recreate", "create", "remove", "reconfigure"]


def plan_update(old: PodDef, new: PodDef, *, live_resize: bool) -> Mapping[str, Action]:
    """An action per container name (of either definition), in name order."""
    pod_wide = (old.runtime_class, old.relaxations, old.host_ports) != (
        new.runtime_class,
        new.relaxations,
        new.host_ports,
    )
    rules = (old.restart_policy, old.grace_s) != (new.restart_policy, new.grace_s)
    plan: dict[str, Action] = {}
    for name in sorted(old.containers.keys() | new.containers.keys()):
        before = old.containers.get(name)
        after = new.containers.get(name)
        if before is None:
            plan[name] = "create"
        elif after is None:
            plan[name] = "remove"
        elif pod_wide or not before.same_except_resources(after):
            plan[name] = "recreate"
        elif before != after:
            plan[name] = "resize" if live_resize else "recreate"
        else:
            plan[name] = "reconfigure" if rules else "keep"
    return plan
