"""`edgenode apply` and `edgenode describe` against a real store in a temporary state directory:
the third gate for insecure settings (--confirm-insecure or an interactive yes), the annotation
that records it in history, and what describe shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgenode import local
from edgenode import offline as cli_module
from edgenode.cli import cli
from sandbox._relax import RELAXATIONS

NODE = "edge-1"
ANNOTATION_FIELD = 'metadata.annotations["edgenode.io/insecure"]'

PLAIN = """\
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
    web: {image: busybox}
"""
ROOT = """\
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  acknowledge: [run-as-root]
  containers:
    web:
      image: busybox
      securityContext: {runAsRoot: true}
"""
OTHER = """\
kind: Pod
metadata: {name: cache}
spec:
  containers:
    cache: {image: busybox}
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(state: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args, "--state-dir", str(state), "--node", NODE], input=input)


def history(state: Path, kind: str, name: str) -> list[tuple[int, tuple[str, ...]]]:
    with local.open_store(state, NODE) as store:
        return [(r.revision, r.fields) for r in store.history(kind, name)]


NODE_MANIFEST = f"kind: Node\nmetadata: {{name: {NODE}}}\nspec: {{unschedulable: true}}\n"


def report_node_status(state: Path, sandbox: dict[str, dict[str, object]]) -> None:
    """What the node itself writes: its Node object with status (owned by node:<id>)."""
    with local.open_store(state, NODE) as store:
        store.put_document(
            "Node",
            NODE,
            {"status": {"phase": "Ready", "sandbox": sandbox}},
            manager=f"node:{NODE}",
        )


def test_applying_a_pod_without_relaxations_creates_it_and_a_second_apply_is_unchanged(
    tmp_path: Path, state: Path
) -> None:
    manifest = write(tmp_path, "web.yaml", PLAIN)
    first = run(state, "apply", "-f", manifest)
    assert first.exit_code == 0, first.output
    assert first.stdout == "Pod/web created (revision 1)\n"

    second = run(state, "apply", "-f", manifest)
    assert second.exit_code == 0, second.output
    assert second.stdout == "Pod/web unchanged\n"
    assert len(history(state, "Pod", "web")) == 1


def test_a_changed_manifest_is_configured_as_a_new_revision(tmp_path: Path, state: Path) -> None:
    run(state, "apply", "-f", write(tmp_path, "web.yaml", PLAIN))
    edited = PLAIN.replace("image: busybox", "image: busybox:1.36")
    result = run(state, "apply", "-f", write(tmp_path, "web2.yaml", edited))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Pod/web configured (revision 2)\n"


def test_adding_run_as_root_without_confirmation_is_refused_and_writes_nothing(
    tmp_path: Path, state: Path
) -> None:
    run(state, "apply", "-f", write(tmp_path, "web.yaml", PLAIN))
    before = history(state, "Pod", "web")

    result = run(state, "apply", "-f", write(tmp_path, "root.yaml", ROOT))
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert "Pod/web: spec.containers.web.securityContext.runAsRoot" in result.stderr
    assert "--confirm-insecure=run-as-root" in result.stderr
    assert "nothing was applied" in result.stderr
    assert history(state, "Pod", "web") == before


def test_confirmed_run_as_root_is_applied_and_recorded_in_history_and_describe(
    tmp_path: Path, state: Path
) -> None:
    run(state, "apply", "-f", write(tmp_path, "web.yaml", PLAIN))
    root = write(tmp_path, "root.yaml", ROOT)
    result = run(state, "apply", "-f", root, "--confirm-insecure=run-as-root")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Pod/web configured (revision 2); insecure: run-as-root (confirmed)\n"

    revisions = history(state, "Pod", "web")
    assert revisions[-1][0] == 2
    assert ANNOTATION_FIELD in revisions[-1][1]
    assert "spec.containers.web.securityContext.runAsRoot" in revisions[-1][1]
    with local.open_store(state, NODE) as store:
        doc = store.get("Pod", "web")
    assert doc is not None
    assert doc["metadata"]["annotations"] == {"edgenode.io/insecure": "run-as-root"}

    shown = run(state, "describe", "pod/web")
    assert shown.exit_code == 0, shown.output
    assert "edgenode.io/insecure=run-as-root" in shown.stdout
    assert (
        "run-as-root  spec.containers.web.securityContext.runAsRoot  (since revision 2, by user)"
        in shown.stdout
    )
    assert RELAXATIONS["run-as-root"] in shown.stdout
    assert "a non-root user inside the container" not in shown.stdout
    assert "a read-only root filesystem" in shown.stdout

    relabelled = write(tmp_path, "root2.yaml", ROOT.replace("app: web", "app: web2"))
    later = run(state, "apply", "-f", relabelled)
    assert later.stdout == "Pod/web configured (revision 3)\n"
    assert "(since revision 2, by user)" in run(state, "describe", "pod/web").stdout


