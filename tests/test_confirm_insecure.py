"""The third gate for insecure settings, as pure decisions: what a change adds, what the
command line confirmed, and what the insecure annotation records (edgenode._confirm)."""

from __future__ import annotations

from typing import Any

import pytest

from edgenode._confirm import (
    INSECURE_ANNOTATION,
    Marking,
    Relaxation,
    annotated,
    insecure_change,
    introduced,
    parse_confirmations,
    stored_relaxations,
    unconfirmed,
)
from edgenode.objects import Manifest, load_manifests_text, parse_document
from sandbox._relax import RELAXATIONS

ROOT_FIELD = "spec.containers.web.securityContext.runAsRoot"


def pod(*, root: bool = False, host_network: bool = False, annotations: str = "") -> Manifest:
    acks = [n for n, on in (("host-network", host_network), ("run-as-root", root)) if on]
    text = f"""
kind: Pod
metadata:
  name: web
  {"annotations: {" + annotations + "}" if annotations else ""}
spec:
  hostNetwork: {str(host_network).lower()}
  acknowledge: [{", ".join(acks)}]
  containers:
    web:
      image: busybox
      securityContext: {{runAsRoot: {str(root).lower()}}}
"""
    [manifest] = load_manifests_text(text, source="test.yaml")
    return manifest


def stored(manifest: Manifest, revision: int = 1) -> dict[str, Any]:
    """The document as the store hands it back: with its revision (and maybe a status)."""
    doc = manifest.document()
    doc["metadata"]["revision"] = revision
    doc["status"] = {"phase": "Running"}
    return doc


def test_new_object_asking_for_run_as_root_adds_it_with_its_field() -> None:
    change = insecure_change("Pod", "web", None, pod(root=True).model)
    assert change.ref == "Pod/web"
    assert change.added == (Relaxation("run-as-root", ROOT_FIELD, RELAXATIONS["run-as-root"]),)
    assert dict(change.current) == {"run-as-root": ROOT_FIELD}


def test_reapplying_the_same_insecure_spec_adds_nothing() -> None:
    manifest = pod(root=True)
    change = insecure_change("Pod", "web", stored(manifest), manifest.model)
    assert change.added == ()
    assert dict(change.current) == {"run-as-root": ROOT_FIELD}


def test_only_relaxations_absent_before_count_as_added() -> None:
    before = stored(pod(root=True))
    change = insecure_change("Pod", "web", before, pod(root=True, host_network=True).model)
    assert [r.name for r in change.added] == ["host-network"]
    assert [r.where for r in change.added] == ["spec.hostNetwork"]
    assert sorted(change.current) == ["host-network", "run-as-root"]


def test_removing_a_relaxation_adds_nothing() -> None:
    change = insecure_change("Pod", "web", stored(pod(root=True)), pod().model)
    assert change.added == ()
    assert dict(change.current) == {}


def test_a_pinned_deployment_template_relaxation_is_placed_in_its_version() -> None:
    [manifest] = load_manifests_text(
        """
kind: PinnedDeployment
metadata: {name: greeter}
spec:
  versions:
    v1:
      replicas: 1
      template:
        spec:
          acknowledge: [writable-root]
          containers:
            g: {image: busybox, securityContext: {readOnlyRootFilesystem: false}}
""",
        source="d.yaml",
    )
    change = insecure_change("PinnedDeployment", "greeter", None, manifest.model)
    assert [(r.name, r.where) for r in change.added] == [
        (
            "writable-root",
            "spec.versions.v1.template.spec.containers.g.securityContext.readOnlyRootFilesystem",
        )
    ]


def test_a_stored_spec_that_no_longer_validates_counts_as_asking_for_nothing() -> None:
    broken = {"kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": "oops"}}
    assert stored_relaxations("Pod", "web", broken) == {}
    change = insecure_change("Pod", "web", broken, pod(root=True).model)
    assert [r.name for r in change.added] == ["run-as-root"]


