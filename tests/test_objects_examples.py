"""Every file in examples/ is a valid manifest, and the CLI says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgenode.cli import cli
from edgenode.objects import Node, PinnedDeployment, Pod, load_manifests, parse_document

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_directory_has_the_documented_files() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert {"pod-web.yaml", "pinned-deployment.yaml", "pods-policies.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    manifests = load_manifests(path)
    assert manifests, f"{path.name} holds no objects"
    for m in manifests:
        assert m.source == str(path)
        assert isinstance(m.model, Pod | PinnedDeployment | Node)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_round_trips_through_its_canonical_document(path: Path) -> None:
    for m in load_manifests(path):
        again = parse_document(m.document(), source="canonical", index=m.index)
        assert again.model == m.model
        assert again.document() == m.document()


def test_pod_web_example_is_a_busybox_httpd_with_port_resources_and_env() -> None:
    [m] = load_manifests(EXAMPLES / "pod-web.yaml")
    assert isinstance(m.model, Pod)
    web = m.model.spec.containers["web"]
    assert web.image == "busybox"
    assert web.command == ["httpd", "-f", "-p", "8080"]
    assert web.ports["http"].container_port == 8080
    assert web.resources.cpu is not None and web.resources.memory is not None
    assert web.env


def test_pinned_deployment_example_pins_two_and_one_replicas_to_v1_and_v2() -> None:
    [m] = load_manifests(EXAMPLES / "pinned-deployment.yaml")
    assert isinstance(m.model, PinnedDeployment)
    versions = m.model.spec.versions
    assert {name: v.replicas for name, v in versions.items()} == {"v1": 2, "v2": 1}
    v1 = versions["v1"].template.spec.containers
    v2 = versions["v2"].template.spec.containers
    assert v1["greeter"].env != v2["greeter"].env


def test_multi_document_example_yields_one_manifest_per_document_in_order() -> None:
    manifests = load_manifests(EXAMPLES / "pods-policies.yaml")
    assert [(m.kind, m.name, m.index) for m in manifests] == [
        ("Pod", "backup-once", 1),
        ("Pod", "probe", 2),
    ]


def test_validate_command_prints_one_ok_line_per_object_and_exits_zero() -> None:
    files = [str(EXAMPLES / "pod-web.yaml"), str(EXAMPLES / "pods-policies.yaml")]
    result = CliRunner().invoke(cli, ["validate", "-f", files[0], "-f", files[1]])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"ok  Pod/web  ({files[0]}, document 1)",
        f"ok  Pod/backup-once  ({files[1]}, document 1)",
        f"ok  Pod/probe  ({files[1]}, document 2)",
    ]


def test_validate_command_reports_problems_on_stderr_and_exits_two(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n    web: {}\n")
    good = str(EXAMPLES / "pod-web.yaml")
    result = CliRunner().invoke(cli, ["validate", "-f", good, "-f", str(bad)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [f"ok  Pod/web  ({good}, document 1)"]
    assert (
        f"{bad}, document 1 (Pod web), line 5: spec.containers.web.image: "
        "expected a value (required), got nothing." in result.stderr
    )
    assert "nothing was applied" in result.stderr.splitlines()[-1]


def test_validate_command_reads_standard_input_for_dash() -> None:
    text = (EXAMPLES / "pod-web.yaml").read_text()
    result = CliRunner().invoke(cli, ["validate", "-f", "-"], input=text)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok  Pod/web  (<stdin>, document 1)\n"


def test_validate_command_refuses_a_file_without_objects(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n---\n")
    result = CliRunner().invoke(cli, ["validate", "-f", str(empty)])
    assert result.exit_code == 2
    assert f"{empty}: expected at least one object" in result.stderr


def test_validate_command_refuses_the_same_object_in_two_files(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    original = EXAMPLES / "pod-web.yaml"
    copy.write_text(original.read_text())
    result = CliRunner().invoke(cli, ["validate", "-f", str(original), "-f", str(copy)])
    assert result.exit_code == 2
    assert f"'web', already defined in {original}, document 1" in result.stderr


def test_validate_command_names_a_missing_file() -> None:
    result = CliRunner().invoke(cli, ["validate", "-f", "no/such/file.yaml"])
    assert result.exit_code == 2
    assert "no/such/file.yaml: expected a readable UTF-8 YAML file, got no such file." in (
        result.stderr
    )
