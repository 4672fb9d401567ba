"""Host-ports pods for real: two daemons, each in its own network namespace. A pod with
`network: host-ports` runs in its node's network on a port the node allocated, reachable at
the node's address from the other node, which shows the port too (status is replicated).
Ports are unique, kept by edits and daemon restarts, freed on delete; an exhausted range fails
the pod with the reason. A readiness check naming a host port checks the allocated number."""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemonkit import wait_for
from labkit import named_lab, pod

from edgenode.cli import cli
from edgenode.lab import Lab

RANGE = (30000, 30002)
POD = """\
kind: Pod
metadata: {{name: {name}}}
spec:
  node: n1
  network: host-ports
  acknowledge: [host-network]
  terminationGracePeriodSeconds: 1
  containers:
    web:
      image: busybox
      env: {{GREETING: {greeting}}}
      ports: {{{ports}}}
      readiness: {{http: {{path: /, port: http}}, period: 1s}}
      command:
        - sh
        - -c
        - echo "$GREETING from {name} on $PORT_HTTP" > /tmp/index.html;
          exec httpd -f -p $PORT_HTTP -h /tmp
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with named_lab("hp") as lab:
        lab.up(2, extra_daemon_args=["--host-ports", f"{RANGE[0]}-{RANGE[1]}"])
        yield lab


def apply(lab: Lab, name: str, *, greeting: str = "hello", ports: str = "http: {}") -> None:
    text = POD.format(name=name, greeting=greeting, ports=ports)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        out = lab.cli("n1", "apply", "-f", f.name, "--confirm-insecure", "host-network")
        assert out.returncode == 0, out.stderr
    finally:
        Path(f.name).unlink()


def delete(lab: Lab, *names: str) -> None:
    for name in names:
        lab.cli("n1", "delete", f"pod/{name}")
    for name in names:

        def gone(n: str = name) -> bool:
            return pod(lab, "n1", n) is None and not (lab.state_dir("n1") / "pods" / n).exists()

        wait_for(gone, timeout=60, what=f"pod {name} and its sandbox gone")


def host_ports(lab: Lab, node: str, name: str) -> dict[str, int]:
    """The ports node `node` sees pod `name` holding, once it runs (empty before)."""
    status = (pod(lab, node, name) or {}).get("status") or {}
    if status.get("phase") != "Running":
        return {}
    return dict(status.get("hostPorts") or {})


def running_with_ports(lab: Lab, name: str) -> dict[str, int]:
    """Pod `name`'s ports once both nodes see it running with them."""
    wait_for(lambda: bool(host_ports(lab, "n1", name)), timeout=90, what=f"{name} running")
    ports = host_ports(lab, "n1", name)
    wait_for(lambda: host_ports(lab, "n2", name) == ports, timeout=30, what="status on n2")
    return ports


FETCH = """\
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    print(answer.read().decode().strip())
"""


def fetch(lab: Lab, src: str, host: str, port: int) -> str:
    """What `http://host:port/` answers, asked from node `src` ('' if nothing answers)."""
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    out = lab.exec(src, [sys.executable, "-c", FETCH, url], timeout=10)
    return out.stdout.strip() if out.returncode == 0 else ""


def serves(lab: Lab, port: int, text: str) -> None:
    """Node n1 answers `text` on `port` at both its addresses, asked from n2."""
    for address in lab.address("n1"):

        def answers(a: str = address) -> bool:
            return fetch(lab, "n2", a, port) == text

        wait_for(answers, timeout=30, what=f"{text!r} at {address} port {port}")