def test_reapplying_the_same_insecure_manifest_needs_no_confirmation(
    tmp_path: Path, state: Path
) -> None:
    root = write(tmp_path, "root.yaml", ROOT)
    first = run(state, "apply", "-f", root, "--confirm-insecure", "run-as-root")
    assert first.exit_code == 0, first.output
    assert first.stdout == "Pod/web created (revision 1); insecure: run-as-root (confirmed)\n"
    again = run(state, "apply", "-f", root)
    assert again.exit_code == 0, again.output
    assert again.stdout == "Pod/web unchanged\n"


def test_removing_the_relaxation_removes_the_annotation_and_describe_shows_none(
    tmp_path: Path, state: Path
) -> None:
    run(state, "apply", "-f", write(tmp_path, "root.yaml", ROOT), "--confirm-insecure=run-as-root")
    result = run(state, "apply", "-f", write(tmp_path, "web.yaml", PLAIN))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Pod/web configured (revision 2)\n"
    assert ANNOTATION_FIELD in history(state, "Pod", "web")[-1][1]
    shown = run(state, "describe", "pod/web")
    assert "edgenode.io/insecure" not in shown.stdout
    assert "Relaxations: none" in shown.stdout


def test_one_fine_manifest_and_one_needing_confirmation_write_nothing(
    tmp_path: Path, state: Path
) -> None:
    fine = write(tmp_path, "cache.yaml", OTHER)
    insecure = write(tmp_path, "root.yaml", ROOT)
    result = run(state, "apply", "-f", fine, "-f", insecure)
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    with local.open_store(state, NODE) as store:
        assert store.get("Pod", "cache") is None
        assert store.get("Pod", "web") is None


def test_there_is_no_blanket_yes_for_insecure_settings(tmp_path: Path, state: Path) -> None:
    result = run(state, "apply", "-f", write(tmp_path, "root.yaml", ROOT), "--yes")
    assert result.exit_code == 2
    assert "No such option '--yes'" in result.output


