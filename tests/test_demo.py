"""The main job (`make up` runs `edgenode demo`) works and is safe to run twice."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from edgenode.cli import cli


def test_demo_applies_examples_edits_and_rolls_back_then_reruns_without_changes(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "--state-dir", str(tmp_path), "--node", "demo-1"])
    assert first.exit_code == 0, first.output
    assert "Pod/web" in first.output and "applied" in first.output
    assert "rollback Pod/web to revision 1: written as revision 3" in first.output
    assert "version vector {demo-1: 6}" in first.output
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600

    second = runner.invoke(cli, ["demo", "--state-dir", str(tmp_path), "--node", "demo-1"])
    assert second.exit_code == 0, second.output
    assert "applied" not in second.output.split("edit Pod/web")[0]
    assert "rollback Pod/web to revision 3: written as revision 5" in second.output


def test_demo_refuses_an_invalid_example_and_writes_nothing(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "bad.yaml").write_text("kind: Pod\nmetadata: {name: web}\nspec: {}\n")
    result = CliRunner().invoke(
        cli, ["demo", "--state-dir", str(tmp_path / "state"), "--examples", str(examples)]
    )
    assert result.exit_code == 2
    assert "bad.yaml, document 1 (Pod web)" in result.output
    assert "spec.containers" in result.output
    assert not (tmp_path / "state").exists()