def table(lab: Lab) -> dict[str, dict[str, int]]:
    path = lab.state_dir("n1") / "sandbox" / "ports.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def test_a_host_ports_pod_is_reachable_at_its_nodes_address_and_allocated_port(lab: Lab) -> None:
    apply(lab, "web")
    try:
        ports = running_with_ports(lab, "web")
        assert list(ports) == ["http"] and RANGE[0] <= ports["http"] <= RANGE[1]
        serves(lab, ports["http"], f"hello from web on {ports['http']}")

        def ready() -> bool:  # its check asks the port the node allocated, by its name
            return ((pod(lab, "n1", "web") or {}).get("status") or {}).get("ready") is True

        wait_for(ready, timeout=30, what="web ready")
        wide = lab.cli("n2", "get", "pods", "-o", "wide")
        assert wide.returncode == 0, wide.stderr
        header, *rows = wide.stdout.splitlines()
        [row] = [r for r in rows if r.split()[0] == "web"]
        assert row.split()[header.split().index("PORTS")] == f"http={ports['http']}"
        assert row.split()[header.split().index("NODE")] == "n1"
    finally:
        delete(lab, "web")


def test_two_pods_get_different_ports_and_a_deleted_pods_port_is_free_again(lab: Lab) -> None:
    apply(lab, "a")
    apply(lab, "b")
    try:
        a, b = running_with_ports(lab, "a")["http"], running_with_ports(lab, "b")["http"]
        assert a != b
        serves(lab, a, f"hello from a on {a}")
        serves(lab, b, f"hello from b on {b}")
        delete(lab, "a")
        assert "a" not in table(lab)
        apply(lab, "c")
        c = running_with_ports(lab, "c")["http"]
        assert c == a
        serves(lab, c, f"hello from c on {c}")
    finally:
        delete(lab, "a", "b", "c")


def test_an_in_place_update_and_a_daemon_restart_keep_the_port(lab: Lab) -> None:
    apply(lab, "web")
    try:
        port = running_with_ports(lab, "web")["http"]
        serves(lab, port, f"hello from web on {port}")
        apply(lab, "web", greeting="updated")
        serves(lab, port, f"updated from web on {port}")
        assert host_ports(lab, "n1", "web") == {"http": port}
        before = table(lab)
        lab.kill("n1", signal.SIGTERM)
        assert table(lab) == before
        lab.start("n1")
        serves(lab, port, f"updated from web on {port}")  # it ran on while its node restarted
        assert table(lab) == before
        apply(lab, "other")
        other = running_with_ports(lab, "other")["http"]
        assert other != port  # the table came back with the daemon
        assert host_ports(lab, "n1", "web") == {"http": port}
    finally:
        delete(lab, "web", "other")


def test_an_exhausted_range_fails_the_pod_with_the_reason_in_get_and_why(lab: Lab) -> None:
    apply(lab, "big", ports="a: {}, b: {}, http: {}")
    try:
        running_with_ports(lab, "big")
        apply(lab, "late")

        def failed() -> str:
            status = (pod(lab, "n1", "late") or {}).get("status") or {}
            return str(status.get("message", "")) if status.get("phase") == "Pending" else ""

        wait_for(lambda: "no host port left" in failed(), timeout=60, what="late failed")
        assert failed().startswith(
            "pod.start failed at sandbox.create: SandboxError: no host port left for pod late "
            "port http: "
            f"all 3 ports of the node's range {RANGE[0]}-{RANGE[1]} are taken (3 by pods of "
            "this node, 0 by other programs listening on the node)"
        )
        why = lab.cli("n1", "why", "pod/late")
        assert "sandbox.create" in why.stdout and "no host port left" in why.stdout, why.stdout
        assert "late" not in table(lab)
        delete(lab, "big")
        wait_for(lambda: bool(host_ports(lab, "n1", "late")), timeout=90, what="late running")
    finally:
        delete(lab, "big", "late")


def test_a_bad_host_port_range_is_refused_before_the_daemon_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["up", "--state-dir", str(tmp_path), "--host-ports", "9-3"])
    assert result.exit_code == 2
    assert "--host-ports" in result.output
    assert "expected a port range FIRST-LAST with FIRST <= LAST, got '9-3'; write 3-9" in (
        result.output
    )
    assert not any(tmp_path.iterdir())
