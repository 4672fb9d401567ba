"""The click-free path takes only the plain forms of get and apply; the rest goes to click."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgenode.fastcli import _parse, run


def test_plain_get_and_apply_forms_are_recognised() -> None:
    assert _parse(["get", "pods", "-o", "json", "--socket", "/s"]) == (
        "get",
        {"-o": ["json"], "--socket": ["/s"]},
        ["pods"],
    )
    assert _parse(["apply", "-f", "a.yaml", "--filename=b.yaml"]) == (
        "apply",
        {"-f": ["a.yaml"], "--filename": ["b.yaml"]},
        [],
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "pods", "--help"],
        ["get", "pods", "-o"],
        ["apply", "-f", "x.yaml", "--state-dir", "/tmp"],
        ["describe", "pod/web"],
        ["get", "pods", "-o", "fancy"],
        ["get"],
        [],
    ],
)
def test_anything_else_goes_to_the_full_cli(argv: list[str]) -> None:
    assert run(argv) is None


def test_the_fast_path_does_not_import_click() -> None:
    code = (
        "import sys; from edgenode.fastcli import run; "
        "rc = run(['get', 'pods', '--socket', '/nonexistent/sock']); "
        "print(rc, 'click' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["69", "False"]
    assert "cannot reach the edgenode daemon" in out.stderr


def test_node_and_lab_before_the_verb_move_after_it() -> None:
    from edgenode.fastcli import hoist_targets

    assert hoist_targets(["--node", "n2", "get", "pods"]) == ["get", "pods", "--node", "n2"]
    assert hoist_targets(["--lab=x", "--node", "n1", "nodes"]) == [
        "nodes",
        "--lab=x",
        "--node",
        "n1",
    ]
    assert hoist_targets(["get", "pods", "--node", "n2"]) == ["get", "pods", "--node", "n2"]
    assert hoist_targets(["--node"]) == ["--node"]
    assert hoist_targets(["--node", "n2"]) == ["--node", "n2"]


def test_wide_pods_show_each_pods_host_ports_from_its_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edgenode.fastcli import print_objects

    def pod(name: str, status: dict[str, object]) -> dict[str, object]:
        ports: dict[str, object] = {"web": {}, "admin": {}}
        spec = {"network": "host-ports", "containers": {"web": {"image": "x", "ports": ports}}}
        return {
            "kind": "Pod",
            "metadata": {"name": name, "revision": 3},
            "spec": spec,
            "status": status,
            "assignment": {"node": "n1"},
        }

    ported = pod("web", {"phase": "Running", "hostPorts": {"web": 30000, "admin": 30001}})
    print_objects("pods", None, [ported, pod("plain", {"phase": "Running"})], "wide")
    header, first, second = capsys.readouterr().out.splitlines()
    column = header.split().index("PORTS")
    assert header.split()[column - 1 : column + 2] == ["IMAGES", "PORTS", "MESSAGE"]
    assert first.split()[column] == "admin=30001,web=30000"
    assert second.split()[column] == "admin=?,web=?"  # not allocated yet
    print_objects("pods", None, [ported], "table")
    assert "PORTS" not in capsys.readouterr().out
