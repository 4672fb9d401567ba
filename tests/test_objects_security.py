"""Every relaxation of the sandbox needs its setting and its acknowledgement; either alone is
refused, naming the field and the exact line to add."""

from __future__ import annotations

import copy
import textwrap
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgenode.objects import (
    FieldProblem,
    ManifestError,
    Pod,
    RuntimeClass,
    load_manifests_text,
    object_relaxations,
    parse_document,
    relaxations,
)
from sandbox._relax import RELAXATIONS, added
from sandbox.runtimes import CLASSES


def pod(spec: dict[str, Any], name: str = "web") -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name}, "spec": spec}


def container(**fields: Any) -> dict[str, Any]:
    return {"image": "busybox", **fields}


def secured(**security: Any) -> dict[str, Any]:
    return {"containers": {"web": container(securityContext=security)}}


def problems_of(doc: dict[str, Any]) -> list[FieldProblem]:
    with pytest.raises(ManifestError) as info:
        parse_document(doc, source="pod.yaml")
    return info.value.problems


def only_problem(doc: dict[str, Any]) -> FieldProblem:
    problems = problems_of(doc)
    assert len(problems) == 1, "\n".join(p.render() for p in problems)
    return problems[0]


def with_ack(spec: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**copy.deepcopy(spec), "acknowledge": list(names)}


SECURITY = "spec.containers.web.securityContext"
HOST_VOLUME = {
    "volumes": {"logs": {"hostPath": {"path": "/var/log"}}},
    "containers": {"web": container(volumeMounts={"logs": {"mountPath": "/logs"}})},
}

#: (relaxation, a spec that asks for it, the path of the setting that asks)
ASKING: list[tuple[str, dict[str, Any], str]] = [
    ("run-as-root", secured(runAsRoot=True), f"{SECURITY}.runAsRoot"),
    ("run-as-root", secured(runAsUser=0), f"{SECURITY}.runAsUser"),
    (
        "add-capability",
        secured(capabilities={"add": ["NET_ADMIN"]}),
        f"{SECURITY}.capabilities.add",
    ),
    ("host-path", HOST_VOLUME, "spec.volumes.logs.hostPath"),
    ("host-network", {**secured(), "hostNetwork": True}, "spec.hostNetwork"),
    ("host-network", {**secured(), "network": "host-ports"}, "spec.network"),
    ("privileged", secured(privileged=True), f"{SECURITY}.privileged"),
    ("unconfined-seccomp", secured(seccomp="unconfined"), f"{SECURITY}.seccomp"),
    ("writable-root", secured(readOnlyRootFilesystem=False), f"{SECURITY}.readOnlyRootFilesystem"),
    ("no-user-namespace", {**secured(), "userNamespace": False}, "spec.userNamespace"),
]
ASKING_IDS = [f"{name}-{path.rsplit('.', 1)[-1]}" for name, _, path in ASKING]


def test_every_relaxation_of_the_sandbox_has_a_setting_that_asks_for_it() -> None:
    assert {name for name, _, _ in ASKING} == set(RELAXATIONS)


@pytest.mark.parametrize(("name", "spec", "path"), ASKING, ids=ASKING_IDS)
def test_relaxation_without_acknowledgement_is_refused_naming_field_and_line_to_add(
    name: str, spec: dict[str, Any], path: str
) -> None:
    problem = only_problem(pod(spec))
    assert problem.path == path
    assert (
        problem.expected == f"an acknowledgement of this setting (`acknowledge: [{name}]` in spec)"
    )
    assert problem.actual.endswith(", not acknowledged")
    assert f"add `acknowledge: [{name}]` to the pod's spec, or remove the setting." in problem.hint
    assert RELAXATIONS[name] in problem.hint
    assert problem.hint.endswith("Nothing was applied; fix the spec and try again.")


@pytest.mark.parametrize(("name", "spec", "path"), ASKING, ids=ASKING_IDS)
def test_relaxation_with_its_acknowledgement_is_accepted(
    name: str, spec: dict[str, Any], path: str
) -> None:
    m = parse_document(pod(with_ack(spec, name)))
    assert isinstance(m.model, Pod)
    assert m.model.spec.acknowledge == [name]
    assert relaxations(m.model.spec) == {name: path}
    assert m.document()["spec"]["acknowledge"] == [name]


