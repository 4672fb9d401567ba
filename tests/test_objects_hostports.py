"""`network: host-ports`: the pod shares the node's network, so it must be acknowledged like
hostNetwork, and its ports are named, never numbered; `network: pod` ports need their number."""

from __future__ import annotations

from typing import Any

import pytest

from edgenode.objects import (
    FieldProblem,
    ManifestError,
    Pod,
    host_port_names,
    parse_document,
    pod_relaxations,
    relaxations,
)


def pod(**spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", {"web": {"image": "busybox", "ports": {"http": {}}}})
    return {"kind": "Pod", "metadata": {"name": "web"}, "spec": spec}


def host_ports(**spec: Any) -> dict[str, Any]:
    return pod(network="host-ports", acknowledge=["host-network"], **spec)


def problems_of(doc: dict[str, Any]) -> list[FieldProblem]:
    with pytest.raises(ManifestError) as info:
        parse_document(doc, source="pod.yaml")
    return info.value.problems


def only_problem(doc: dict[str, Any]) -> FieldProblem:
    problems = problems_of(doc)
    assert len(problems) == 1, "\n".join(p.render() for p in problems)
    return problems[0]


def test_network_defaults_to_the_pods_own_and_is_shown_in_the_document() -> None:
    doc = pod(containers={"web": {"image": "busybox", "ports": {"http": {"containerPort": 80}}}})
    m = parse_document(doc)
    assert isinstance(m.model, Pod)
    assert m.model.spec.network == "pod"
    assert m.document()["spec"]["network"] == "pod"
    assert host_port_names(m.model.spec) == ()


def test_host_ports_asks_for_the_host_network_relaxation_at_its_field() -> None:
    m = parse_document(host_ports())
    assert isinstance(m.model, Pod)
    assert relaxations(m.model.spec) == {"host-network": "spec.network"}
    assert pod_relaxations(m.model.spec) == {"host-network"}
    assert m.document()["spec"]["containers"]["web"]["ports"] == {"http": {"protocol": "tcp"}}


def test_host_ports_without_its_acknowledgement_is_refused_naming_what_to_add() -> None:
    problem = only_problem(pod(network="host-ports"))
    assert (problem.path, problem.actual) == ("spec.network", "'host-ports', not acknowledged")
    assert "`acknowledge: [host-network]`" in problem.expected
    assert "puts the pod in the node's network namespace" in problem.hint
    assert "add `acknowledge: [host-network]` to the pod's spec" in problem.hint


def test_host_port_names_are_every_containers_ports_sorted() -> None:
    containers = {
        "web": {"image": "busybox", "ports": {"http": {}, "admin": {"protocol": "tcp"}}},
        "dns": {"image": "busybox", "ports": {"dns": {"protocol": "udp"}}},
    }
    m = parse_document(host_ports(containers=containers))
    assert isinstance(m.model, Pod)
    assert host_port_names(m.model.spec) == ("admin", "dns", "http")


def test_a_container_port_number_with_host_ports_is_refused_naming_the_variable() -> None:
    containers = {"web": {"image": "busybox", "ports": {"web-ui": {"containerPort": 8080}}}}
    problem = only_problem(host_ports(containers=containers))
    assert (problem.path, problem.actual) == (
        "spec.containers.web.ports.web-ui.containerPort",
        "8080",
    )
    assert problem.expected.startswith("no containerPort with network: host-ports")
    assert problem.hint.startswith(
        "Remove containerPort and have the process listen on $PORT_WEB_UI"
    )


def test_a_port_without_a_number_with_the_pods_own_network_is_refused() -> None:
    problem = only_problem(pod())
    assert (problem.path, problem.actual) == (
        "spec.containers.web.ports.http.containerPort",
        "no value",
    )
    assert problem.expected.startswith("a port number from 1 to 65535")
    assert "set network: host-ports" in problem.hint


def test_one_port_name_in_two_containers_is_refused_with_host_ports() -> None:
    containers = {
        "a": {"image": "busybox", "ports": {"http": {}}},
        "b": {"image": "busybox", "ports": {"http": {}}},
    }
    problem = only_problem(host_ports(containers=containers))
    assert (problem.path, problem.actual) == ("spec.containers.b.ports.http", "'http'")
    assert "passed to every container as PORT_HTTP" in problem.expected
    assert problem.hint.startswith("Container a already has port http; rename one of them.")


def test_an_env_entry_the_node_sets_is_refused() -> None:
    containers = {
        "web": {"image": "busybox", "ports": {"http": {}}},
        "side": {"image": "busybox", "env": {"PORT_HTTP": "80", "PORT": "1"}},
    }
    problem = only_problem(host_ports(containers=containers))
    assert (problem.path, problem.actual) == ("spec.containers.side.env.PORT_HTTP", "'80'")
    assert problem.expected == "no PORT_HTTP in env (the node sets it with network: host-ports)"


def test_host_network_together_with_host_ports_is_refused() -> None:
    problem = only_problem(host_ports(hostNetwork=True))
    assert (problem.path, problem.actual) == ("spec.hostNetwork", "true")
    assert problem.expected == "false or no value with network: host-ports"
    assert "remove hostNetwork" in problem.hint


def test_an_unknown_network_mode_is_refused_with_a_suggestion() -> None:
    problem = only_problem(pod(network="hostports"))
    assert (problem.path, problem.expected) == ("spec.network", "'pod' or 'host-ports'")
    assert problem.hint.startswith("Write 'host-ports'.")


def test_a_named_readiness_port_is_allowed_with_host_ports() -> None:
    containers = {
        "web": {
            "image": "busybox",
            "ports": {"http": {}},
            "readiness": {"http": {"path": "/", "port": "http"}},
        }
    }
    m = parse_document(host_ports(containers=containers))
    assert isinstance(m.model, Pod)


def test_a_pod_status_carries_the_allocated_host_ports() -> None:
    doc = host_ports()
    doc["status"] = {"phase": "Running", "node": "n1", "hostPorts": {"http": 30000}}
    m = parse_document(doc, allow_status=True)
    assert isinstance(m.model, Pod) and m.model.status is not None
    assert m.model.status.host_ports == {"http": 30000}
    assert m.document()["status"]["hostPorts"] == {"http": 30000}