def test_a_node_never_asks_for_relaxations() -> None:
    node = parse_document({"kind": "Node", "metadata": {"name": "edge-1"}})
    assert insecure_change("Node", "edge-1", None, node.model).added == ()


def test_unconfirmed_problem_names_object_relaxation_field_flag_and_that_nothing_was_applied() -> (
    None
):
    change = insecure_change("Pod", "web", None, pod(root=True).model)
    [problem] = unconfirmed([change], confirmed=frozenset())
    message = problem.render()
    assert message.startswith(f"Pod/web: {ROOT_FIELD}: ")
    assert "run-as-root" in message
    assert "--confirm-insecure=run-as-root" in message
    assert problem.flag == "--confirm-insecure=run-as-root"
    assert "Nothing was applied." in message


def test_confirmed_relaxations_are_not_problems() -> None:
    change = insecure_change("Pod", "web", None, pod(root=True, host_network=True).model)
    missing = unconfirmed([change], confirmed={"run-as-root"})
    assert [u.relaxation.name for u in missing] == ["host-network"]
    assert unconfirmed([change], confirmed={"run-as-root", "host-network"}) == []


def test_confirmations_are_repeatable_and_comma_separated() -> None:
    names, problems = parse_confirmations(["run-as-root,host-path", " host-network ", ""])
    assert names == {"run-as-root", "host-path", "host-network"}
    assert problems == []


def test_unknown_confirmation_is_a_problem_with_a_suggestion() -> None:
    names, problems = parse_confirmations(["run-as-rot", "nonsense-setting"])
    assert names == frozenset()
    assert len(problems) == 2
    assert "got 'run-as-rot'" in problems[0]
    assert "Did you mean --confirm-insecure=run-as-root?" in problems[0]
    assert "Nothing was applied." in problems[1]
    assert "Did you mean" not in problems[1]


def test_annotation_lists_every_current_relaxation_sorted_and_keeps_other_annotations() -> None:
    document = pod(root=True, host_network=True, annotations="example.com/owner: ops").document()
    out = annotated(document, ["run-as-root", "host-network"])
    assert out["metadata"]["annotations"] == {
        "edgenode.io/insecure": "host-network,run-as-root",
        "example.com/owner": "ops",
    }
    assert INSECURE_ANNOTATION not in document["metadata"].get("annotations", {})


def test_annotation_is_removed_when_no_relaxation_remains() -> None:
    document = pod(annotations="edgenode.io/insecure: run-as-root").document()
    assert "annotations" not in annotated(document, [])["metadata"]
    kept = pod(annotations="edgenode.io/insecure: x, example.com/owner: ops").document()
    assert annotated(kept, [])["metadata"]["annotations"] == {"example.com/owner": "ops"}


def test_annotated_document_is_a_valid_manifest() -> None:
    """`edgenode.io/insecure` is an annotation key validation accepts: a stored object read back
    as a manifest (say, edited and applied again) stays valid."""
    document = annotated(pod(root=True).document(), ["run-as-root"])
    manifest = parse_document(document)
    assert manifest.model.metadata.annotations == {INSECURE_ANNOTATION: "run-as-root"}


def mark(revision: int, value: str | None) -> Marking:
    return Marking(revision, "user", "edge-1", value)


def test_introduced_is_the_revision_since_which_the_annotation_names_each_relaxation() -> None:
    timeline = [
        mark(1, None),
        mark(3, "run-as-root"),
        mark(5, "host-network,run-as-root"),
    ]
    since = introduced(timeline)
    assert {n: m.revision for n, m in since.items()} == {"host-network": 5, "run-as-root": 3}


def test_introduced_restarts_after_a_relaxation_was_turned_off() -> None:
    timeline = [mark(2, "run-as-root"), mark(4, None), mark(6, "run-as-root")]
    assert introduced(timeline)["run-as-root"].revision == 6
    assert introduced([mark(2, "run-as-root"), mark(4, None)]) == {}


@pytest.mark.parametrize("value", [None, "", 7])
def test_introduced_ignores_absent_or_malformed_annotations(value: Any) -> None:
    assert introduced([mark(1, value)]) == {}