@pytest.mark.parametrize(("name", "spec", "path"), ASKING, ids=ASKING_IDS)
def test_acknowledgement_without_its_setting_is_refused(
    name: str, spec: dict[str, Any], path: str
) -> None:
    problem = only_problem(pod(with_ack(secured(), name)))
    assert (problem.path, problem.actual) == ("spec.acknowledge", repr(name))
    assert problem.expected == "acknowledgements only of relaxations this spec asks for"
    assert problem.hint.startswith(
        f"Acknowledges {name!r}, but nothing in the spec asks for it; remove it."
    )


def test_refusal_in_a_file_names_its_line_and_the_acknowledgement_to_add() -> None:
    text = """\
        kind: Pod
        metadata: {name: web}
        spec:
          containers:
            web:
              image: busybox
              securityContext:
                runAsRoot: true
        """
    with pytest.raises(ManifestError) as info:
        load_manifests_text(textwrap.dedent(text), source="web.yaml")
    [problem] = info.value.problems
    assert problem.render().startswith(
        "web.yaml, document 1 (Pod web), line 8: spec.containers.web.securityContext.runAsRoot: "
        "expected an acknowledgement of this setting (`acknowledge: [run-as-root]` in spec), "
        "got true, not acknowledged. This runs the container's process as root"
    )


def test_secure_defaults_ask_for_nothing_and_need_no_acknowledgement() -> None:
    m = parse_document(pod(secured()))
    assert isinstance(m.model, Pod)
    spec = m.model.spec
    assert relaxations(spec) == {}
    context = spec.containers["web"].security_context
    assert (context.run_as_root, context.run_as_user, context.run_as_group) == (None, None, None)
    assert (context.privileged, context.seccomp, context.read_only_root_filesystem) == (
        False,
        "default",
        True,
    )
    assert (spec.host_network, spec.user_namespace, spec.runtime_class) == (False, True, "runc")
    assert "acknowledge" not in m.document()["spec"]
    assert "capabilities" not in m.document()["spec"]["containers"]["web"]["securityContext"]


def test_settings_written_at_their_secure_values_ask_for_nothing() -> None:
    spec = secured(
        runAsRoot=False,
        runAsUser=1000,
        privileged=False,
        capabilities={"add": []},
        seccomp="default",
        readOnlyRootFilesystem=True,
    )
    m = parse_document(pod({**spec, "hostNetwork": False, "userNamespace": True}))
    assert isinstance(m.model, Pod)
    assert relaxations(m.model.spec) == {}


def test_one_acknowledgement_covers_every_setting_that_asks_and_the_refusal_names_them() -> None:
    spec = {
        "containers": {
            "a": container(securityContext={"runAsRoot": True}),
            "b": container(securityContext={"runAsUser": 0}),
        }
    }
    problem = only_problem(pod(spec))
    assert problem.path == "spec.containers.a.securityContext.runAsRoot"
    assert "The same acknowledgement covers spec.containers.b.securityContext.runAsUser." in (
        problem.hint
    )
    m = parse_document(pod(with_ack(spec, "run-as-root")))
    assert isinstance(m.model, Pod)
    assert relaxations(m.model.spec) == {
        "run-as-root": "spec.containers.a.securityContext.runAsRoot"
    }


def test_privileged_needs_its_own_acknowledgement_besides_the_ones_it_implies() -> None:
    spec = secured(privileged=True, seccomp="unconfined")
    problem = only_problem(pod(with_ack(spec, "privileged")))
    assert problem.path == f"{SECURITY}.seccomp"
    assert "`acknowledge: [unconfined-seccomp]`" in problem.expected
    parse_document(pod(with_ack(spec, "privileged", "unconfined-seccomp")))


def test_unknown_acknowledgement_is_refused_with_the_known_names_and_a_suggestion() -> None:
    problem = only_problem(pod(with_ack(secured(runAsRoot=True), "run-as-root", "host-netwrk")))
    assert (problem.path, problem.actual) == ("spec.acknowledge[1]", "'host-netwrk'")
    assert problem.expected == "the name of a relaxation: one of " + ", ".join(sorted(RELAXATIONS))
    assert problem.hint.startswith("Write 'host-network'.")


