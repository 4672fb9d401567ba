"""`spec.containers.C.readiness`: accepted with its defaults in force, translated to plain
values, and refused with file, document, line, field path, expected and actual value."""

from __future__ import annotations

import textwrap

import pytest

from edgenode._probe import ExecProbe, HttpProbe, ProbeSpec, TcpProbe
from edgenode.objects import FieldProblem, ManifestError, Pod, load_manifests_text
from edgenode.podspec import probe_specs

HEAD = """\
kind: Pod
metadata: {name: web}
spec:
  containers:
    web:
      image: busybox
      ports: {http: {containerPort: 8080}, dns: {containerPort: 53, protocol: udp}}
"""


def pod_text(readiness: str, *, head: str = HEAD) -> str:
    return head + textwrap.indent(f"readiness: {readiness}\n", "      ")


def load(readiness: str) -> Pod:
    [m] = load_manifests_text(pod_text(readiness), source="pod.yaml")
    assert isinstance(m.model, Pod)
    return m.model


def only_problem(readiness: str, *, head: str = HEAD) -> FieldProblem:
    with pytest.raises(ManifestError) as info:
        load_manifests_text(pod_text(readiness, head=head), source="pod.yaml")
    [problem] = info.value.problems
    return problem


def test_a_readiness_check_is_stored_with_every_default_in_force() -> None:
    [m] = load_manifests_text(pod_text("{http: {port: http}}"), source="pod.yaml")
    assert m.document()["spec"]["containers"]["web"]["readiness"] == {
        "http": {"path": "/", "port": "http"},
        "initialDelay": "0s",
        "period": "10s",
        "timeout": "1s",
        "failureThreshold": 3,
        "successThreshold": 1,
    }


def test_each_kind_of_check_translates_with_named_ports_as_numbers_and_seconds() -> None:
    http = load("{http: {path: /healthz, port: http}, period: 1m, initialDelay: 5s}")
    assert probe_specs("web", http.spec) == {
        "web": ProbeSpec(HttpProbe("/healthz", 8080), initial_delay_s=5.0, period_s=60.0)
    }
    tcp = load("{tcp: {port: 9000}, timeout: 3s, failureThreshold: 1, successThreshold: 2}")
    assert probe_specs("web", tcp.spec)["web"] == ProbeSpec(
        TcpProbe(9000), timeout_s=3.0, failure_threshold=1, success_threshold=2
    )
    run = load("{exec: {command: [test, -f, /tmp/ready]}}")
    assert probe_specs("web", run.spec)["web"].check == ExecProbe(("test", "-f", "/tmp/ready"))


def test_a_container_without_readiness_has_no_check() -> None:
    [m] = load_manifests_text(HEAD, source="pod.yaml")
    assert isinstance(m.model, Pod)
    assert probe_specs("web", m.model.spec) == {}


def test_a_check_must_say_exactly_one_way_to_check() -> None:
    both = only_problem("{exec: {command: ['true']}, tcp: {port: 80}}")
    assert both.render().startswith(
        "pod.yaml, document 1 (Pod web), line 8: spec.containers.web.readiness: expected "
        "exactly one of exec, http or tcp, got exec and tcp."
    )
    assert only_problem("{period: 5s}").actual == "none"


def test_a_named_port_must_be_one_of_the_containers_and_a_close_name_is_suggested() -> None:
    problem = only_problem("{http: {path: /healthz, port: htp}}")
    assert problem.path == "spec.containers.web.readiness.http.port"
    assert problem.expected == (
        "a port number, or the name of one of this container's ports (dns, http)"
    )
    assert problem.actual == "'htp'"
    assert problem.hint.startswith("Write 'http', or declare it under spec.containers.web.ports.")
    assert problem.hint.endswith("Nothing was applied; fix the value and try again.")


def test_a_named_port_must_be_a_tcp_port() -> None:
    problem = only_problem("{tcp: {port: dns}}")
    assert (problem.path, problem.actual) == (
        "spec.containers.web.readiness.tcp.port",
        "'dns', a udp port",
    )


@pytest.mark.parametrize(
    ("readiness", "path", "expected", "hint"),
    [
        (
            "{tcp: {port: 70000}}",
            "tcp.port",
            "a port number from 1 to 65535, or the name of one of the container's ports",
            "70000 is not a port number (1 to 65535)",
        ),
        ('{tcp: {port: "80"}}', "tcp.port", "a port number from 1 to 65535", "Remove the quotes"),
        ("{http: {port: 80, path: healthz}}", "http.path", "a URL path starting with /", ""),
        ("{tcp: {port: 80}, period: 0s}", "period", "a duration from 1s to 1h", "shorter than"),
        ("{tcp: {port: 80}, timeout: 2h}", "timeout", "a duration from 1s to 1h", "2h is longer"),
        ("{tcp: {port: 80}, period: 10}", "period", "a duration from 1s to 1h", "needs a unit"),
        ("{tcp: {port: 80}, initialDelay: 2h}", "initialDelay", "from 0s to 1h", "longer"),
        ("{tcp: {port: 80}, failureThreshold: 0}", "failureThreshold", "from 1 to 100", ""),
        ("{exec: {command: []}}", "exec.command", "a non-empty list of strings", ""),
        ("{grpc: {port: 80}}", "grpc", "no field 'grpc' here", ""),
    ],
)
def test_a_bad_setting_is_refused_naming_its_path_and_what_was_expected(
    readiness: str, path: str, expected: str, hint: str
) -> None:
    problem = only_problem(readiness)
    assert problem.path == f"spec.containers.web.readiness.{path}"
    assert expected in problem.expected
    assert hint in problem.hint and "Nothing was applied" in problem.hint
    assert problem.line == 8


def test_a_gvisor_pod_may_not_use_a_network_check_the_node_cannot_reach() -> None:
    head = HEAD.replace("spec:\n", "spec:\n  runtimeClass: gvisor\n")
    problem = only_problem("{tcp: {port: 80}}", head=head)
    assert problem.path == "spec.containers.web.readiness.tcp"
    assert "use exec" in problem.hint
    [m] = load_manifests_text(pod_text("{exec: {command: ['true']}}", head=head), source="p")
    assert m.kind == "Pod"


def test_a_pod_step_may_run_around_health_wait() -> None:
    head = HEAD.replace(
        "spec:\n", "spec:\n  workflow: {steps: {gate: {run: gate.sh, after: health.wait}}}\n"
    )
    [m] = load_manifests_text(head, source="pod.yaml")
    assert m.kind == "Pod"
