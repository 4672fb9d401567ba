"""The canonical document: defaults filled in, deterministic, and a faithful round trip."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgenode.objects import (
    KINDS,
    Node,
    Pod,
    load_manifests_text,
    parse_document,
    to_document,
)

MINIMAL_POD = """\
kind: Pod
metadata:
  name: web
spec:
  containers:
    web:
      image: busybox
      ports:
        http: {containerPort: 8080}
      resources: {cpu: 2, memory: 1000000}
"""


def test_defaults_are_filled_in_and_empty_optional_maps_left_out() -> None:
    [m] = load_manifests_text(MINIMAL_POD, source="pod.yaml")
    assert m.document() == {
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "containers": {
                "web": {
                    "image": "busybox",
                    "ports": {"http": {"containerPort": 8080, "protocol": "tcp"}},
                    "resources": {"cpu": "2", "memory": "1000000"},
                    "securityContext": {
                        "privileged": False,
                        "seccomp": "default",
                        "readOnlyRootFilesystem": True,
                    },
                }
            },
            "restartPolicy": "always",
            "terminationGracePeriodSeconds": 10,
            "runtimeClass": "runc",
            "hostNetwork": False,
            "network": "pod",
            "userNamespace": True,
        },
    }


def test_model_reads_defaults_and_quantities_as_normalized_strings() -> None:
    [m] = load_manifests_text(MINIMAL_POD, source="pod.yaml")
    assert isinstance(m.model, Pod)
    spec = m.model.spec
    assert spec.restart_policy == "always"
    assert spec.termination_grace_period_seconds == 10
    assert spec.containers["web"].resources.cpu == "2"
    assert spec.containers["web"].env == {}


def test_api_version_is_optional_and_not_part_of_the_canonical_document() -> None:
    [without] = load_manifests_text(MINIMAL_POD, source="a")
    [with_it] = load_manifests_text("apiVersion: edgenode/v1\n" + MINIMAL_POD, source="b")
    assert without.model == with_it.model
    assert "apiVersion" not in with_it.document()


def test_canonical_document_does_not_depend_on_key_order() -> None:
    one = """\
kind: Pod
metadata: {name: p, labels: {b: "2", a: "1"}}
spec:
  containers:
    zeta: {image: x, env: {B: "2", A: "1"}}
    alpha: {image: y}
"""
    two = """\
spec:
  containers:
    alpha: {image: y}
    zeta: {env: {A: "1", B: "2"}, image: x}
metadata: {labels: {a: "1", b: "2"}, name: p}
kind: Pod
"""
    [m1] = load_manifests_text(one, source="one")
    [m2] = load_manifests_text(two, source="two")
    assert json.dumps(m1.document()) == json.dumps(m2.document())
    assert list(m1.document()["spec"]["containers"]) == ["alpha", "zeta"]


def test_canonical_document_is_json_serializable_and_the_same_each_time() -> None:
    [m] = load_manifests_text(MINIMAL_POD, source="pod.yaml")
    assert json.dumps(m.document()) == json.dumps(m.document())
    assert m.document() is not m.document()


def test_node_document_round_trips_with_its_status() -> None:
    doc = {
        "kind": "Node",
        "metadata": {"name": "edge-1", "labels": {"zone": "north"}},
        "status": {
            "capacity": {"cpu": 4, "memory": "8Gi"},
            "addresses": {"lan": "fd00::1"},
            "phase": "Ready",
        },
    }
    m = parse_document(doc)
    assert isinstance(m.model, Node)
    assert m.document() == {
        "kind": "Node",
        "metadata": {"name": "edge-1", "labels": {"zone": "north"}},
        "spec": {"unschedulable": False},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi"},
            "addresses": {"lan": "fd00::1"},
            "phase": "Ready",
        },
    }
    assert parse_document(m.document()).model == m.model


def test_kinds_registry_maps_each_kind_name_to_its_model() -> None:
    assert set(KINDS) == {"Pod", "PinnedDeployment", "Node"}
    for name, model in KINDS.items():
        assert model.model_fields["kind"].default == name


# --- property: any valid pod round-trips --------------------------------------------------

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
env_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z")
text = st.text(st.characters(codec="utf-8"), max_size=20)
cpu = st.one_of(
    st.integers(0, 64),
    st.integers(1, 64000).map(lambda m: f"{m}m"),
    st.sampled_from(["0.5", "0.25", "1.5", "2"]),
)
memory = st.one_of(
    st.integers(0, 2**40),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(1, 4096),
        st.sampled_from(["Ki", "Mi", "Gi", "k", "M", "G"]),
    ),
)
ports = st.dictionaries(
    labels,
    st.fixed_dictionaries(
        {"containerPort": st.integers(1, 65535)},
        optional={"protocol": st.sampled_from(["tcp", "udp"])},
    ),
    max_size=1,
)
container = st.fixed_dictionaries(
    {"image": st.sampled_from(["busybox", "busybox:1.36", "registry.local/app@sha256:abc"])},
    optional={
        "command": st.lists(text, min_size=1, max_size=3),
        "args": st.lists(text, max_size=3),
        "env": st.dictionaries(env_names, text, max_size=3),
        "workingDir": st.sampled_from(["/", "/srv", "/tmp/x"]),
        "resources": st.fixed_dictionaries({}, optional={"cpu": cpu, "memory": memory}),
    },
)


@st.composite
def pod_documents(draw: st.DrawFn) -> dict[str, Any]:
    containers = draw(st.dictionaries(labels, container, min_size=1, max_size=3))
    # Containers of one pod may not share a port: keep ports on one container only.
    for i, c in enumerate(containers.values()):
        if i == 0:
            c["ports"] = draw(ports)
    spec: dict[str, Any] = {"containers": containers}
    spec.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "restartPolicy": st.sampled_from(["always", "on-failure", "never"]),
                    "nodeSelector": st.dictionaries(labels, labels, max_size=2),
                    "node": labels,
                    "terminationGracePeriodSeconds": st.integers(0, 600),
                },
            )
        )
    )
    return {
        "kind": "Pod",
        "metadata": {
            "name": draw(labels),
            "labels": draw(st.dictionaries(labels, labels, max_size=2)),
        },
        "spec": spec,
    }


@settings(max_examples=150, deadline=None)
@given(pod_documents())
def test_any_valid_pod_round_trips_through_its_canonical_document(doc: dict[str, Any]) -> None:
    m = parse_document(doc)
    canonical = m.document()
    again = parse_document(canonical)
    assert again.model == m.model
    assert again.document() == canonical
    assert json.loads(json.dumps(canonical)) == canonical
    assert to_document(again.model) == canonical


def test_manifests_compare_by_value_and_can_be_kept_in_sets() -> None:
    [a] = load_manifests_text(MINIMAL_POD, source="pod.yaml")
    [b] = load_manifests_text(MINIMAL_POD, source="pod.yaml")
    assert a == b
    assert len({a, b}) == 1