def test_acknowledgement_written_as_a_single_string_suggests_a_list() -> None:
    spec = {**secured(runAsRoot=True), "acknowledge": "run-as-root"}
    problem = only_problem(pod(spec))
    assert (problem.path, problem.expected) == ("spec.acknowledge", "a list of strings")
    assert problem.hint.startswith("Write a YAML list such as [run-as-root].")


def test_acknowledgements_are_kept_sorted_and_once_each() -> None:
    spec = with_ack(
        secured(runAsRoot=True, privileged=True), "run-as-root", "privileged", "run-as-root"
    )
    m = parse_document(pod(spec))
    assert m.document()["spec"]["acknowledge"] == ["privileged", "run-as-root"]


def test_pinned_deployment_templates_need_their_own_acknowledgements_at_their_paths() -> None:
    def version(spec: dict[str, Any]) -> dict[str, Any]:
        return {"replicas": 1, "template": {"spec": spec}}

    doc: dict[str, Any] = {
        "kind": "PinnedDeployment",
        "metadata": {"name": "svc"},
        "spec": {
            "versions": {
                "v1": version(with_ack(secured(runAsRoot=True), "run-as-root")),
                "v2": version({**secured(), "hostNetwork": True}),
            }
        },
    }
    problem = only_problem(doc)
    assert problem.path == "spec.versions.v2.template.spec.hostNetwork"
    assert "`acknowledge: [host-network]` in spec.versions.v2.template.spec" in problem.expected
    assert "add `acknowledge: [host-network]` to spec.versions.v2.template.spec" in problem.hint

    doc["spec"]["versions"]["v2"]["template"]["spec"]["acknowledge"] = ["host-network"]
    m = parse_document(doc)
    assert object_relaxations(m.model) == {
        "run-as-root": "spec.versions.v1.template.spec.containers.web.securityContext.runAsRoot",
        "host-network": "spec.versions.v2.template.spec.hostNetwork",
    }


def test_object_relaxations_before_and_after_an_edit_give_what_it_adds() -> None:
    before = parse_document(pod(with_ack(secured(runAsRoot=True), "run-as-root")))
    after_spec = with_ack(secured(runAsRoot=True, privileged=True), "run-as-root", "privileged")
    after = parse_document(pod(after_spec))
    assert added(object_relaxations(before.model), object_relaxations(after.model)) == [
        "privileged"
    ]


# --- capabilities --------------------------------------------------------------------------


def test_capabilities_are_read_with_or_without_cap_prefix_and_kept_in_cap_form() -> None:
    spec = secured(capabilities={"add": ["NET_RAW", "CAP_NET_ADMIN", "NET_ADMIN"]})
    m = parse_document(pod(with_ack(spec, "add-capability")))
    assert isinstance(m.model, Pod)
    assert m.model.spec.containers["web"].security_context.capabilities.add == [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
    ]
    security = m.document()["spec"]["containers"]["web"]["securityContext"]
    assert security["capabilities"] == {"add": ["CAP_NET_ADMIN", "CAP_NET_RAW"]}


def test_unknown_capability_is_refused_listing_the_known_ones() -> None:
    spec = secured(capabilities={"add": ["NET_ADMIN", "FLY"]})
    problem = only_problem(pod(with_ack(spec, "add-capability")))
    assert (problem.path, problem.actual) == (f"{SECURITY}.capabilities.add[1]", "'FLY'")
    assert problem.expected == "a Linux capability such as NET_BIND_SERVICE or CAP_NET_RAW"
    assert problem.hint.startswith("Known (with or without CAP_): AUDIT_CONTROL, AUDIT_READ,")
    assert "NET_BIND_SERVICE" in problem.hint and "WAKE_ALARM" in problem.hint


def test_misspelled_capability_suggests_the_right_name() -> None:
    problem = only_problem(pod(secured(capabilities={"add": ["cap_net_admin"]})))
    assert problem.hint.startswith("Write NET_ADMIN;")


# --- volumes -------------------------------------------------------------------------------


