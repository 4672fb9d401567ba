"""`spec.onNodeLoss`: accepted, defaulted, validated with clear errors, and kept through storage."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgenode.objects import (
    MAX_LOST_AFTER_S,
    DurationError,
    FieldProblem,
    ManifestError,
    NodeLossRule,
    Pod,
    duration_seconds,
    format_duration,
    load_manifests_text,
    node_loss_rule,
    parse_document,
)
from edgenode.podspec import pod_def, stored_pod


def pod_text(on_node_loss: str | None = None, *, node: str | None = None) -> str:
    text = "kind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n    web: {image: busybox}\n"
    if node is not None:
        text += f"  node: {node}\n"
    if on_node_loss is not None:
        text += f"  onNodeLoss: {on_node_loss}\n"
    return text


def load_pod(on_node_loss: str | None = None, *, node: str | None = None) -> Pod:
    [m] = load_manifests_text(pod_text(on_node_loss, node=node), source="pod.yaml")
    assert isinstance(m.model, Pod)
    return m.model


def problems_of(text: str) -> list[FieldProblem]:
    with pytest.raises(ManifestError) as info:
        load_manifests_text(text, source="pod.yaml")
    return info.value.problems


def only_problem(on_node_loss: str, *, node: str | None = None) -> FieldProblem:
    [problem] = problems_of(pod_text(on_node_loss, node=node))
    return problem


# --- defaults ---------------------------------------------------------------------------


def test_a_pod_without_on_node_loss_stores_none_and_is_rescheduled_after_30s() -> None:
    [m] = load_manifests_text(pod_text(), source="pod.yaml")
    assert "onNodeLoss" not in m.document()["spec"]
    assert isinstance(m.model, Pod)
    assert node_loss_rule(m.model.spec) == NodeLossRule("reschedule", 30, "keep-replacement")


def test_an_empty_on_node_loss_is_stored_with_the_defaults_in_force() -> None:
    [m] = load_manifests_text(pod_text("{}"), source="pod.yaml")
    assert m.document()["spec"]["onNodeLoss"] == {
        "policy": "reschedule",
        "lostAfter": "30s",
        "onReturn": "keep-replacement",
    }


def test_a_reschedule_policy_gets_only_the_settings_it_leaves_out() -> None:
    [m] = load_manifests_text(pod_text("{lostAfter: 1h30m}"), source="pod.yaml")
    assert m.document()["spec"]["onNodeLoss"] == {
        "policy": "reschedule",
        "lostAfter": "1h30m",
        "onReturn": "keep-replacement",
    }
    assert isinstance(m.model, Pod)
    assert node_loss_rule(m.model.spec).lost_after_s == 5400


def test_best_effort_is_stored_alone_and_never_starts_a_replacement() -> None:
    [m] = load_manifests_text(pod_text("{policy: best-effort}"), source="pod.yaml")
    assert m.document()["spec"]["onNodeLoss"] == {"policy": "best-effort"}
    assert isinstance(m.model, Pod)
    assert node_loss_rule(m.model.spec) == NodeLossRule("best-effort", None, None)


def test_keep_original_is_kept() -> None:
    pod = load_pod("{onReturn: keep-original, lostAfter: 0s}")
    assert node_loss_rule(pod.spec) == NodeLossRule("reschedule", 0, "keep-original")


def test_a_pod_pinned_to_a_node_is_best_effort_by_default() -> None:
    pod = load_pod(node="edge-1")
    assert node_loss_rule(pod.spec) == NodeLossRule("best-effort", None, None, pinned=True)
    pod = load_pod("{policy: best-effort}", node="edge-1")
    assert node_loss_rule(pod.spec).policy == "best-effort"


def test_a_pod_pinned_to_a_node_may_not_ask_to_be_rescheduled() -> None:
    problem = only_problem("{policy: reschedule}", node="edge-1")
    assert problem.path == "spec.onNodeLoss.policy"
    assert problem.expected == "'best-effort' for a pod pinned to node edge-1 (spec.node)"
    assert problem.actual == "'reschedule'"
    assert "cannot run on another node" in problem.hint
    assert "Nothing was applied" in problem.hint


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("90s", 90),
        ("5m", 300),
        ("1m30s", 90),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2h0m5s", 7205),
        ("720h", 720 * 3600),
    ],
)
def test_durations_are_whole_hours_minutes_and_seconds(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "the duration is empty"),
        ("30", "add a unit: 30s for 30 seconds, or 30m for 30 minutes"),
        (30, "a duration needs a unit"),
        (True, "not a boolean"),
        ("1.5m", "use whole numbers, such as 1m30s instead of 1.5m"),
        ("5x", "'x' is not a unit"),
        ("1d", "there is no unit for days; write hours, such as 24h"),
        ("500ms", "durations count whole seconds"),
        ("5min", "write m, such as 5m"),
        ("30S", "units are lowercase; write s"),
        ("30s5m", "write the units largest first"),
        ("1h1h", "write each unit once"),
        ("5 m", "without spaces"),
        ("-5s", "cannot be negative"),
        ("h", "write whole numbers each followed by h, m or s"),
    ],
)
def test_a_bad_duration_says_why_and_what_to_write(value: object, why: str) -> None:
    with pytest.raises(DurationError, match=why):
        duration_seconds(value)


def test_a_bad_lost_after_names_field_expected_actual_and_line() -> None:
    text = pod_text("\n    lostAfter: 5x\n    policy: reschedule")
    [problem] = problems_of(text)
    assert problem.path == "spec.onNodeLoss.lostAfter"
    assert problem.expected == "a duration from 0s to 720h, such as 30s, 5m or 1h30m"
    assert problem.actual == "'5x'"
    assert problem.line == 7
    assert problem.render().startswith(
        "pod.yaml, document 1 (Pod web), line 7: spec.onNodeLoss.lostAfter: expected a "
        "duration from 0s to 720h, such as 30s, 5m or 1h30m, got '5x'. 'x' is not a unit"
    )
    assert problem.hint.endswith("Nothing was applied; fix the value and try again.")


def test_a_bare_number_of_seconds_is_refused_with_the_spelling_to_use() -> None:
    problem = only_problem("{lostAfter: 45}")
    assert problem.actual == "45"
    assert "write 45s for 45 seconds" in problem.hint


def test_lost_after_may_be_at_most_720h() -> None:
    assert node_loss_rule(load_pod("{lostAfter: 720h}").spec).lost_after_s == MAX_LOST_AFTER_S
    problem = only_problem("{lostAfter: 721h}")
    assert problem.path == "spec.onNodeLoss.lostAfter"
    assert "721h is longer than 720h (30 days)" in problem.hint


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7))
def test_format_duration_gives_text_that_reads_back_as_the_same_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    assert duration_seconds(text) == seconds
    assert text == "0s" or not text.startswith("0")


# --- policy and onReturn ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_node_loss", "path", "expected", "suggestion"),
    [
        (
            "{policy: Reschedule}",
            "spec.onNodeLoss.policy",
            "'reschedule' or 'best-effort'",
            "Write 'reschedule'.",
        ),
        (
            "{policy: besteffort}",
            "spec.onNodeLoss.policy",
            "'reschedule' or 'best-effort'",
            "Write 'best-effort'.",
        ),
        (
            "{onReturn: keep-orig}",
            "spec.onNodeLoss.onReturn",
            "'keep-replacement' or 'keep-original'",
            "Write 'keep-original'.",
        ),
    ],
)
def test_a_misspelt_choice_is_refused_with_the_choice_meant(
    on_node_loss: str, path: str, expected: str, suggestion: str
) -> None:
    problem = only_problem(on_node_loss)
    assert (problem.path, problem.expected) == (path, expected)
    assert problem.hint.startswith(suggestion)


def test_an_unknown_field_suggests_the_field_meant() -> None:
    problem = only_problem("{lostafter: 5m}")
    assert problem.path == "spec.onNodeLoss.lostafter"
    assert problem.expected == "no field 'lostafter' here (did you mean 'lostAfter'?)"


def test_best_effort_refuses_settings_that_would_have_no_effect() -> None:
    problems = problems_of(
        pod_text("{policy: best-effort, lostAfter: 5m, onReturn: keep-original}")
    )
    assert [(p.path, p.expected, p.actual) for p in problems] == [
        ("spec.onNodeLoss.lostAfter", "no lostAfter with policy best-effort", "'5m'"),
        ("spec.onNodeLoss.onReturn", "no onReturn with policy best-effort", "'keep-original'"),
    ]
    assert all("never moves" in p.hint for p in problems)


def test_a_template_problem_is_reported_at_its_version_path() -> None:
    text = """\
