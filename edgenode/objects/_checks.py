"""Rules that span several fields, checked once every field is valid on its own.

Containers of one pod share its network, so no two of them (nor two ports of one container) may
listen on the same port and protocol.
"""

from __future__ import annotations

from edgenode.objects._deployment import PinnedDeployment
from edgenode.objects._kinds import ObjectModel
from edgenode.objects._pod import Pod, PodSpec
from edgenode.objects._schema import Loc
from edgenode.objects._translate import Issue, nothing_applied


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


def cross_field_issues(model: ObjectModel) -> list[Issue]:
    """Problems that no single field shows; empty when the object is consistent."""
    if isinstance(model, Pod):
        return _port_conflicts(model.spec, ("spec",))
    if isinstance(model, PinnedDeployment):
        issues: list[Issue] = []
        for vname, version in model.spec.versions.items():
            at: Loc = ("spec", "versions", vname, "template", "spec")
            issues.extend(_port_conflicts(version.template.spec, at))
        return issues
    return []
