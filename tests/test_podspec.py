"""A Pod's spec becomes the sandbox's PodDef: plain values, checked relaxations, nothing lost."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from test_objects_document import pod_documents

from edgenode._probe import HttpProbe, TcpProbe
from edgenode.objects import (
    PinnedDeployment,
    Pod,
    PodSpec,
    load_manifests,
    load_manifests_text,
    parse_document,
)
from edgenode.podspec import PodSpecError, pod_def, probe_specs
from sandbox._oci import ContainerSpec, IdRange, PodSandbox, runtime_config
from sandbox._spec import ContainerDef, PodDef

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FULL_POD = """\
kind: Pod
metadata: {name: gateway}
spec:
  restartPolicy: on-failure
  terminationGracePeriodSeconds: 30
  runtimeClass: crun
  hostNetwork: true
  acknowledge: [host-network, run-as-root, add-capability, host-path, writable-root]
  volumes:
    config: {hostPath: {path: /etc/gateway}}
    state: {hostPath: {path: /var/lib/gateway, readOnly: false}}
  containers:
    proxy:
      image: busybox:1.36
      command: [httpd, -f]
      args: [-p, "80"]
      env: {B: "2", A: "1"}
      workingDir: /srv
      resources: {cpu: 250m, memory: 64Mi}
      securityContext:
        runAsRoot: true
        capabilities: {add: [NET_BIND_SERVICE]}
        readOnlyRootFilesystem: false
      volumeMounts:
        state: {mountPath: /var/lib/gateway/state}
        config: {mountPath: /var/lib/gateway, readOnly: true}
    sidecar:
      image: busybox
      securityContext: {runAsUser: 2000, runAsGroup: 3000}
      volumeMounts:
        state: {mountPath: /state, readOnly: true}
