"""A pod's network mode and the rules its ports follow in each.

Theory of operation. `spec.network` is `pod` (the default: the pod's own network namespace,
each port declares the `containerPort` its container listens on) or `host-ports` (Borg-style:
the pod shares the node's network namespace, and the node allocates each of its ports a number
of its own, passed to every container as `PORT_<NAME>` and published in `status.hostPorts`).
`host-ports` shares the node's network, so it asks for the `host-network` relaxation
(`_security`). Its rules:

- no `containerPort`: the node chooses the number, and the process must listen on it;
- each port name once in the pod: a name is one port of the node, and every container of the
  pod (they share the network) sees every name's variable;
- no `env` entry of a container may set a `PORT_<NAME>` the node sets;
- not together with `hostNetwork: true`, which would say the same thing twice in two ways.

With `network: pod` every port needs its `containerPort`. Pure.
"""

from __future__ import annotations

from edgenode.objects._pod import PodSpec
from edgenode.objects._schema import Loc
from edgenode.objects._translate import Issue, nothing_applied
from sandbox._ports import env_name


def host_port_names(spec: PodSpec) -> tuple[str, ...]:
    """The names of the ports the node allocates for `spec`, sorted; none with network: pod."""
    if spec.network != "host-ports":
        return ()
    return tuple(sorted({p for c in spec.containers.values() for p in c.ports}))


def _pod_network_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    issues: list[Issue] = []
    for cname, container in spec.containers.items():
        for pname, port in container.ports.items():
            if port.container_port is None:
                issues.append(
                    Issue(
                        (*at, "containers", cname, "ports", pname, "containerPort"),
                        "a port number from 1 to 65535 (with network: pod each port says "
                        "where its container listens)",
                        "no value",
                        "Add containerPort, or set network: host-ports to have the node "
                        f"allocate the port. {nothing_applied()}",
                    )
                )
    return issues


def _host_ports_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    issues: list[Issue] = []
    if spec.host_network:
        issues.append(
            Issue(
                (*at, "hostNetwork"),
                "false or no value with network: host-ports",
                "true",
                "network: host-ports already puts the pod in the node's network; remove "
                "hostNetwork, or remove network: host-ports to choose the ports yourself. "
                + nothing_applied(),
            )
        )
    owners: dict[str, str] = {}
    for cname, container in spec.containers.items():
        here: Loc = (*at, "containers", cname)
        for pname, port in container.ports.items():
            variable = env_name(pname)
            if port.container_port is not None:
                issues.append(
                    Issue(
                        (*here, "ports", pname, "containerPort"),
                        "no containerPort with network: host-ports (the node allocates each "
                        "port's number)",
                        repr(port.container_port),
                        f"Remove containerPort and have the process listen on ${variable}, "
                        "the number the node passes it; or set network: pod to choose the "
                        f"number yourself. {nothing_applied()}",
                    )
                )
            first = owners.setdefault(pname, cname)
            if first != cname:
                issues.append(
                    Issue(
                        (*here, "ports", pname),
                        "a port name no other container of this pod uses (with network: "
                        f"host-ports each name is one port of the node, passed to every "
                        f"container as {variable})",
                        repr(pname),
                        f"Container {first} already has port {pname}; rename one of them. "
                        + nothing_applied(),
                    )
                )
    variables = {env_name(p): p for p in owners}
    for cname, container in spec.containers.items():
        for name in sorted(variables.keys() & container.env.keys()):
            issues.append(
                Issue(
                    (*at, "containers", cname, "env", name),
                    f"no {name} in env (the node sets it with network: host-ports)",
                    repr(container.env[name]),
                    f"With network: host-ports the node sets {name} to the number of port "
                    f"{variables[name]}; remove it from env. {nothing_applied()}",
                )
            )
    return issues


def network_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    """Problems of the pod spec at `at` with its network mode and ports; empty when none."""
    if spec.network == "host-ports":
        return _host_ports_issues(spec, at)
    return _pod_network_issues(spec, at)
