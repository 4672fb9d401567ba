"""What a PinnedDeployment needs written, decided from replicated state alone.

Theory of operation. A PinnedDeployment's pods are ordinary Pods in the store, written as the
user wrote the deployment: their documents are `edgenode._expand.expand` of it, so editing a
version's template updates that version's pods in place and changing a count adds or removes
that version's highest replicas. `plan_deployment(doc, pods)` compares the deployment with the
pods it owns (`edgenode.io/owner`) and returns a `DeploymentPlan`: the pods to create, update and
delete, the names another owner already holds (never overwritten: reported instead), the
rollout's next step (`edgenode._rollout`) and the status to publish (each version's replicas,
how many run and how many are ready; the rollout's state).

Exactly one node writes for a deployment (`is_writer`): the node its last user edit came from,
while that node is alive in the writer's view, else the alive node that prefers the deployment
most on placement's hash ring. That node is where the edit was made, so its pods are written
at once and authored by the same operator; the fallback repairs what a partition left behind
(two sides changed the counts: the merged deployment wins, and its pods follow). Views that
disagree may briefly give two writers; both write the same documents.

A pod counts as *running* when its status says phase ``Running``, and as *ready* when its
status says ``ready: true`` (a node that reports no readiness: when it runs). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgenode._expand import PodDiff, diff_pods, expand, owned_pods, replica_order
from edgenode._placement import pair_score
from edgenode._rollout import Step, next_step, rollout_spec
from edgenode.objects._deployment import OWNER_ANNOTATION, VERSION_LABEL, owner_ref

PodDocs = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    """What deployment `name` needs written now."""

    name: str
    pods: PodDiff
    foreign: tuple[str, ...]
    """Pod names it wants that a Pod of another owner (or of none) already has."""
    step: Step | None
    """The rollout's next step, when a rollout is under way (`spec.rollout`)."""
    status: dict[str, Any]

    def is_idle(self, current_status: Mapping[str, Any] | None) -> bool:
        """Nothing to write: pods in step, no rollout edit due, status unchanged."""
        edit = self.step is not None and self.step.kind in ("surge", "drain", "complete")
        return self.pods.is_empty() and not edit and dict(current_status or {}) == self.status


def running(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("status") or {}).get("phase") == "Running")


def ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if "ready" in status:
        return bool(status["ready"]) and running(pod)
    return running(pod)


def counts_of(doc: Mapping[str, Any]) -> dict[str, int]:
    """Each version's `replicas`, by version name."""
    versions = (doc.get("spec") or {}).get("versions") or {}
    return {v: int((body or {}).get("replicas", 0)) for v, body in sorted(versions.items())}


def _by_version(pods: PodDocs) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for name in sorted(pods, key=replica_order):
        labels = (pods[name].get("metadata") or {}).get("labels") or {}
        out.setdefault(str(labels.get(VERSION_LABEL, "")), []).append(pods[name])
    return out


def plan_deployment(
    doc: Mapping[str, Any], all_pods: PodDocs, *, expanded: PodDocs | None = None
) -> DeploymentPlan:
    """The plan for PinnedDeployment `doc` (stored, validated when written) given every Pod;
    `expanded`: `expand(doc)` if the caller has it already.

    Raises what `expand` raises for a document that is not a valid PinnedDeployment."""
    name = doc["metadata"]["name"]
    wanted = dict(expanded) if expanded is not None else expand(doc)
    mine = owned_pods(all_pods, name)
    foreign = tuple(n for n in wanted if n in all_pods and n not in mine)
    for n in foreign:
        del wanted[n]
    diff = diff_pods(mine, wanted)
    counts = counts_of(doc)
    by_version = _by_version(mine)
    raw = (doc.get("spec") or {}).get("rollout")
    step: Step | None = None
    rollout_status: dict[str, Any] | None = None
    if isinstance(raw, Mapping):
        spec = rollout_spec(raw)
        target = [p for p in by_version.get(spec.to, []) if p["metadata"]["name"] in wanted]
        available = sum(1 for p in target if (ready if spec.wait_ready else running)(p))
        step = next_step(counts, spec, available)
        rollout_status = {"to": spec.to, "state": step.state, "message": step.message}
    status: dict[str, Any] = {
        "versions": {
            v: {
                "replicas": n,
                "running": sum(1 for p in by_version.get(v, []) if running(p)),
                "ready": sum(1 for p in by_version.get(v, []) if ready(p)),
            }
            for v, n in counts.items()
        }
    }
    if rollout_status is not None:
        status["rollout"] = rollout_status
    elif isinstance((doc.get("status") or {}).get("rollout"), Mapping):
        status["rollout"] = dict(doc["status"]["rollout"])  # the last one's outcome stays
    if foreign:
        status["conflicts"] = list(foreign)
    if not doc.get("status") and not mine and not wanted and len(status) == 1:
        status = {}  # nothing has run and nothing will: no status until something does
    return DeploymentPlan(name, diff, foreign, step, status)


def orphans(all_pods: PodDocs, deployments: Iterable[str]) -> dict[str, list[str]]:
    """Pods whose owner annotation names a PinnedDeployment that no longer exists, by that
    deployment's name."""
    alive = {owner_ref(d) for d in deployments}
    out: dict[str, list[str]] = {}
    for name in sorted(all_pods, key=replica_order):
        notes = (all_pods[name].get("metadata") or {}).get("annotations") or {}
        owner = notes.get(OWNER_ANNOTATION)
        if isinstance(owner, str) and owner.startswith("pinneddeployment/") and owner not in alive:
            out.setdefault(owner.removeprefix("pinneddeployment/"), []).append(name)
    return out


def is_writer(deployment: str, last_editor: str | None, alive: Iterable[str], me: str) -> bool:
    """Whether node `me` writes for `deployment` (see the module docstring). `alive` holds the
    nodes this node's view has alive, itself included."""
    live = set(alive) | {me}
    if last_editor in live:
        return last_editor == me
    return min(live, key=lambda n: (pair_score(deployment, n), n)) == me