def test_host_path_volumes_are_read_only_unless_the_volume_says_otherwise() -> None:
    m = parse_document(pod(with_ack(HOST_VOLUME, "host-path")))
    assert isinstance(m.model, Pod)
    assert m.model.spec.volumes["logs"].host_path.read_only is True
    assert m.document()["spec"]["volumes"] == {
        "logs": {"hostPath": {"path": "/var/log", "readOnly": True}}
    }
    assert m.document()["spec"]["containers"]["web"]["volumeMounts"] == {
        "logs": {"mountPath": "/logs"}
    }


def test_volume_mount_of_an_undeclared_volume_is_refused_with_a_suggestion() -> None:
    spec = with_ack(HOST_VOLUME, "host-path")
    spec["containers"]["web"]["volumeMounts"] = {"log": {"mountPath": "/logs"}}
    problem = only_problem(pod(spec))
    assert (problem.path, problem.actual) == ("spec.containers.web.volumeMounts.log", "'log'")
    assert problem.expected == "the name of a volume in spec.volumes (logs)"
    assert problem.hint.startswith("Did you mean 'logs'?")


def test_volume_mount_in_a_pod_without_volumes_says_there_are_none() -> None:
    spec = {"containers": {"web": container(volumeMounts={"data": {"mountPath": "/data"}})}}
    problem = only_problem(pod(spec))
    assert problem.expected == "the name of a volume in spec.volumes (it has none)"


def test_a_mount_cannot_make_a_read_only_volume_writable() -> None:
    spec = with_ack(HOST_VOLUME, "host-path")
    spec["containers"]["web"]["volumeMounts"]["logs"]["readOnly"] = False
    problem = only_problem(pod(spec))
    assert (problem.path, problem.actual) == (
        "spec.containers.web.volumeMounts.logs.readOnly",
        "false",
    )
    assert "spec.volumes.logs.hostPath.readOnly" in problem.expected
    spec["volumes"]["logs"]["hostPath"]["readOnly"] = False
    parse_document(pod(spec))


def test_two_volumes_mounted_at_one_path_of_a_container_are_refused() -> None:
    spec = with_ack(HOST_VOLUME, "host-path")
    spec["volumes"]["more"] = {"hostPath": {"path": "/srv"}}
    spec["containers"]["web"]["volumeMounts"]["more"] = {"mountPath": "/logs/"}
    problem = only_problem(pod(spec))
    assert problem.path == "spec.containers.web.volumeMounts.more.mountPath"
    assert problem.hint.startswith("Volume logs is already mounted there")


@pytest.mark.parametrize(
    ("field", "loc"),
    [
        ({"hostPath": {"path": "var/log"}}, "spec.volumes.logs.hostPath.path"),
        ({"hostPath": {}}, "spec.volumes.logs.hostPath.path"),
        ({}, "spec.volumes.logs.hostPath"),
    ],
)
def test_host_path_volume_needs_an_absolute_path(field: dict[str, Any], loc: str) -> None:
    spec = with_ack(HOST_VOLUME, "host-path")
    spec["volumes"]["logs"] = field
    assert only_problem(pod(spec)).path == loc


