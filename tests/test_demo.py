"""The main job (`make up` runs `edgenode demo`): a node daemon running the examples, a tour
of an in-place edit, safe to run twice; `--down` removes everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sandboxkit import require_runc

from edgenode.cli import cli
from sandbox.pods import node_key

EDGENODE = str(Path(sys.executable).with_name("edgenode"))


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """A state directory the pods' unmapped ids can reach (pytest's own tree is 0700)."""
    require_runc()
    parent = Path(tempfile.mkdtemp(prefix="edgenode-test-demo-"))
    parent.chmod(0o755)
    try:
        yield parent
    finally:
        CliRunner().invoke(cli, ["demo", "--down", *where(parent)])
        shutil.rmtree(parent, ignore_errors=True)


def where(parent: Path) -> list[str]:
    # A lab of this test's own: `demo --down` also removes the demo's lab, never a user's.
    lab = f"d{abs(hash(parent.name)) % 10**8}"
    return ["--state-dir", str(parent / "state"), "--socket", str(parent / "sock"), "--lab", lab]


def pod_rows(lines: list[str]) -> dict[str, dict[str, str]]:
    """The demo's `get pods -o wide` table, by pod name, each row by column title."""
    start = next(i for i, x in enumerate(lines) if x.split()[:3] == ["NAME", "READY", "PHASE"])
    titles = lines[start].split()
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) < len(titles) - 1:  # MESSAGE may be empty; the table ends here
            break
        rows[cells[0]] = dict(zip(titles, cells, strict=False))
    return rows


def test_demo_runs_the_examples_on_a_node_and_tours_an_edit_then_reruns_unchanged(
    demo_dir: Path,
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", *where(demo_dir), "--node", "demo-1"])
    assert first.exit_code == 0, first.output
    assert "apply Pod/web: created (revision 1)" in first.output
    lines = first.output.splitlines()
    pods = pod_rows(lines)
    assert (pods["web"]["PHASE"], pods["web"]["NODE"]) == ("Running", "demo-1")
    assert (pods["backup-once"]["PHASE"], pods["backup-once"]["NODE"]) == ("Succeeded", "demo-1")
    assert pods["web"]["ADDRESS"].startswith("fd") and pods["web"]["PORTS"] == "http=8080"
    assert pods["sensor-reader"]["PHASE"] == "Running"  # the one node plays the sensor's too
    unplaced = "Pod/probe waits for a node: pinned to edge-1, which is not in the membership view"
    assert any(unplaced in x for x in lines)
    assert "added spec.containers.web.env.GREETING: None -> 'hello'" in first.output
    assert "pod.update Pod/web run" in first.output and "✓ containers.update" in first.output
    assert "rollback pod/web to revision" in first.output
    assert "node daemon running" in first.output

    second = runner.invoke(cli, ["demo", *where(demo_dir), "--node", "demo-1"])
    assert second.exit_code == 0, second.output
    assert "the node daemon already runs" in second.output
    assert "apply Pod/web: unchanged" in second.output


def test_demo_down_stops_the_node_and_its_pods_and_removes_their_namespaces(
    demo_dir: Path,
) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", *where(demo_dir), "--node", "demo-1"]).exit_code == 0
    netns = f"/run/netns/edgenode-{node_key(demo_dir / 'state')}-web"
    assert os.path.exists(netns)
    down = runner.invoke(cli, ["demo", "--down", *where(demo_dir)])
    assert down.exit_code == 0, down.output
    assert "node daemon" in down.output and "pod web stopped and deleted" in down.output
    assert not os.path.exists(netns)
    assert not (demo_dir / "state").exists()


def test_demo_refuses_an_invalid_example_and_starts_nothing(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "bad.yaml").write_text("kind: Pod\nmetadata: {name: web}\nspec: {}\n")
    result = CliRunner().invoke(cli, ["demo", *where(tmp_path), "--examples", str(examples)])
    assert result.exit_code == 2
    assert "bad.yaml, document 1 (Pod web)" in result.output
    assert "spec.containers" in result.output
    assert not (tmp_path / "state").exists()


def test_demo_with_three_nodes_forms_a_mesh_runs_the_examples_and_down_removes_it(
    demo_dir: Path,
) -> None:
    runner = CliRunner()
    lab = where(demo_dir)[-1]
    first = runner.invoke(cli, ["demo", "--nodes", "3", *where(demo_dir)])
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("NAME "))) :][:4]
    assert sorted(row.split()[0] for row in table[1:]) == ["n1", "n2", "n3"]
    assert all(row.split()[1] == "alive" for row in table[1:]), table
    pods = pod_rows(lines)
    placed = {"web", "backup-once", "sensor-reader", "greeter-v1-0", "greeter-v1-1"}
    assert all(pods[p]["PHASE"] in ("Running", "Succeeded") for p in placed), pods
    assert pods["sensor-reader"]["NODE"] == "n3" and pods["backup-once"]["NODE"] == "n1"
    addresses = {pods[p]["ADDRESS"] for p in placed}
    assert len(addresses) == len(placed) and all(a.startswith("fd") for a in addresses)
    web = pods["web"]["NODE"]
    assert f"lab kill {web} --lab {lab}" in first.output
    # The pod-to-pod hint works as printed: another node reaches web's own address.
    [hint] = [x.split() for x in lines if f"-- ping -6 -c 3 {pods['web']['ADDRESS']}" in x]
    assert hint[1:4] == ["lab", "exec", "--lab"] and hint[5] != web
    ping = subprocess.run([EDGENODE, *hint[1:]], capture_output=True, text=True, check=False)
    assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    assert "n3 holds the same desired state" in first.output and "web" in first.output
    assert "rollback pod/web to revision" in first.output
    assert any(ns.startswith(f"enl-{lab}-") for ns in os.listdir("/run/netns"))
    down = runner.invoke(cli, ["demo", "--down", *where(demo_dir)])
    assert down.exit_code == 0, down.output
    assert f"lab {lab}: removed n1: pod web" in down.output
    assert not any(ns.startswith(f"enl-{lab}-") for ns in os.listdir("/run/netns"))