def test_at_a_terminal_a_yes_answer_applies_the_insecure_setting(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    result = run(state, "apply", "-f", write(tmp_path, "root.yaml", ROOT), input="y\n")
    assert result.exit_code == 0, result.output
    assert (
        "Pod/web adds run-as-root (spec.containers.web.securityContext.runAsRoot): "
        f"{RELAXATIONS['run-as-root']}. Apply anyway? [y/N]" in result.stderr
    )
    assert result.stdout == "Pod/web created (revision 1); insecure: run-as-root (confirmed)\n"


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])
def test_at_a_terminal_no_or_no_answer_refuses_and_writes_nothing(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    fine = write(tmp_path, "cache.yaml", OTHER)
    insecure = write(tmp_path, "root.yaml", ROOT)
    result = run(state, "apply", "-f", fine, "-f", insecure, input=answer)
    assert result.exit_code == 3, result.output
    assert "nothing was applied" in result.stderr
    assert "--confirm-insecure=run-as-root" in result.stderr
    with local.open_store(state, NODE) as store:
        assert store.get("Pod", "cache") is None


def test_a_manifest_from_standard_input_is_refused_without_asking(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    result = run(state, "apply", "-f", "-", input=ROOT)
    assert result.exit_code == 3, result.output
    assert "Apply anyway?" not in result.output
    assert "--confirm-insecure=run-as-root" in result.stderr


def test_an_unknown_confirm_insecure_name_is_refused_before_anything_is_written(
    tmp_path: Path, state: Path
) -> None:
    root = write(tmp_path, "root.yaml", ROOT)
    result = run(state, "apply", "-f", root, "--confirm-insecure=run-as-root,rootful")
    assert result.exit_code == 2, result.output
    assert "--confirm-insecure: expected the name of a relaxation" in result.stderr
    assert "got 'rootful'" in result.stderr
    assert "nothing was applied" in result.stderr
    assert not state.exists()


def test_an_invalid_manifest_among_valid_ones_is_reported_and_nothing_is_applied(
    tmp_path: Path, state: Path
) -> None:
    fine = write(tmp_path, "cache.yaml", OTHER)
    bad = write(tmp_path, "bad.yaml", "kind: Pod\nmetadata: {name: web}\nspec: {}\n")
    result = run(state, "apply", "-f", fine, "-f", bad)
    assert result.exit_code == 2, result.output
    assert "bad.yaml, document 1 (Pod web)" in result.stderr
    assert "1 problem found; nothing was applied." in result.stderr
    assert not state.exists()


def test_describe_node_highlights_an_unavailable_apparmor(state: Path) -> None:
    detail = "this kernel has no AppArmor (/sys/kernel/security/apparmor does not exist)"
    report_node_status(
        state,
        {
            "apparmor": {"available": False, "detail": detail},
            "seccomp": {"available": True, "detail": "syscall filter applied"},
        },
    )
    result = run(state, "describe", f"node/{NODE}")
    assert result.exit_code == 0, result.output
    assert f"AppArmor: unavailable — {detail}" in result.stdout
    assert "seccomp: available — syscall filter applied" in result.stdout
    assert result.stdout.index("AppArmor") < result.stdout.index("seccomp: available")
    assert "phase: Ready" in result.stdout


def test_describe_an_unknown_object_names_it_and_lists_similar_names(
    tmp_path: Path, state: Path
) -> None:
    run(state, "apply", "-f", write(tmp_path, "web.yaml", PLAIN))
    result = run(state, "describe", "pod/wep")
    assert result.exit_code == 2, result.output
    assert "Pod/wep" in result.stderr
    assert "similar Pod names: web" in result.stderr


def test_describe_an_unknown_kind_lists_the_kinds(state: Path) -> None:
    result = run(state, "describe", "service/web")
    assert result.exit_code == 2, result.output
    assert "kind 'service'" in result.stderr
    assert "pod/NAME" in result.stderr


def test_describe_without_a_node_store_says_so_and_creates_nothing(state: Path) -> None:
    result = run(state, "describe", "pod/web")
    assert result.exit_code == 1, result.output
    assert "expected a node's state directory" in result.stderr
    assert not state.exists()


def test_apply_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["apply", "--help"])
    assert result.exit_code == 0
    for line in ("0  applied", "2  invalid input", "3  an insecure setting was not confirmed"):
        assert line in result.stdout


def test_every_relaxation_lifts_a_named_sandbox_default() -> None:
    assert set(local.SANDBOX_DEFAULTS) == set(RELAXATIONS)
    assert len(local.defaults_in_force([])) == len(RELAXATIONS)
    lifted = local.defaults_in_force(["privileged"])
    assert local.SANDBOX_DEFAULTS["add-capability"] not in lifted
    assert local.SANDBOX_DEFAULTS["unconfined-seccomp"] not in lifted


def test_applying_a_node_that_has_not_joined_is_refused_before_anything_is_written(
    tmp_path: Path, state: Path
) -> None:
    fine = write(tmp_path, "cache.yaml", OTHER)
    node = write(tmp_path, "node.yaml", NODE_MANIFEST)
    result = run(state, "apply", "-f", fine, "-f", node)
    assert result.exit_code == 2, result.output
    assert f"Node/{NODE}" in result.stderr
    assert f"created by node:{NODE} itself" in result.stderr
    with local.open_store(state, NODE) as store:
        assert store.get("Pod", "cache") is None


def test_applying_a_joined_node_changes_its_spec_and_keeps_its_status(
    tmp_path: Path, state: Path
) -> None:
    report_node_status(state, {"seccomp": {"available": True, "detail": "on"}})
    result = run(state, "apply", "-f", write(tmp_path, "node.yaml", NODE_MANIFEST))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Node/{NODE} configured (revision 2)\n"
    with local.open_store(state, NODE) as store:
        doc = store.get("Node", NODE)
    assert doc is not None
    assert doc["spec"] == {"unschedulable": True}
    assert doc["status"]["phase"] == "Ready"
