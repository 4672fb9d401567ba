"""Every problem in a manifest is reported at once, naming file, document, line, field path,
the expected and the actual value, and what to do."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgenode.objects import (
    FieldProblem,
    ManifestError,
    load_manifests,
    load_manifests_text,
    parse_document,
)


def problems_of(text: str, source: str = "bad.yaml") -> list[FieldProblem]:
    with pytest.raises(ManifestError) as info:
        load_manifests_text(textwrap.dedent(text), source=source)
    return info.value.problems


def only_problem(text: str) -> FieldProblem:
    problems = problems_of(text)
    assert len(problems) == 1, "\n".join(p.render() for p in problems)
    return problems[0]


POD_HEAD = """\
kind: Pod
metadata:
  name: web
spec:
  containers:
    web:
"""


def test_bad_memory_quantity_message_names_file_document_line_path_expected_and_actual() -> None:
    text = (
        "kind: Pod\nmetadata: {name: other}\nspec: {containers: {a: {image: busybox}}}\n---\n"
        + POD_HEAD
        + "      image: busybox\n      resources:\n        memory: 12x\n"
    )
    problem = only_problem(text)
    assert problem.render().startswith(
        "bad.yaml, document 2 (Pod web), line 13: spec.containers.web.resources.memory: "
        "expected a memory quantity such as 128Mi, 1Gi or 512M, got '12x'. "
    )
    assert problem.render().endswith("Nothing was applied; fix the value and try again.")
    assert (problem.document, problem.line, problem.path) == (
        2,
        13,
        "spec.containers.web.resources.memory",
    )
    assert "unknown unit 'x'" in problem.hint.lower()


def test_bad_cpu_quantity_says_millicores_are_lowercase() -> None:
    problem = only_problem(POD_HEAD + "      image: busybox\n      resources: {cpu: 500M}\n")
    assert problem.path == "spec.containers.web.resources.cpu"
    assert problem.expected == "a CPU quantity such as 500m, 0.5 or 2"
    assert problem.actual == "'500M'"
    assert "lowercase m" in problem.hint


def test_missing_required_field_is_expected_as_a_required_value_at_its_parent_line() -> None:
    problem = only_problem(POD_HEAD + "      command: [httpd]\n")
    assert problem.render().startswith(
        "bad.yaml, document 1 (Pod web), line 6: spec.containers.web.image: "
        "expected a value (required), got nothing. Add image: an image reference"
    )


def test_unknown_field_suggests_the_closest_known_field() -> None:
    problem = only_problem(POD_HEAD + "      imagee: busybox\n      image: busybox\n")
    assert problem.path == "spec.containers.web.imagee"
    assert problem.line == 7
    assert problem.expected == "no field 'imagee' here (did you mean 'image'?)"
    assert problem.actual == "'busybox'"
    assert problem.hint.startswith("Rename imagee to image.")


def test_snake_case_spelling_of_a_field_suggests_its_yaml_name() -> None:
    problem = only_problem(
        POD_HEAD.replace("spec:\n", "spec:\n  restart_policy: never\n") + "      image: x\n"
    )
    assert problem.expected == "no field 'restart_policy' here (did you mean 'restartPolicy'?)"


def test_unknown_field_without_a_close_match_lists_the_fields_allowed_there() -> None:
    problem = only_problem(POD_HEAD + "      image: x\n      zzz: 1\n")
    assert problem.expected.startswith("no field 'zzz' here (fields here: image, command, args")


def test_name_field_inside_a_map_keyed_by_name_explains_the_key_is_the_name() -> None:
    problem = only_problem(POD_HEAD + "      name: web\n      image: x\n")
    assert "the key (web) is the name" in problem.hint


def test_wrong_type_says_what_type_was_expected_in_words() -> None:
    problem = only_problem(POD_HEAD + "      image: x\n      command: httpd -f\n")
    assert problem.expected.startswith("a non-empty list of strings")
    assert problem.actual == "'httpd -f'"
    assert "not split into words" in problem.hint


def test_unquoted_number_where_a_string_is_expected_suggests_quotes() -> None:
    problem = only_problem(POD_HEAD + "      image: x\n      command: [httpd, -p, 8080]\n")
    assert problem.path == "spec.containers.web.command[2]"
    assert (problem.expected, problem.actual) == ("a string", "8080")
    assert 'put it in quotes ("8080")' in problem.hint.lower()


def test_yaml_boolean_in_env_value_is_refused_with_advice_to_quote() -> None:
    problem = only_problem(POD_HEAD + "      image: x\n      env: {DEBUG: yes}\n")
    assert (problem.path, problem.actual) == ("spec.containers.web.env.DEBUG", "true")
    assert "quotes" in problem.hint


def test_port_out_of_range_states_the_range() -> None:
    problem = only_problem(POD_HEAD + "      image: x\n      ports: {http: {containerPort: 0}}\n")
    assert problem.expected == "an integer from 1 to 65535"
    assert problem.actual == "0"


def test_wrong_enum_value_suggests_the_right_spelling() -> None:
    problem = only_problem(
        POD_HEAD.replace("spec:\n", "spec:\n  restartPolicy: Always\n") + "      image: x\n"
    )
    assert problem.expected == "one of 'always', 'on-failure' or 'never'"
    assert problem.hint.startswith("Write 'always'.")


def test_invalid_names_are_refused_with_a_suggested_dns_label() -> None:
    problem = only_problem(POD_HEAD.replace("name: web", "name: Web_Server") + "      image: x\n")
    assert problem.path == "metadata.name"
    assert problem.name == "Web_Server"
    assert problem.expected.startswith("a name of lowercase letters, digits and '-'")
    assert "Try 'web-server'." in problem.hint


def test_invalid_map_key_is_reported_at_the_key() -> None:
    problem = only_problem(POD_HEAD.replace("    web:\n", "    Web:\n") + "      image: x\n")
    assert (problem.path, problem.line, problem.actual) == ("spec.containers.Web", 6, "'Web'")


def test_list_where_a_map_keyed_by_name_is_expected_explains_maps_by_name() -> None:
    problem = only_problem(
        "kind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n    image: x\n"
    )
    assert problem.expected == "a map of names to containers with at least one entry"
    assert problem.actual == "a list of 1 item"
    assert "map keyed by name" in problem.hint


def test_all_problems_of_a_file_are_reported_at_once_in_file_order() -> None:
    problems = problems_of(
        """\
        kind: Pod
        metadata:
          name: web
        spec:
          restartPolicy: sometimes
          containers:
            web:
              imagee: busybox
              ports: {http: {containerPort: 99999}}
        ---
        kind: PinnedDeployment
        metadata: {name: svc}
        spec:
          versions:
            v1: {replicas: -1, template: {spec: {containers: {}}}}
        """
    )
    assert [(p.document, p.line, p.path) for p in problems] == [
        (1, 5, "spec.restartPolicy"),
        (1, 7, "spec.containers.web.image"),
        (1, 8, "spec.containers.web.imagee"),
        (1, 9, "spec.containers.web.ports.http.containerPort"),
        (2, 15, "spec.versions.v1.replicas"),
        (2, 15, "spec.versions.v1.template.spec.containers"),
    ]


def test_error_text_has_one_line_per_problem() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests_text("kind: Pod\nmetadata: {name: a, x: 1}\nspec: {}\n", source="f.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems) == 2
    assert all(line.startswith("f.yaml, document 1 (Pod a), line ") for line in lines)


def test_yaml_syntax_error_is_reported_with_line_and_column_after_earlier_problems() -> None:
    problems = problems_of(
        """\
        kind: Pod
        metadata: {name: BAD}
        spec: {containers: {a: {image: x}}}
        ---
        kind: Pod
        metadata:
          name: web
            labels: {}
        """
    )
    assert [p.document for p in problems] == [1, 2]
    syntax = problems[1]
    assert (syntax.line, syntax.column, syntax.expected) == (8, 11, "valid YAML")
    assert syntax.render().startswith(
        "bad.yaml, document 2, line 8, column 11: expected valid YAML, got a syntax error "
        "(mapping values are not allowed"  # libyaml and PyYAML end the sentence differently
    )


def test_tab_indentation_is_explained() -> None:
    problem = only_problem("kind: Pod\nmetadata:\n\tname: web\n")
    assert (problem.line, problem.column) == (3, 1)
    assert "tabs" in problem.hint


def test_python_tags_are_refused_not_executed() -> None:
    problem = only_problem("kind: !!python/object/apply:os.system [echo hi]\n")
    assert problem.expected == "valid YAML"
    assert "remove the tag" in problem.hint


def test_repeated_key_is_refused_because_yaml_would_keep_only_the_last() -> None:
    problem = only_problem(POD_HEAD + "      image: a\n      image: b\n")
    assert (problem.path, problem.line) == ("spec.containers.web.image", 8)
    assert problem.actual == "'image' again (first on line 7)"


def test_alias_bombs_are_refused_before_validation() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    problem = only_problem("\n".join(lines) + "\n")
    assert problem.expected.startswith("a document of at most 100000 YAML nodes")


def test_status_in_a_user_pod_manifest_is_refused() -> None:
    problem = only_problem(POD_HEAD + "      image: x\nstatus:\n  phase: Running\n")
    assert problem.render().startswith(
        "bad.yaml, document 1 (Pod web), line 8: status: expected no status in a manifest, "
        "got a map with keys 'phase'. Status is written by the node, remove it."
    )


def test_status_in_a_pinned_deployment_manifest_is_refused() -> None:
    problem = only_problem(
        "kind: PinnedDeployment\nmetadata: {name: d}\nstatus: {}\n"
        "spec: {versions: {v1: {replicas: 1, template: {spec: {containers: {a: {image: x}}}}}}}\n"
    )
    assert problem.path == "status"


def test_status_of_a_pod_is_accepted_when_the_caller_allows_node_written_status() -> None:
    doc = {
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": {"web": {"image": "busybox"}}},
        "status": {
            "phase": "Running",
            "node": "edge-1",
            "containers": {"web": {"state": "running"}},
        },
    }
    manifest = parse_document(doc, allow_status=True)
    assert manifest.document()["status"] == {
        "phase": "Running",
        "node": "edge-1",
        "containers": {"web": {"state": "running", "restarts": 0}},
    }


def test_unknown_kind_suggests_a_known_one() -> None:
    problem = only_problem("kind: Deployment\nmetadata: {name: x}\nspec: {}\n")
    assert problem.path == "kind"
    assert problem.expected == "one of 'Pod', 'PinnedDeployment' or 'Node'"
    assert problem.hint.startswith("Write kind: PinnedDeployment.")


def test_missing_kind_is_reported() -> None:
    problem = only_problem("metadata: {name: x}\nspec: {}\n")
    assert (problem.path, problem.actual) == ("kind", "nothing")


def test_other_api_versions_are_refused() -> None:
    problem = only_problem(
        "apiVersion: apps/v1\n" + POD_HEAD + "      image: x\n",
    )
    assert (problem.path, problem.line) == ("apiVersion", 1)
    assert problem.expected == "'edgenode/v1' (or no apiVersion)"
    assert problem.actual == "'apps/v1'"


def test_a_document_that_is_not_a_map_is_refused() -> None:
    problem = only_problem("- kind: Pod\n")
    assert problem.render().startswith(
        "bad.yaml, document 1, line 1: expected a map with kind, metadata and spec, "
        "got a list of 1 item."
    )


def test_two_containers_on_the_same_port_are_refused_at_the_later_name() -> None:
    problem = only_problem(
        POD_HEAD + "      image: x\n      ports: {http: {containerPort: 80}}\n"
        "    side:\n      image: y\n      ports: {web: {containerPort: 80}}\n"
    )
    # Containers are checked in name order: "side" claims port 80 before "web".
    assert (problem.path, problem.line) == ("spec.containers.web.ports.http.containerPort", 8)
    assert "Port web of container side already uses 80/tcp" in problem.hint


def test_the_same_object_twice_in_one_file_is_refused_at_the_second() -> None:
    doc = POD_HEAD + "      image: x\n"
    problem = only_problem(doc + "---\n" + doc)
    assert (problem.document, problem.line, problem.path) == (2, 11, "metadata.name")
    assert problem.actual == "'web', already defined in document 1"


def test_parse_document_raises_with_the_given_source_and_index() -> None:
    with pytest.raises(ManifestError) as info:
        parse_document({"kind": "Pod", "metadata": {"name": "a"}}, source="api", index=4)
    [problem] = info.value.problems
    assert problem.render().startswith(
        "api, document 4 (Pod a): spec: expected a value (required), got nothing."
    )


def test_parse_document_uses_line_of_for_the_nearest_known_field() -> None:
    lines = {("spec",): 3, (): 1}

    def line_of(loc: tuple[str | int, ...]) -> int | None:
        return lines.get(tuple(str(s) for s in loc))

    with pytest.raises(ManifestError) as info:
        parse_document(
            {"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": {"a": {}}}},
            line_of=line_of,
        )
    assert info.value.problems[0].line == 3


def test_unreadable_file_is_a_manifest_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"kind: Pod\nmetadata: {name: caf\xe9}\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    assert str(info.value).startswith(
        f"{path}: expected a readable UTF-8 YAML file, got bytes that are not UTF-8"
    )
