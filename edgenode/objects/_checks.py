"""Rules that span several fields, checked once every field is valid on its own.

Containers of one pod share its network, so no two of them (nor two ports of one container) may
listen on the same port and protocol; its network mode sets what its ports declare
(`_hostports`). Every relaxation of the sandbox a pod spec asks for must
be acknowledged in its `acknowledge` list, and its security settings must agree with each other
(`_security`). A node-loss policy's settings must make sense together and with `node`
(`_nodeloss`), and each container's readiness check with its ports and runtime
(`_readiness`). A PinnedDeployment's pod templates follow the same rules, at their own paths;
its pod names must be DNS labels and its templates may not set the labels its pods get.
"""

from __future__ import annotations

from edgenode.objects._deployment import (
    RESERVED_TEMPLATE_LABELS,
    PinnedDeployment,
    pod_name,
)
from edgenode.objects._fields import DNS_LABEL_MAX
from edgenode.objects._hostports import network_issues
from edgenode.objects._kinds import ObjectModel
from edgenode.objects._pod import PodSpec
from edgenode.objects._readiness import readiness_issues
from edgenode.objects._schema import Loc
from edgenode.objects._security import pod_specs, security_issues
from edgenode.objects._translate import Issue, nothing_applied, path_text


def _port_conflicts(spec: PodSpec, at: Loc) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[tuple[int, str], tuple[str, str]] = {}
    for cname, container in spec.containers.items():
        for pname, port in container.ports.items():
            if port.container_port is None:
                continue  # allocated by the node (network: host-ports), or refused there
            key = (port.container_port, port.protocol)
            if key in seen:
                first_container, first_port = seen[key]
                issues.append(
                    Issue(
                        (*at, "containers", cname, "ports", pname, "containerPort"),
                        "a port no other port of this pod uses (its containers share one network)",
                        repr(port.container_port),
                        f"Port {first_port} of container {first_container} already uses "
                        f"{port.container_port}/{port.protocol}; pick another port. "
                        + nothing_applied(),
                    )
                )
            else:
                seen[key] = (cname, pname)
    return issues


POD_STEPS = frozenset(
    {
        "image.ensure",
        "sandbox.create",
        "network.attach",
        "containers.start",
        "containers.update",
        "health.wait",
        "containers.restart",
        "containers.stop",
        "network.detach",
        "sandbox.delete",
        "status.publish",
    }
)
"""The built-in steps of the pod workflows, where a pod's own steps may go."""


def _workflow_points(spec: PodSpec, at: Loc) -> list[Issue]:
    issues: list[Issue] = []
    if spec.workflow is None:
        return issues
    for name, step in spec.workflow.steps.items():
        where = (*at, "workflow", "steps", name)
        points = [p for p in (step.before, step.after) if p is not None]
        if len(points) != 1:
            issues.append(
                Issue(
                    where,
                    "exactly one of before or after",
                    "both" if points else "neither",
                    "Say where the step runs, e.g. before: containers.start. " + nothing_applied(),
                )
            )
            continue
        if points[0] not in POD_STEPS:
            key = "before" if step.before is not None else "after"
            issues.append(
                Issue(
                    (*where, key),
                    f"a step of the pod workflows ({', '.join(sorted(POD_STEPS))})",
                    repr(points[0]),
                    "Name one of those steps. " + nothing_applied(),
                )
            )
    return issues


def _node_loss_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    rule = spec.on_node_loss
    if rule is None:
        return []
    where = (*at, "onNodeLoss")
    issues: list[Issue] = []
    if rule.policy == "best-effort":
        for key, value in (("lostAfter", rule.lost_after), ("onReturn", rule.on_return)):
            if value is not None:
                issues.append(
                    Issue(
                        (*where, key),
                        f"no {key} with policy best-effort",
                        repr(value),
                        "A best-effort pod never moves, so no replacement is started and "
                        f"{key} has no effect; remove {key}, or set policy: reschedule. "
                        + nothing_applied(),
                    )
                )
    elif spec.node is not None:
        issues.append(
            Issue(
                (*where, "policy"),
                f"'best-effort' for a pod pinned to node {spec.node} (spec.node)",
                repr(rule.policy),
                "A pinned pod cannot run on another node; write policy: best-effort, or remove "
                "node to let placement choose. " + nothing_applied(),
            )
        )
    return issues


def pod_spec_issues(spec: PodSpec, at: Loc = ("spec",)) -> list[Issue]:
    """Problems of the pod spec at `at` that no single field shows."""
    return (
        _port_conflicts(spec, at)
        + network_issues(spec, at)
        + security_issues(spec, at)
        + _workflow_points(spec, at)
        + _node_loss_issues(spec, at)
        + readiness_issues(spec, at)
    )


def _deployment_issues(model: PinnedDeployment) -> list[Issue]:
    issues: list[Issue] = []
    name = model.metadata.name
    for vname, version in model.spec.versions.items():
        at: Loc = ("spec", "versions", vname)
        last = pod_name(name, vname, max(version.replicas - 1, 0))
        if len(last) > DNS_LABEL_MAX:
            issues.append(
                Issue(
                    at,
                    f"pod names <deployment>-<version>-<index> of at most {DNS_LABEL_MAX} "
                    "characters",
                    f"{last!r} ({len(last)} characters)",
                    "Shorten the PinnedDeployment's name or this version's name. "
                    + nothing_applied("fix the names"),
                )
            )
        labels = version.template.metadata.labels
        for key in sorted(RESERVED_TEMPLATE_LABELS & labels.keys()):
            issues.append(
                Issue(
                    (*at, "template", "metadata", "labels", key),
                    f"no label {key} (each pod gets it from its deployment)",
                    repr(labels[key]),
                    f"Remove {key}; edgenode sets it on every pod of the deployment. "
                    + nothing_applied("remove the label"),
                )
            )
    rollout = model.spec.rollout
    if rollout is not None:
        known = ", ".join(model.spec.versions)
        if rollout.to not in model.spec.versions:
            issues.append(
                Issue(
                    ("spec", "rollout", "to"),
                    f"one of this deployment's versions ({known})",
                    repr(rollout.to),
                    "Roll out to a version the deployment has, or add the version first. "
                    + nothing_applied(),
                )
            )
        for vname in sorted(rollout.start.keys() - model.spec.versions.keys()):
            issues.append(
                Issue(
                    ("spec", "rollout", "start", vname),
                    f"a version of this deployment ({known})",
                    repr(vname),
                    "Remove it, or abort the rollout first. " + nothing_applied(),
                )
            )
    return issues


def cross_field_issues(model: ObjectModel) -> list[Issue]:
    """Problems that no single field shows; empty when the object is consistent."""
    issues = [issue for at, spec in pod_specs(model) for issue in pod_spec_issues(spec, at)]
    if isinstance(model, PinnedDeployment):
        issues.extend(_deployment_issues(model))
    return issues


def pod_spec_problems(spec: PodSpec, *, at: str = "spec") -> list[str]:
    """Every cross-field problem of a pod spec, one line each (`spec.x: expected ..., got ...`);
    empty when the spec is consistent. For a spec that did not come through `parse_document`.
    """
    loc: Loc = tuple(at.split(".")) if at else ()
    return [
        f"{path_text(i.loc)}: expected {i.expected}, got {i.actual}. {i.hint}"
        for i in pod_spec_issues(spec, loc)
    ]
