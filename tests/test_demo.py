"""The main job (`make up` runs `edgenode demo`) works and is safe to run twice."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sandboxkit import require_runc

from edgenode.cli import cli


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory the pods' unmapped ids can reach (pytest's own tree is 0700)."""
    require_runc()
    parent = Path(tempfile.mkdtemp(prefix="edgenode-test-demo-"))
    parent.chmod(0o755)
    try:
        yield parent / "state"
    finally:
        CliRunner().invoke(cli, ["demo", "--down", "--state-dir", str(parent / "state")])
        shutil.rmtree(parent, ignore_errors=True)


def test_demo_runs_the_examples_edits_in_place_and_rolls_back_then_reruns_without_changes(
    state: Path,
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "--state-dir", str(state), "--node", "demo-1"])
    assert first.exit_code == 0, first.output
    assert "Pod/web" in first.output and "applied" in first.output
    assert re.search(r"│ web +│ web +│ running", first.output)
    assert re.search(r"│ backup-once +│ backup +│ (running|exited)", first.output)
    assert "not here: probe: pinned to node edge-1" in first.output
    assert first.output.count("in place: web: recreate; network namespace kept") == 2
    assert "rollback Pod/web to revision 1: written as revision 3" in first.output
    assert "version vector {demo-1: 8}" in first.output
    assert stat.S_IMODE((state / "node.key").stat().st_mode) == 0o600

    second = runner.invoke(cli, ["demo", "--state-dir", str(state), "--node", "demo-1"])
    assert second.exit_code == 0, second.output
    assert "applied" not in second.output.split("edit Pod/web")[0]
    assert "rollback Pod/web to revision 3: written as revision 5" in second.output


def test_demo_down_stops_its_pods_and_removes_their_namespaces(state: Path) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["demo", "--state-dir", str(state), "--node", "demo-1"]).exit_code == 0
    )
    assert os.path.exists("/run/netns/edgenode-web")
    down = runner.invoke(cli, ["demo", "--down", "--state-dir", str(state)])
    assert down.exit_code == 0, down.output
    assert "pod web stopped and deleted" in down.output
    assert not os.path.exists("/run/netns/edgenode-web") and not state.exists()


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