kind: PinnedDeployment
metadata: {name: web}
spec:
  versions:
    v1:
      replicas: 1
      template:
        spec:
          onNodeLoss: {lostAfter: 2d}
          containers: {web: {image: busybox}}
"""
    [problem] = problems_of(text)
    assert problem.path == "spec.versions.v1.template.spec.onNodeLoss.lostAfter"
    assert problem.line == 9
    assert "no unit for days" in problem.hint


# --- storage ----------------------------------------------------------------------------

on_node_loss_maps = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "policy": st.just("reschedule"),
            "lostAfter": st.integers(0, MAX_LOST_AFTER_S).map(format_duration),
            "onReturn": st.sampled_from(["keep-replacement", "keep-original"]),
        },
    ),
    st.just({"policy": "best-effort"}),
)


@settings(max_examples=100, deadline=None)
@given(on_node_loss_maps)
def test_any_node_loss_policy_round_trips_through_the_stored_document(
    on_node_loss: dict[str, Any],
) -> None:
    doc = {
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": {"web": {"image": "busybox"}}, "onNodeLoss": on_node_loss},
    }
    m = parse_document(doc)
    canonical = m.document()
    again = parse_document(canonical)
    assert again.model == m.model
    assert again.document() == canonical
    assert isinstance(m.model, Pod)
    rule = node_loss_rule(m.model.spec)
    assert rule.policy == on_node_loss.get("policy", "reschedule")
    if rule.policy == "reschedule":
        assert rule.lost_after_s == duration_seconds(on_node_loss.get("lostAfter", "30s"))
        assert rule.on_return == on_node_loss.get("onReturn", "keep-replacement")


def test_a_stored_pod_keeps_its_node_loss_policy() -> None:
    [m] = load_manifests_text(pod_text("{lostAfter: 2m, onReturn: keep-original}"), source="p")
    stored = m.document()
    stored["metadata"]["revision"] = 7
    stored["assignment"] = {"node": "edge-1"}
    pod = stored_pod(stored)
    assert isinstance(m.model, Pod)
    assert pod.spec.on_node_loss == m.model.spec.on_node_loss
    assert node_loss_rule(pod.spec) == NodeLossRule("reschedule", 120, "keep-original")


def test_the_sandbox_definition_does_not_depend_on_the_node_loss_policy() -> None:
    plain = load_pod()
    with_policy = load_pod("{policy: best-effort}")
    assert pod_def("web", plain.spec) == pod_def("web", with_policy.spec)