def test_volumes_written_as_a_list_explain_maps_keyed_by_name() -> None:
    spec = {**secured(), "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}
    problem = only_problem(pod(spec))
    assert problem.expected == "a map of names to volumes"
    assert "map keyed by name" in problem.hint


# --- users and groups ----------------------------------------------------------------------


def test_run_as_root_false_refuses_user_id_0() -> None:
    problem = only_problem(pod(secured(runAsRoot=False, runAsUser=0)))
    assert (problem.path, problem.actual) == (f"{SECURITY}.runAsUser", "0")
    assert problem.expected == "a user id other than 0 (runAsRoot is false)"


@pytest.mark.parametrize(
    ("security", "field"),
    [
        ({"runAsRoot": True, "runAsUser": 1000}, "runAsUser"),
        ({"runAsRoot": True, "runAsGroup": 1000}, "runAsGroup"),
        ({"runAsUser": 0, "runAsGroup": 1000}, "runAsGroup"),
    ],
)
def test_root_with_another_user_or_group_id_is_refused(
    security: dict[str, Any], field: str
) -> None:
    problem = only_problem(pod(with_ack(secured(**security), "run-as-root")))
    assert problem.path == f"{SECURITY}.{field}"
    assert problem.expected == "0 or no value (root runs as user 0 and group 0)"


def test_run_as_group_without_run_as_user_is_refused() -> None:
    problem = only_problem(pod(secured(runAsGroup=2000)))
    assert problem.path == f"{SECURITY}.runAsGroup"
    assert problem.hint.startswith("Add runAsUser")


def test_group_0_for_a_non_root_user_is_refused() -> None:
    problem = only_problem(pod(secured(runAsUser=1000, runAsGroup=0)))
    assert problem.path == f"{SECURITY}.runAsGroup"
    assert "root's group" in problem.hint


def test_ids_beyond_the_pod_user_namespace_need_no_user_namespace() -> None:
    spec = secured(runAsUser=70000, runAsGroup=70000)
    problems = problems_of(pod(spec))
    assert [p.path for p in problems] == [f"{SECURITY}.runAsUser", f"{SECURITY}.runAsGroup"]
    assert problems[0].expected.startswith("an integer from 0 to 65535")
    parse_document(pod(with_ack({**spec, "userNamespace": False}, "no-user-namespace")))


def test_negative_and_boolean_user_ids_are_refused_by_type() -> None:
    problem = only_problem(pod(secured(runAsUser=-1)))
    assert problem.expected == "an integer from 0 to 4294967294"
    problem = only_problem(pod(secured(runAsUser=True)))
    assert problem.actual == "true"


# --- runtime classes and seccomp -----------------------------------------------------------


def test_runtime_classes_are_the_sandbox_runtime_classes() -> None:
    assert set(typing.get_args(RuntimeClass)) == set(CLASSES)


def test_unknown_runtime_class_and_seccomp_list_the_choices() -> None:
    problems = problems_of(
        pod({**secured(seccomp="off"), "runtimeClass": "runsc"}),
    )
    assert [(p.path, p.expected) for p in problems] == [
        (f"{SECURITY}.seccomp", "'default' or 'unconfined'"),
        ("spec.runtimeClass", "one of 'runc', 'crun' or 'gvisor'"),
    ]


# --- property: valid exactly when acknowledgements match the settings ---------------------

SETTING_OF: dict[str, dict[str, Any]] = {name: spec for name, spec, _ in ASKING[1:]}


def spec_asking_for(names: frozenset[str]) -> dict[str, Any]:
    security: dict[str, Any] = {}
    spec: dict[str, Any] = {"containers": {"web": container(securityContext=security)}}
    for name in names:
        setting = SETTING_OF[name]
        if "volumes" in setting:
            spec["volumes"] = copy.deepcopy(setting["volumes"])
            spec["containers"]["web"]["volumeMounts"] = {"logs": {"mountPath": "/logs"}}
        for key in ("hostNetwork", "network", "userNamespace"):
            if key in setting:
                spec[key] = setting[key]
        security.update(setting["containers"]["web"].get("securityContext", {}))
    return spec


names_subsets = st.frozensets(st.sampled_from(sorted(RELAXATIONS)))


@settings(max_examples=100, deadline=None)
@given(asked=names_subsets, acknowledged=names_subsets)
def test_a_pod_is_valid_exactly_when_it_acknowledges_what_it_asks_for(
    asked: frozenset[str], acknowledged: frozenset[str]
) -> None:
    doc = pod({**spec_asking_for(asked), "acknowledge": sorted(acknowledged)})
    if asked != acknowledged:
        problems = problems_of(doc)
        unmatched = [p.actual for p in problems if p.path == "spec.acknowledge"]
        unacknowledged = [p for p in problems if p.path != "spec.acknowledge"]
        assert sorted(unmatched) == sorted(repr(n) for n in acknowledged - asked)
        assert len(unacknowledged) == len(asked - acknowledged)
        return
    m = parse_document(doc)
    assert isinstance(m.model, Pod)
    assert set(relaxations(m.model.spec)) == asked
    again = parse_document(m.document())
    assert again.model == m.model
    assert again.document() == m.document()
