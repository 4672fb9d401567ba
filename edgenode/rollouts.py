"""The daemon's rollout verbs: start, pause, resume and abort a PinnedDeployment's rollout, and
report how it goes.

A rollout is the user's field `spec.rollout` (`edgenode._rollout`); these verbs only write it
(and, for abort, the counts it began from), as explicit user edits authored by this node's
operator. The steps themselves are written by the deployment's writer node
(`edgenode.deployments`), each one an edit of the versions' `replicas` in history.

- ``rollout.start {name, to, step, waitReady}``: refused if `to` is not a version of the
  deployment, if it already has every replica, or if another rollout is under way (to another
  version: abort it first; to the same version: its step and waitReady are updated).
- ``rollout.pause`` / ``rollout.resume {name}``: set `spec.rollout.paused`.
- ``rollout.abort {name}``: one change that writes back the counts the rollout began from
  (for the versions that still exist) and removes `spec.rollout`; the deployment's status
  records the abort.
- ``rollout.status {name}``: each version's replicas, running and ready, and the rollout's
  state and next step, computed here from replicated state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgenode._deployments import counts_of, plan_deployment
from edgenode._protocol import EXIT_INVALID, EXIT_NOT_FOUND, ApiError
from edgenode._rollout import TRANSITIONS, begin, rollout_spec
from store import Op

if TYPE_CHECKING:
    from edgenode.daemon import Daemon

KIND = "PinnedDeployment"


class Rollouts:
    def __init__(self, daemon: Daemon, author: Any) -> None:
        self.d = daemon
        self.store = daemon.store
        self._author = author
        """Returns the keyword arguments that author a ``user`` write (`Handlers._user`)."""

    def _doc(self, name: str) -> dict[str, Any]:
        doc = self.store.get(KIND, name)
        if doc is None:
            names = [o["metadata"]["name"] for o in self.store.list_objects(KIND)]
            known = ", ".join(names[:20]) if names else "none"
            raise ApiError(
                f"pinneddeployment/{name} does not exist on this node; PinnedDeployments here: "
                f"{known}; nothing was changed",
                EXIT_NOT_FOUND,
            )
        return doc

    def _commit(self, name: str, ops: list[Op]) -> int:
        committed = self.store.commit(KIND, name, ops, manager="user", **self._author())
        self.d.wake()
        return committed.revision

    def start(self, args: Mapping[str, Any]) -> dict[str, Any]:
        name, to = str(args["name"]), str(args["to"])
        step, wait_ready = int(args.get("step") or 1), bool(args.get("waitReady"))
        doc = self._doc(name)
        counts = counts_of(doc)
        ref = f"pinneddeployment/{name}"
        if to not in counts:
            raise ApiError(
                f"{ref}: --to: expected one of its versions ({', '.join(counts)}), got {to!r}; "
                "add the version to the deployment first; nothing was changed",
                EXIT_INVALID,
            )
        if not 1 <= step <= 10_000:
            raise ApiError(
                f"{ref}: --step: expected 1 to 10000 replicas at a time, got {step}; nothing "
                "was changed",
                EXIT_INVALID,
            )
        current = (doc.get("spec") or {}).get("rollout")
        if isinstance(current, Mapping):
            if current.get("to") != to:
                raise ApiError(
                    f"{ref}: a rollout to {current.get('to')} is under way; abort it first "
                    f"(edgenode rollout abort {name}) or let it finish; nothing was changed",
                    EXIT_INVALID,
                )
            ops = [
                Op("set", ("spec", "rollout", "step"), step),
                Op("set", ("spec", "rollout", "waitReady"), wait_ready),
                Op("set", ("spec", "rollout", "paused"), False),
            ]
            return {"ref": ref, "revision": self._commit(name, ops), "started": False}
        total = sum(counts.values())
        if counts[to] == total:
            raise ApiError(
                f"{ref}: every one of its {total} replicas already runs {to}; nothing to roll out",
                EXIT_INVALID,
            )
        rollout = begin(counts, to=to, step=step, wait_ready=wait_ready)
        ops = [Op("set", ("spec", "rollout", k), v) for k, v in rollout.items() if k != "start"]
        ops += [Op("set", ("spec", "rollout", "start", v), n) for v, n in rollout["start"].items()]
        return {"ref": ref, "revision": self._commit(name, ops), "started": True}

    def pause(self, args: Mapping[str, Any], *, paused: bool = True) -> dict[str, Any]:
        name = str(args["name"])
        self._under_way(name)
        revision = self._commit(name, [Op("set", ("spec", "rollout", "paused"), paused)])
        return {"ref": f"pinneddeployment/{name}", "revision": revision}

    def resume(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return self.pause(args, paused=False)

    def _under_way(self, name: str) -> Mapping[str, Any]:
        rollout = ((self._doc(name).get("spec") or {}).get("rollout")) or None
        if not isinstance(rollout, Mapping):
            raise ApiError(
                f"pinneddeployment/{name} has no rollout under way (edgenode rollout {name} "
                "--to VERSION starts one); nothing was changed",
                EXIT_INVALID,
            )
        return rollout

    def abort(self, args: Mapping[str, Any]) -> dict[str, Any]:
        name = str(args["name"])
        spec = rollout_spec(self._under_way(name))
        counts = counts_of(self._doc(name))
        back = {v: n for v, n in spec.start.items() if v in counts}
        ops = [
            Op("set", ("spec", "versions", v, "replicas"), n)
            for v, n in back.items()
            if counts[v] != n
        ]
        ops.append(Op("del", ("spec", "rollout")))
        said = ", ".join(f"{v}: {n}" for v, n in back.items())
        status = {
            "to": spec.to,
            "state": "aborted",
            "message": f"aborted at {time.strftime('%Y-%m-%d %H:%M:%S')}: back to {said}",
        }
        with self.store.batch():
            revision = self._commit(name, ops)
            self.store.commit(
                KIND,
                name,
                [Op("set", ("status", "rollout", k), v) for k, v in status.items()],
                manager="placement",
            )
        return {"ref": f"pinneddeployment/{name}", "revision": revision, "restored": back}

    def status(self, args: Mapping[str, Any]) -> dict[str, Any]:
        name = str(args["name"])
        doc = self._doc(name)
        pods = {p["metadata"]["name"]: p for p in self.store.list_objects("Pod")}
        plan = plan_deployment(doc, pods)
        raw = (doc.get("spec") or {}).get("rollout")
        out: dict[str, Any] = {
            "name": name,
            "revision": doc["metadata"]["revision"],
            "versions": plan.status.get("versions", {}),
            "rollout": None,
            "last": (doc.get("status") or {}).get("rollout"),
        }
        if isinstance(raw, Mapping) and plan.step is not None:
            out["rollout"] = {
                **dict(raw),
                "state": plan.step.state,
                "next": plan.step.kind,
                "message": plan.step.message,
                "explained": TRANSITIONS[plan.step.state][1],
            }
        if plan.foreign:
            out["conflicts"] = list(plan.foreign)
        return out
