"""A PinnedDeployment's pods: stable names, edits in place, count changes at the top end only."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgenode._expand import (
    ExpansionError,
    PodDiff,
    diff_pods,
    expand,
    owned_pods,
    replica_order,
)
from edgenode.objects import (
    DEPLOYMENT_LABEL,
    OWNER_ANNOTATION,
    VERSION_LABEL,
    ManifestError,
    Pod,
    load_manifests,
    load_manifests_text,
    node_loss_rule,
    parse_document,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Version and deployment names chosen so that some pod names look alike (a-b + c, a + b-c).
version_names = st.sampled_from(["v1", "v2", "v10", "canary", "b-c", "c", "1"])
deployment_names = st.sampled_from(["web", "a", "a-b"])

templates = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {
                "labels": st.dictionaries(
                    st.sampled_from(["app", "tier"]), st.sampled_from(["x", "y"])
                )
            }
        ),
        "spec": st.fixed_dictionaries(
            {
                "containers": st.fixed_dictionaries(
                    {
                        "app": st.fixed_dictionaries(
                            {"image": st.sampled_from(["busybox", "busybox:1.36", "nginx"])},
                            optional={
                                "env": st.dictionaries(
                                    st.sampled_from(["A", "B"]), st.sampled_from(["1", "2"])
                                )
                            },
                        )
                    }
                )
            },
            optional={
                "restartPolicy": st.sampled_from(["always", "never"]),
                "onNodeLoss": st.sampled_from(
                    [
                        {},
                        {"policy": "best-effort"},
                        {"lostAfter": "5m", "onReturn": "keep-original"},
                    ]
                ),
            },
        ),
    }
)
versions = st.fixed_dictionaries({"replicas": st.integers(0, 5), "template": templates})


@st.composite
def deployments(draw: st.DrawFn, name: str | None = None) -> dict[str, Any]:
    return {
        "kind": "PinnedDeployment",
        "metadata": {"name": name if name is not None else draw(deployment_names)},
        "spec": {
            "versions": draw(st.dictionaries(version_names, versions, min_size=1, max_size=4))
        },
    }


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    return parse_document(doc).document()


def names_of(deployment: str, version: str, count: int) -> list[str]:
    return [f"{deployment}-{version}-{i}" for i in range(count)]


def of_version(pods: dict[str, Any], version: str) -> dict[str, Any]:
    return {n: p for n, p in pods.items() if p["metadata"]["labels"][VERSION_LABEL] == version}


def apply(current: dict[str, Any], diff: PodDiff) -> dict[str, Any]:
    out = dict(current)
    out.update(diff.create)
    out.update(diff.update)
    for name in diff.delete:
        del out[name]
    return out


# --- what expansion gives -----------------------------------------------------------------


def test_the_example_deployment_expands_to_three_named_pods_with_labels_and_owner() -> None:
    [m] = load_manifests(EXAMPLES / "pinned-deployment.yaml")
    pods = expand(m.document())
    assert list(pods) == ["greeter-v1-0", "greeter-v1-1", "greeter-v2-0"]
    pod = pods["greeter-v2-0"]
    assert pod["metadata"] == {
        "name": "greeter-v2-0",
        "labels": {
            "app": "greeter",
            DEPLOYMENT_LABEL: "greeter",
            VERSION_LABEL: "v2",
            "version": "v2",
        },
        "annotations": {OWNER_ANNOTATION: "pinneddeployment/greeter"},
    }
    assert pod["spec"] == m.document()["spec"]["versions"]["v2"]["template"]["spec"]
    model = parse_document(pod).model
    assert isinstance(model, Pod)
    assert node_loss_rule(model.spec).on_return == "keep-original"


@settings(max_examples=100, deadline=None)
@given(deployments())
def test_each_version_gets_its_count_of_canonical_pods_named_by_version_and_index(
    doc: dict[str, Any],
) -> None:
    stored = canonical(doc)
    pods = expand(stored)
    name = doc["metadata"]["name"]
    wanted = [
        n
        for v, version in sorted(doc["spec"]["versions"].items())
        for n in names_of(name, v, version["replicas"])
    ]
    assert list(pods) == wanted
    for vname, version in stored["spec"]["versions"].items():
        for pname in names_of(name, vname, version["replicas"]):
            pod = pods[pname]
            labels = version["template"].get("metadata", {}).get("labels", {})
            assert pod["metadata"]["labels"] == {
                **labels,
                DEPLOYMENT_LABEL: name,
                VERSION_LABEL: vname,
            }
            assert pod["metadata"]["annotations"] == {OWNER_ANNOTATION: f"pinneddeployment/{name}"}
            assert pod["spec"] == version["template"]["spec"]
            assert parse_document(pod).document() == pod


@settings(max_examples=50, deadline=None)
@given(deployments())
def test_expansion_is_deterministic_whatever_the_key_order(doc: dict[str, Any]) -> None:
    reordered = copy.deepcopy(doc)
    reordered["spec"]["versions"] = dict(reversed(list(doc["spec"]["versions"].items())))
    for version in reordered["spec"]["versions"].values():
        version["template"]["spec"] = dict(reversed(list(version["template"]["spec"].items())))
    first = expand(doc)
    assert expand(doc) == first
    assert expand(reordered) == first
    assert list(expand(reordered)) == list(first)


def test_pods_share_no_mutable_part_with_each_other() -> None:
    [m] = load_manifests(EXAMPLES / "pinned-deployment.yaml")
    pods = expand(m.document())
    pods["greeter-v1-0"]["spec"]["containers"]["greeter"]["env"]["GREETING"] = "changed"
    pods["greeter-v1-0"]["metadata"]["labels"]["app"] = "changed"
    assert pods["greeter-v1-1"]["spec"]["containers"]["greeter"]["env"]["GREETING"] == "hello"
    assert pods["greeter-v1-1"]["metadata"]["labels"]["app"] == "greeter"


# --- how edits change the pods ------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_editing_one_versions_template_updates_only_its_pods_in_place(data: st.DataObject) -> None:
    doc = data.draw(deployments())
    version = data.draw(st.sampled_from(sorted(doc["spec"]["versions"])))
    edited = copy.deepcopy(doc)
    edited["spec"]["versions"][version]["template"] = data.draw(templates)
    before, after = expand(doc), expand(edited)
    diff = diff_pods(before, after)
    assert diff.create == {} and diff.delete == ()
    assert list(after) == list(before)
    mine = of_version(before, version)
    assert set(diff.update) <= set(mine)
    template_changed = (
        canonical(edited)["spec"]["versions"][version]
        != (canonical(doc)["spec"]["versions"][version])
    )
    assert set(diff.update) == (set(mine) if template_changed else set())
    for name in set(before) - set(mine):
        assert after[name] == before[name]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_changing_one_versions_count_adds_or_removes_only_its_highest_indexes(
    data: st.DataObject,
) -> None:
    doc = data.draw(deployments())
    name = doc["metadata"]["name"]
    version = data.draw(st.sampled_from(sorted(doc["spec"]["versions"])))
    old = doc["spec"]["versions"][version]["replicas"]
    new = data.draw(st.integers(0, 12))
    edited = copy.deepcopy(doc)
    edited["spec"]["versions"][version]["replicas"] = new
    before, after = expand(doc), expand(edited)
    diff = diff_pods(before, after)
    assert list(diff.create) == names_of(name, version, new)[old:]
    assert list(diff.delete) == names_of(name, version, old)[new:]
    assert diff.update == {}
    for pname in set(before) & set(after):
        assert after[pname] == before[pname]


# --- the diff -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_applying_the_diff_turns_current_into_desired(data: st.DataObject) -> None:
    name = data.draw(deployment_names)
    current = expand(data.draw(deployments(name)))
    desired = expand(data.draw(deployments(name)))
    diff = diff_pods(current, desired)
    assert apply(current, diff) == desired
    assert not set(diff.create) & set(current)
    assert set(diff.update) <= set(current) & set(desired)
    assert set(diff.delete) == set(current) - set(desired)
    assert diff_pods(desired, desired).is_empty()


def test_what_the_store_placement_and_nodes_add_to_a_pod_causes_no_update() -> None:
    [m] = load_manifests(EXAMPLES / "pinned-deployment.yaml")
    desired = expand(m.document())
    current = copy.deepcopy(desired)
    for pod in current.values():
        pod["metadata"]["revision"] = 4
        pod["assignment"] = {"node": "edge-1"}
        pod["status"] = {"phase": "Running", "node": "edge-1"}
    assert diff_pods(current, desired) == PodDiff(create={}, update={}, delete=())


def test_a_changed_label_or_annotation_is_an_update() -> None:
    [m] = load_manifests(EXAMPLES / "pinned-deployment.yaml")
    desired = expand(m.document())
    current = copy.deepcopy(desired)
    current["greeter-v1-0"]["metadata"]["labels"]["app"] = "other"
    del current["greeter-v2-0"]["metadata"]["annotations"][OWNER_ANNOTATION]
    diff = diff_pods(current, desired)
    assert list(diff.update) == ["greeter-v1-0", "greeter-v2-0"]
    assert diff.update["greeter-v1-0"] == desired["greeter-v1-0"]


def test_diff_buckets_list_pods_by_version_then_index_as_a_number() -> None:
    assert sorted(["w-v1-10", "w-v1-2", "w-v2-0", "w-v1-0"], key=replica_order) == [
        "w-v1-0",
        "w-v1-2",
        "w-v1-10",
        "w-v2-0",
    ]
    [m] = load_manifests(EXAMPLES / "pinned-deployment.yaml")
    doc = m.document()
    doc["spec"]["versions"]["v1"]["replicas"] = 12
    diff = diff_pods(expand(m.document()), expand(doc))
    assert list(diff.create) == [f"greeter-v1-{i}" for i in range(2, 12)]
    assert diff_pods(expand(doc), expand(m.document())).delete == tuple(diff.create)


def test_owned_pods_keeps_only_the_pods_the_deployment_made() -> None:
    ours = expand(canonical(load_doc("a", "b-c", 1)))
    theirs = expand(canonical(load_doc("a-b", "c", 1)))
    assert list(ours) == list(theirs) == ["a-b-c-0"]
    other = {"kind": "Pod", "metadata": {"name": "z"}, "spec": {}}
    pods = {"a-b-c-0": theirs["a-b-c-0"], "z": other}
    assert owned_pods(pods, "a") == {}
    assert owned_pods(pods, "a-b") == {"a-b-c-0": theirs["a-b-c-0"]}


# --- what expansion refuses --------------------------------------------------------------


def load_doc(name: str, version: str, replicas: int) -> dict[str, Any]:
    return {
        "kind": "PinnedDeployment",
        "metadata": {"name": name},
        "spec": {
            "versions": {
                version: {
                    "replicas": replicas,
                    "template": {"spec": {"containers": {"app": {"image": "busybox"}}}},
                }
            }
        },
    }


def test_a_stored_deployment_expands_despite_its_revision_and_status() -> None:
    doc = canonical(load_doc("web", "v1", 2))
    doc["metadata"]["revision"] = 9
    doc["status"] = {"observed": 2}
    assert list(expand(doc)) == ["web-v1-0", "web-v1-1"]


def test_expanding_a_pod_is_refused() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": {}}}
    with pytest.raises(
        ExpansionError, match="expected a PinnedDeployment document, got kind 'Pod'"
    ):
        expand(pod)


def test_expanding_an_invalid_deployment_is_refused_with_its_problems() -> None:
    doc = load_doc("web", "v1", -1)
    with pytest.raises(ManifestError, match=r"spec\.versions\.v1\.replicas: expected an integer"):
        expand(doc)


def test_a_template_may_not_set_the_labels_its_pods_get() -> None:
    text = """\
kind: PinnedDeployment
metadata: {name: web}
spec:
  versions:
    v1:
      replicas: 1
      template:
        metadata:
          labels: {edgenode.io/version: v2, app: web}
        spec:
          containers: {web: {image: busybox}}
"""
    with pytest.raises(ManifestError) as info:
        load_manifests_text(text, source="d.yaml")
    [problem] = info.value.problems
    assert problem.path == 'spec.versions.v1.template.metadata.labels["edgenode.io/version"]'
    assert problem.expected == "no label edgenode.io/version (each pod gets it from its deployment)"
    assert problem.line == 9


def test_a_deployment_whose_pod_names_would_be_too_long_is_refused() -> None:
    name, version = "d" * 40, "v" * 20
    parse_document(load_doc(name, version, 10))  # d...-v...-9: 63 characters
    with pytest.raises(ManifestError) as info:
        parse_document(load_doc(name, version, 11))  # d...-v...-10: 64
    [problem] = info.value.problems
    assert problem.path == f"spec.versions.{version}"
    assert problem.actual == f"'{name}-{version}-10' (64 characters)"
    assert "Shorten" in problem.hint
