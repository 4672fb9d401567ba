"""PinnedDeployments on a running node: write their pods, their rollouts' steps, their status.

Theory of operation. At the start of each reconcile round (before placement, so new pods are
placed in the same round) `DeploymentControl.run` reads every PinnedDeployment and Pod from the
store, asks `edgenode._deployments.plan_deployment` what each deployment needs, and writes it
when this node is the deployment's writer (`is_writer`: where its last user edit was made):

- its pods' creations, in-place updates and deletions, as ``user``, authored by this node's
  local operator (the one who, on this node, wrote the deployment): the same change a person
  would make by hand, in the pods' history;
- the rollout's next edit of the versions' ``replicas`` (`edgenode._rollout`), also as
  ``user``; and when the rollout is complete, the removal of ``spec.rollout``;
- its ``status`` (each version's replicas, running and ready; the rollout's state), as
  ``placement``, signed by the node.

One deployment's writes are one store transaction. Pods whose deployment was deleted are
deleted by the writer of that deletion. A deployment whose stored document does not expand
is skipped and logged once per spec.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import structlog

from edgenode import local
from edgenode._deployments import DeploymentPlan, is_writer, orphans, plan_deployment
from edgenode._expand import expand
from edgenode.local import deployment_owner
from edgenode.objects import ObjectError
from store import Op, Store, StoreError

log = structlog.get_logger("edgenode.deployments")

KIND = "PinnedDeployment"


class DeploymentControl:
    """The PinnedDeployments' writes of node `store.node_id` (see the module docstring)."""

    def __init__(self, store: Store, state_dir: Path) -> None:
        self.store = store
        self.state_dir = state_dir
        self.me = store.node_id
        self._editors: dict[tuple[str, int], str | None] = {}
        self._expanded: dict[str, tuple[str, dict[str, Any] | None]] = {}
        """Each deployment's pods as `expand` gives them, by the labels and spec expanded."""

    def _last_editor(self, name: str, revision: int) -> str | None:
        """The node the last user edit of deployment `name` came from."""
        key = (name, revision)
        if key not in self._editors:
            revisions = self.store.history(KIND, name)
            users = [r for r in revisions if r.manager == "user"]
            self._editors = {k: v for k, v in self._editors.items() if k[0] != name}
            self._editors[key] = users[-1].change.origin if users else None
        return self._editors[key]

    def run(
        self, alive: Iterable[str], changed: Collection[tuple[str, str]] | None = None
    ) -> list[str]:
        """One round: write what this node owes; returns the deployments it wrote for.

        `changed`: the objects (kind, name) changed since the last round, so that only the
        deployments they touch are looked at; None: every deployment."""
        live = set(alive) | {self.me}
        pods = {d["metadata"]["name"]: d for d in self.store.list_objects("Pod")}
        if changed is None:
            deployments = self.store.list_objects(KIND)
            names = None
        else:
            names = {n for k, n in changed if k == KIND}
            names |= {
                owner.removeprefix("pinneddeployment/")
                for k, n in changed
                if k == "Pod" and n in pods and (owner := deployment_owner(pods[n]))
            }
            found = [self.store.get(KIND, n) for n in sorted(names)]
            deployments = [d for d in found if d is not None]
        wrote: list[str] = []
        for doc in deployments:
            name = doc["metadata"]["name"]
            spec_key = json.dumps([doc["metadata"].get("labels"), doc.get("spec")], sort_keys=True)
            cached = self._expanded.get(name)
            if cached is None or cached[0] != spec_key:
                try:
                    cached = (spec_key, expand(doc))
                except (ObjectError, ValueError) as exc:
                    cached = (spec_key, None)
                    log.warning("deployment_not_expandable", deployment=name, error=str(exc))
                self._expanded[name] = cached
            if cached[1] is None:
                continue
            revision = int(doc["metadata"]["revision"])
            plan = plan_deployment(doc, pods, expanded=cached[1])
            if plan.is_idle(doc.get("status")):
                continue
            if not is_writer(name, self._last_editor(name, revision), live, self.me):
                continue
            if self._write(plan, doc):
                wrote.append(name)
        existing = {d["metadata"]["name"] for d in deployments}
        if names is None:
            for gone in self._expanded.keys() - existing:
                del self._expanded[gone]
            left = orphans(pods, existing)
        else:  # only the deployments looked at: those of them that are gone
            left = {d: o for d, o in orphans(pods, ()).items() if d in names - existing}
        for name, owned in left.items():
            state = self.store.get_state(KIND, name)
            editor = self._last_editor(name, state.revision) if state is not None else None
            if is_writer(name, editor, live, self.me) and self._delete_pods(name, owned):
                wrote.append(name)
        return wrote

    def _author(self) -> dict[str, Any]:
        author = local.user_author(self.state_dir)
        return {"author": author.name, "author_key": author.key} if author else {}

    def _write(self, plan: DeploymentPlan, doc: dict[str, Any]) -> bool:
        name = plan.name
        author = self._author()
        try:
            with self.store.batch():
                for pod, body in {**plan.pods.create, **plan.pods.update}.items():
                    self.store.put_document("Pod", pod, body, **author)
                for pod in plan.pods.delete:
                    self.store.delete("Pod", pod, **author)
                step = plan.step
                if step is not None and step.kind in ("surge", "drain") and step.counts:
                    ops = [
                        Op("set", ("spec", "versions", v, "replicas"), n)
                        for v, n in sorted(step.counts.items())
                        if doc["spec"]["versions"].get(v, {}).get("replicas") != n
                    ]
                    if ops:
                        self.store.commit(KIND, name, ops, manager="user", **author)
                elif step is not None and step.kind == "complete":
                    self.store.commit(
                        KIND, name, [Op("del", ("spec", "rollout"))], manager="user", **author
                    )
                if dict(doc.get("status") or {}) != plan.status:
                    self.store.put_document(
                        KIND, name, {"status": plan.status}, manager="placement"
                    )
        except StoreError as exc:
            log.warning("deployment_write_refused", deployment=name, error=str(exc))
            return False
        log.info(
            "deployment_synced",
            deployment=name,
            created=sorted(plan.pods.create),
            updated=sorted(plan.pods.update),
            deleted=list(plan.pods.delete),
            rollout=plan.step.message if plan.step is not None else None,
            conflicts=list(plan.foreign),
        )
        return True

    def _delete_pods(self, deployment: str, names: list[str]) -> bool:
        author = self._author()
        try:
            with self.store.batch():
                for pod in names:
                    self.store.delete("Pod", pod, **author)
        except StoreError as exc:
            log.warning("deployment_write_refused", deployment=deployment, error=str(exc))
            return False
        log.info("deployment_pods_deleted", deployment=deployment, deleted=names)
        return True