"""


def spec_of(text: str) -> PodSpec:
    [m] = load_manifests_text(textwrap.dedent(text), source="pod.yaml")
    assert isinstance(m.model, Pod)
    return m.model.spec


def minimal(**container: Any) -> PodSpec:
    doc = {
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": {"web": {"image": "busybox", **container}}},
    }
    model = parse_document(doc).model
    assert isinstance(model, Pod)
    return model.spec


def test_full_pod_translates_every_field() -> None:
    assert pod_def("gateway", spec_of(FULL_POD)) == PodDef(
        name="gateway",
        containers={
            "proxy": ContainerDef(
                image="busybox:1.36",
                command=("httpd", "-f"),
                args=("-p", "80"),
                env={"A": "1", "B": "2"},
                working_dir="/srv",
                user=(0, 0),
                memory_bytes=64 * 1024**2,
                cpu_millis=250,
                relaxations=frozenset(
                    {"run-as-root", "add-capability", "writable-root", "host-path"}
                ),
                capabilities=("CAP_NET_BIND_SERVICE",),
                host_paths=(
                    ("/etc/gateway", "/var/lib/gateway", True),
                    ("/var/lib/gateway", "/var/lib/gateway/state", False),
                ),
            ),
            "sidecar": ContainerDef(
                image="busybox",
                user=(2000, 3000),
                relaxations=frozenset({"host-path"}),
                host_paths=(("/var/lib/gateway", "/state", True),),
            ),
        },
        restart_policy="on-failure",
        grace_s=30.0,
        runtime_class="crun",
        relaxations=frozenset({"host-network"}),
    )


def test_defaults_give_the_image_user_no_limits_and_no_relaxations() -> None:
    pod = pod_def("web", minimal())
    assert pod == PodDef(name="web", containers={"web": ContainerDef(image="busybox")})
    web = pod.containers["web"]
    assert (web.user, web.memory_bytes, web.cpu_millis, web.pids) == (None, None, None, None)
    assert (web.command, web.args, web.working_dir) == (None, None, None)
    assert (web.relaxations, web.capabilities, web.host_paths) == (frozenset(), (), ())
    assert (pod.restart_policy, pod.grace_s, pod.runtime_class) == ("always", 10.0, "runc")
    assert pod.relaxations == frozenset()


def test_empty_args_stay_empty_rather_than_becoming_the_image_cmd() -> None:
    assert pod_def("web", minimal(args=[])).containers["web"].args == ()


@pytest.mark.parametrize(
    ("resources", "memory", "millis"),
    [
        ({"memory": "128Mi", "cpu": "0.5"}, 134217728, 500),
        ({"memory": "1G", "cpu": 2}, 10**9, 2000),
        ({"memory": 1000000, "cpu": "1m"}, 1000000, 1),
        ({"cpu": "1.25"}, None, 1250),
    ],
)
def test_resources_become_bytes_and_millicores(
    resources: dict[str, Any], memory: int | None, millis: int | None
) -> None:
    web = pod_def("web", minimal(resources=resources)).containers["web"]
    assert (web.memory_bytes, web.cpu_millis) == (memory, millis)


def test_user_without_group_runs_in_the_group_of_the_same_id() -> None:
    spec = minimal(securityContext={"runAsUser": 4000})
    assert pod_def("web", spec).containers["web"].user == (4000, 4000)


def test_user_0_is_root_and_runs_as_user_and_group_0() -> None:
    text = (
        "kind: Pod\nmetadata: {name: web}\nspec:\n  acknowledge: [run-as-root]\n"
        "  containers: {web: {image: x, securityContext: {runAsUser: 0}}}\n"
    )
    web = pod_def("web", spec_of(text)).containers["web"]
    assert (web.user, web.relaxations) == ((0, 0), frozenset({"run-as-root"}))


def test_pod_wide_relaxations_go_to_the_pod_and_the_rest_to_their_containers() -> None:
    text = """\
        kind: Pod
        metadata: {name: web}
        spec:
          hostNetwork: true
          userNamespace: false
          acknowledge: [host-network, no-user-namespace, privileged, unconfined-seccomp]
          containers:
            a: {image: x, securityContext: {privileged: true}}
            b: {image: x, securityContext: {seccomp: unconfined}}
            c: {image: x}
        """
    pod = pod_def("web", spec_of(text))
    assert pod.relaxations == frozenset({"host-network", "no-user-namespace"})
    assert {name: c.relaxations for name, c in pod.containers.items()} == {
        "a": frozenset({"privileged"}),
        "b": frozenset({"unconfined-seccomp"}),
        "c": frozenset(),
    }


def test_host_ports_run_in_the_nodes_network_with_every_port_name_to_allocate() -> None:
    text = """\
        kind: Pod
        metadata: {name: web}
        spec:
          network: host-ports
          acknowledge: [host-network]
          containers:
            web:
              image: x
              ports: {http: {}, admin: {}}
              readiness: {http: {path: /healthz, port: http}}
            side:
              image: x
              ports: {dns: {protocol: udp}}
              readiness: {tcp: {port: 9000}}
        """
    spec = spec_of(text)
    pod = pod_def("web", spec)
    assert pod.relaxations == frozenset({"host-network"})
    assert pod.host_ports == ("admin", "dns", "http")
    assert all(c.env == {} for c in pod.containers.values())  # the sandbox adds PORT_<NAME>
    checks = {c: s.check for c, s in probe_specs("web", spec).items()}
    assert checks == {"web": HttpProbe("/healthz", "http"), "side": TcpProbe(9000)}


def test_only_containers_that_mount_a_host_path_get_the_host_path_relaxation() -> None:
    text = """\
        kind: Pod
        metadata: {name: web}
        spec:
          acknowledge: [host-path]
          volumes: {logs: {hostPath: {path: /var/log}}}
          containers:
            reader: {image: x, volumeMounts: {logs: {mountPath: /logs}}}
            other: {image: x}
        """
    pod = pod_def("web", spec_of(text))
    assert pod.containers["reader"].relaxations == frozenset({"host-path"})
    assert pod.containers["reader"].host_paths == (("/var/log", "/logs", True),)
    assert pod.containers["other"].relaxations == frozenset()
    assert pod.containers["other"].host_paths == ()


def test_a_mount_may_make_a_writable_volume_read_only() -> None:
    text = """\
        kind: Pod
        metadata: {name: web}
        spec:
          acknowledge: [host-path]
          volumes: {data: {hostPath: {path: /srv, readOnly: false}}}
          containers:
            writer: {image: x, volumeMounts: {data: {mountPath: /data}}}
            reader: {image: x, volumeMounts: {data: {mountPath: /data, readOnly: true}}}
        """
    pod = pod_def("web", spec_of(text))
    assert pod.containers["writer"].host_paths == (("/srv", "/data", False),)
    assert pod.containers["reader"].host_paths == (("/srv", "/data", True),)


def test_a_spec_that_skipped_validation_is_refused_not_translated() -> None:
    spec = PodSpec.model_validate(
        {"containers": {"web": {"image": "x", "securityContext": {"runAsRoot": True}}}}
    )
    with pytest.raises(PodSpecError) as info:
        pod_def("web", spec)
    assert info.value.name == "web"
    [problem] = info.value.problems
    assert problem.startswith("spec.containers.web.securityContext.runAsRoot: expected")
    assert "`acknowledge: [run-as-root]`" in problem
    assert "nothing was run" in str(info.value)


def test_a_mount_of_an_undeclared_volume_is_refused_not_translated() -> None:
    spec = PodSpec.model_validate(
        {"containers": {"web": {"image": "x", "volumeMounts": {"data": {"mountPath": "/d"}}}}}
    )
    with pytest.raises(PodSpecError, match=r"spec\.containers\.web\.volumeMounts\.data"):
        pod_def("web", spec)


def test_every_example_pod_and_template_translates() -> None:
    specs: list[PodSpec] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for m in load_manifests(path):
            if isinstance(m.model, Pod):
                specs.append(m.model.spec)
            elif isinstance(m.model, PinnedDeployment):
                specs.extend(v.template.spec for v in m.model.spec.versions.values())
    assert specs
    for spec in specs:
        pod = pod_def("example", spec)
        assert set(pod.containers) == set(spec.containers)


def test_translated_relaxations_and_capabilities_are_what_the_runtime_config_accepts() -> None:
    pod = pod_def("gateway", spec_of(FULL_POD))
    proxy = pod.containers["proxy"]
    spec = ContainerSpec(
        rootfs="/rootfs",
        args=[*(proxy.command or ()), *(proxy.args or ())],
        env=proxy.env,
        cwd=proxy.working_dir or "/",
        memory_bytes=proxy.memory_bytes,
        cpu_millis=proxy.cpu_millis,
        relaxations=proxy.relaxations | pod.relaxations,
        capabilities=proxy.capabilities,
        host_paths=proxy.host_paths,
    )
    config = runtime_config(spec, PodSandbox(IdRange(1 << 20, 1 << 16), None, "gw"), arch="x86_64")
    assert config["process"]["user"]["uid"] == 0
    assert config["process"]["capabilities"]["effective"] == ["CAP_NET_BIND_SERVICE"]
    assert config["root"]["readonly"] is False
    assert "network" not in {ns["type"] for ns in config["linux"]["namespaces"]}
    binds = [m for m in config["mounts"] if m["type"] == "bind"]
    assert [(m["source"], m["destination"]) for m in binds] == [
        ("/etc/gateway", "/var/lib/gateway"),
        ("/var/lib/gateway", "/var/lib/gateway/state"),
    ]


@settings(max_examples=100, deadline=None)
@given(pod_documents())
def test_any_valid_pod_translates_with_one_definition_per_container(doc: dict[str, Any]) -> None:
    model = parse_document(doc).model
    assert isinstance(model, Pod)
    pod = pod_def(model.metadata.name, model.spec)
    assert list(pod.containers) == list(model.spec.containers)
    assert pod.grace_s == model.spec.termination_grace_period_seconds
    for name, container in pod.containers.items():
        assert container.image == model.spec.containers[name].image
        assert container.relaxations == frozenset()


def test_podspec_is_pure() -> None:
    source = Path(__file__).resolve().parent.parent / "edgenode" / "podspec.py"
    tree = ast.parse(source.read_text())
    modules = {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        a.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
    }
    assert modules <= {"__future__", "collections", "typing", "edgenode", "sandbox"}
