"""Rules that span several fields, checked once every field is valid on its own.

Containers of one pod share its network, so no two of them (nor two ports of one container) may
listen on the same port and protocol. Every relaxation of the sandbox a pod spec asks for must
be acknowledged in its `acknowledge` list, and its security settings must agree with each other
(`_security`). A PinnedDeployment's pod templates follow the same rules, at their own paths.
"""

from __future__ import annotations

from edgenode.objects._kinds import ObjectModel
from edgenode.objects._pod import PodSpec
from edgenode.objects._schema import Loc
from edgenode.objects._security import pod_specs, security_issues
from edgenode.objects._translate import Issue, nothing_applied, path_text


def _port_conflicts(spec: PodSpec, at: Loc) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[tuple[int, str], tuple[str, str]] = {}
    for cname, container in spec.containers.items():
        for pname, port in container.ports.items():
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
        "containers.start",
        "containers.update",
        "containers.restart",
        "containers.stop",
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


def pod_spec_issues(spec: PodSpec, at: Loc = ("spec",)) -> list[Issue]:
    """Problems of the pod spec at `at` that no single field shows."""
    return _port_conflicts(spec, at) + security_issues(spec, at) + _workflow_points(spec, at)


def cross_field_issues(model: ObjectModel) -> list[Issue]:
    """Problems that no single field shows; empty when the object is consistent."""
    return [issue for at, spec in pod_specs(model) for issue in pod_spec_issues(spec, at)]


def pod_spec_problems(spec: PodSpec, *, at: str = "spec") -> list[str]:
    """Every cross-field problem of a pod spec, one line each (`spec.x: expected ..., got ...`);
    empty when the spec is consistent. For a spec that did not come through `parse_document`.
    """
    loc: Loc = tuple(at.split(".")) if at else ()
    return [
        f"{path_text(i.loc)}: expected {i.expected}, got {i.actual}. {i.hint}"
        for i in pod_spec_issues(spec, loc)
    ]
