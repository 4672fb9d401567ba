"""Host-ports pods with real runc: in the node's network, each port a number of the node's that
no other pod has, passed as PORT_<NAME>, kept across restarts and edits, freed on delete."""

from __future__ import annotations

import random
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonkit import wait_for
from sandboxkit import LocalImages, make_rootfs, require_runc

from sandbox import logs
from sandbox._ports import PortRange
from sandbox._spec import ContainerDef, PodDef
from sandbox.pods import Sandbox, SandboxError
from sandbox.porttable import bound_on_node

SERVE = (
    "sh",
    "-c",
    'echo "$(hostname) on $PORT_HTTP" > /tmp/index.html; echo admin=$PORT_ADMIN; '
    "exec httpd -f -p $PORT_HTTP -h /tmp",
)
"""Serves its own name and port on $PORT_HTTP (in the node's network: reachable from here)."""


def free_range(size: int) -> PortRange:
    """`size` consecutive ports nothing on this machine holds now (other tests run beside)."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 29000)
        if not any(bound_on_node(p) for p in range(first, first + size)):
            return PortRange(first, first + size - 1)
    raise AssertionError("no free port range found between 20000 and 29000")


@pytest.fixture(scope="module")
def images() -> Iterator[LocalImages]:
    require_runc()
    root = Path(tempfile.mkdtemp(prefix="edgenode-test-hostports-"))
    try:
        root.chmod(0o755)
        yield LocalImages({"busybox": make_rootfs(root / "busybox")})
    finally:
        shutil.rmtree(root)


@pytest.fixture
def node(images: LocalImages) -> Iterator[Sandbox]:
    state = Path(tempfile.mkdtemp(prefix="edgenode-test-node-"))
    sandbox = Sandbox(state, images, host_ports=free_range(3))
    try:
        yield sandbox
    finally:
        for name in sandbox.pods():
            sandbox.delete_pod(name, grace_s=0)
        shutil.rmtree(state)


def served(name: str, *ports: str, image: str = "busybox") -> PodDef:
    return PodDef(
        name=name,
        containers={"web": ContainerDef(image=image, command=SERVE)},
        relaxations=frozenset({"host-network"}),
        host_ports=tuple(sorted(ports)),
        grace_s=1.0,
    )


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as answer:
        return str(answer.read().decode())


def answers(port: int, text: str) -> bool:
    try:
        return fetch(port).strip() == text
    except OSError:
        return False


def wait_answers(port: int, text: str) -> None:
    wait_for(lambda: answers(port, text), timeout=15, what=f"an answer on port {port}")


def test_a_host_ports_pod_listens_on_its_allocated_port_in_the_nodes_network(
    node: Sandbox,
) -> None:
    state = node.run_pod(served("web", "http"))
    assert state.netns is None
    [port] = state.host_ports.values()
    assert list(state.host_ports) == ["http"]
    assert node.ports.port_range.first <= port <= node.ports.port_range.last
    wait_answers(port, f"web on {port}")
    assert bound_on_node(port)


def test_two_pods_never_get_the_same_port_and_a_deleted_pods_port_is_free_again(
    node: Sandbox,
) -> None:
    a = node.run_pod(served("a", "http")).host_ports["http"]
    b = node.run_pod(served("b", "http")).host_ports["http"]
    assert a != b
    wait_answers(a, f"a on {a}")
    wait_answers(b, f"b on {b}")
    node.delete_pod("a", grace_s=0)
    assert "a" not in node.ports.ports()
    c = node.run_pod(served("c", "http")).host_ports["http"]
    assert c == a
    wait_answers(c, f"c on {c}")


def test_a_restart_and_an_edit_keep_the_port_and_a_new_port_reaches_every_container(
    node: Sandbox,
) -> None:
    port = node.run_pod(served("web", "http")).host_ports["http"]
    wait_answers(port, f"web on {port}")
    assert node.restart_pod("web").host_ports == {"http": port}
    result = node.update_pod(served("web", "http", "admin"))
    assert result.actions == {"web": "recreate"}
    ports = result.pod.host_ports
    assert ports["http"] == port and ports["admin"] != port
    wait_answers(port, f"web on {port}")
    lines = [line.text for line in logs.read(node.log_dir("web", "web"))]
    assert f"admin={ports['admin']}" in lines
    unchanged = node.update_pod(served("web", "http", "admin"))
    assert unchanged.actions == {"web": "keep"}
    dropped = node.update_pod(served("web", "http"))
    assert dropped.pod.host_ports == {"http": port}
    assert node.ports.ports() == {"web": {"http": port}}


def test_an_exhausted_range_refuses_the_pod_and_leaves_nothing_behind(node: Sandbox) -> None:
    node.run_pod(served("big", "a", "b", "c"))
    before = node.ports.ports()
    with pytest.raises(SandboxError, match=r"no host port left for pod small port http: all 3"):
        node.create_pod(served("small", "http"))
    assert node.pods() == ["big"]
    assert node.ports.ports() == before
    assert not (node.pods_dir / "small").exists()
