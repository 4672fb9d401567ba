"""The lab: nodes in network namespaces on one bridge, one daemon and one cluster; faults.

The first tests are pure (names, addresses, the nftables rules a fault set becomes, how --node
finds a socket). The rest bring a real lab up with the real CLI (one lab for the module,
uniquely named, always torn down) and look at it from outside: processes, namespaces,
credentials, pings across the bridge, and what `lab down` leaves (nothing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from labkit import cut_off, link_local, named_lab, ping_tool_available, reaches, running_lab

from edgenode import client, fastcli, verbs
from edgenode._protocol import ApiError
from edgenode.fastcli import _parse
from edgenode.lab import (
    Faults,
    Lab,
    LabInputError,
    daemon_argv,
    edgenode_argv,
    lan_addresses,
    partition_groups,
    ruleset,
)
from gossip._credentials import Credential, check
from gossip.identity import load_cluster, public_bytes

NODES = ["n1", "n2", "n3"]

# -- pure ------------------------------------------------------------------------------------


def test_partition_puts_each_unnamed_node_in_a_group_of_its_own() -> None:
    assert partition_groups(["n1", "n2", "n3", "n4"], [["n2", "n3"]]) == [
        ["n2", "n3"],
        ["n1"],
        ["n4"],
    ]


@pytest.mark.parametrize(
    ("groups", "says"),
    [
        ([["n1"], ["n9"]], "no node 'n9' in this lab (its nodes: n1, n2, n3)"),
        ([["n1"], ["n1"]], "n1 is in groups 1 and 2"),
    ],
)
def test_partition_refuses_unknown_and_repeated_nodes(groups: list[list[str]], says: str) -> None:
    with pytest.raises(LabInputError, match="nothing was changed") as err:
        partition_groups(NODES, groups)
    assert says in str(err.value)


def test_rules_drop_between_groups_and_a_share_of_a_lossy_node_both_ways() -> None:
    faults = Faults(partition=(("n1",), ("n2", "n3")), loss={"n3": 20})
    rules = ruleset(faults)
    assert 'iifname { "n1" } oifname != { "n1" } drop' in rules
    assert 'iifname { "n2", "n3" } oifname != { "n2", "n3" } drop' in rules
    assert 'iifname "n3" numgen random mod 100 < 20 drop' in rules
    assert 'oifname "n3" numgen random mod 100 < 20 drop' in rules
    assert rules.startswith("table bridge edgenode_lab\ndelete table bridge edgenode_lab\n")


def test_rules_without_faults_drop_nothing_and_full_loss_drops_everything() -> None:
    assert "drop" not in ruleset(Faults())
    assert "numgen" not in ruleset(Faults(loss_all=100)) and "    drop\n" in ruleset(
        Faults(loss_all=100)
    )


def test_faults_survive_their_json_form() -> None:
    faults = Faults(partition=(("n1",), ("n2", "n3")), loss={"n2": 5}, loss_all=1, down=("n3",))
    assert Faults.from_json(json.loads(json.dumps(faults.to_json()))) == faults


def test_lab_addresses_are_stable_per_lab_and_distinct_per_node_and_lab() -> None:
    assert lan_addresses("a", 2) == lan_addresses("a", 2)
    ula, ipv4 = lan_addresses("a", 2)
    assert ula.startswith("fd") and ula.endswith(":1::2") and ipv4.endswith(".2")
    assert lan_addresses("a", 3) != (ula, ipv4) and lan_addresses("b", 2)[0] != ula


def test_lab_names_that_would_not_make_safe_namespace_names_are_refused() -> None:
    for bad in ("", "Lab", "a b", "-a", "a" * 30, "../x"):
        with pytest.raises(LabInputError, match="lab name"):
            Lab(bad)


def test_daemon_enters_only_its_node_network_namespace_with_the_lab_daemon_args(
    tmp_path: Path,
) -> None:
    lab = Lab("x", state_root=tmp_path / "state", run_root=tmp_path / "run")
    lab.run_dir.mkdir(parents=True)
    (lab.run_dir / "lab.json").write_text(
        json.dumps({"nodes": NODES, "extra_daemon_args": ["--listen-port", "7946"]})
    )
    argv = daemon_argv(lab, "n2")
    assert argv[:3] == ["nsenter", "--net=/run/netns/enl-x-n2", "--"]
    assert argv[3 : 3 + len(edgenode_argv())] == edgenode_argv()
    tail = argv[3 + len(edgenode_argv()) :]
    assert tail[:1] == ["up"] and tail[-2:] == ["--listen-port", "7946"]
    assert tail[tail.index("--socket") + 1] == str(tmp_path / "run" / "x" / "n2.sock")
    assert tail[tail.index("--state-dir") + 1] == str(tmp_path / "state" / "x" / "n2")
    assert tail[tail.index("--name") + 1] == "n2"


@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run directory holding lab "lab" of n1..n3 (nothing runs)."""
    monkeypatch.setattr(client, "LAB_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("EDGENODE_LAB", raising=False)
    monkeypatch.delenv("EDGENODE_SOCKET", raising=False)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "lab.json").write_text(json.dumps({"nodes": NODES}))
    return tmp_path


def test_node_resolves_to_the_lab_node_socket_or_names_the_lab_and_its_nodes(
    lab_dir: Path,
) -> None:
    assert client.lab_socket("n2") == str(lab_dir / "lab" / "n2.sock")
    with pytest.raises(ApiError) as err:
        client.lab_socket("n7")
    assert "lab 'lab' has no node 'n7'; its nodes: n1, n2, n3" in err.value.message
    with pytest.raises(ApiError) as err:
        client.lab_socket("n2", "other")
    assert "there is no lab 'other'" in err.value.message and err.value.exit == 2


def test_node_on_a_client_verb_refuses_a_node_the_lab_lacks(lab_dir: Path) -> None:
    out = CliRunner().invoke(verbs.get, ["nodes", "--node", "n9"])
    assert out.exit_code == 2 and "lab 'lab' has no node 'n9'" in out.output


def test_node_with_state_dir_still_names_the_offline_node(lab_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = CliRunner().invoke(verbs.describe, ["node/x", "--state-dir", str(state), "--node", "n9"])
    assert "lab" not in out.output and str(state) in out.output


def test_socket_and_node_together_are_refused(lab_dir: Path) -> None:
    out = CliRunner().invoke(verbs.why, ["pod/x", "--node", "n2", "--socket", "/s"])
    assert out.exit_code == 2 and "--socket and --node both name a daemon" in out.output


def listening(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    return server


def test_a_lab_alone_names_its_first_node_whose_daemon_answers(lab_dir: Path) -> None:
    run = lab_dir / "lab"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run / "n1.sock"))  # left by a daemon that was killed: refuses connections
    stale.close()
    with listening(run / "n2.sock"), listening(run / "n3.sock"):
        assert client.lab_any_socket("lab") == str(run / "n2.sock")
        assert fastcli._socket({"--lab": ["lab"]}) == str(run / "n2.sock")
    with pytest.raises(ApiError) as err:
        client.lab_any_socket("lab")
    assert err.value.exit == 69
    assert "lab 'lab': none of its nodes' daemons answers (n1, n2, n3)" in err.value.message
    assert "`edgenode lab start NODE --lab lab`" in err.value.message
    out = CliRunner().invoke(verbs.get, ["nodes", "--lab", "lab"])
    assert out.exit_code == 69 and "edgenode get: lab 'lab': none of its nodes'" in out.output


def test_a_lab_in_the_environment_alone_leaves_the_verb_on_this_machines_daemon(
    lab_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGENODE_LAB", "lab")
    out = CliRunner().invoke(verbs.get, ["nodes", "--socket", str(lab_dir / "none.sock")])
    assert out.exit_code != 0 and str(lab_dir / "none.sock") in out.output
    assert "lab" not in out.output.replace(str(lab_dir), "")


def test_socket_and_lab_together_are_refused(lab_dir: Path) -> None:
    out = CliRunner().invoke(verbs.why, ["pod/x", "--lab", "lab", "--socket", "/s"])
    assert out.exit_code == 2 and "--socket and --lab both name a daemon" in out.output
    assert fastcli._socket({"--lab": ["lab"], "--socket": ["/s"]}) == ""


def test_the_fast_path_takes_node_and_lab() -> None:
    assert _parse(["get", "pods", "--node", "n2", "--lab=x"]) == (
        "get",
        {"--node": ["n2"], "--lab": ["x"]},
        ["pods"],
    )


# -- a real lab ------------------------------------------------------------------------------


def edgenode(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGENODE_")}
    return subprocess.run(
        [*edgenode_argv(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Three nodes, brought up by the real CLI."""
    with named_lab() as the_lab:
        started = time.monotonic()
        out = edgenode("lab", "up", "--nodes", "3", "--lab", the_lab.name)
        assert out.returncode == 0, out.stderr
        print(f"lab up: 3 nodes answering in {time.monotonic() - started:.2f} s")
        yield the_lab


def net_ns(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def gone(pid: int) -> bool:
    """No such process, or only its zombie (it ran no more; its parent has not reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_lab_up_runs_one_answering_daemon_per_node_in_the_node_namespace(lab: Lab) -> None:
    status = lab.status()
    assert [s.node for s in status] == NODES
    assert all(s.running and s.answering and s.netns_exists for s in status)
    namespaces = set()
    for s in status:
        assert s.pid is not None
        ns_inode = os.stat(f"/run/netns/{lab.netns(s.node)}").st_ino
        assert net_ns(s.pid) == f"net:[{ns_inode}]" != net_ns("self")
        namespaces.add(net_ns(s.pid))
    assert len(namespaces) == 3


def test_every_node_holds_a_credential_its_cluster_root_signed(lab: Lab) -> None:
    clusters = {load_cluster(lab.state_dir(n)) for n in NODES}
    assert len(clusters) == 1
    (cluster,) = clusters
    for node in NODES:
        state = lab.state_dir(node)
        cred = Credential.decode((state / "cluster" / "node.cred").read_bytes())
        assert check(cred, root_public=cluster.root_public, now=int(time.time())) is None
        assert (cred.subject, cred.role) == (node, "node")
        key = (state / "node.key").read_bytes()
        assert cred.public_key == public_bytes(Ed25519PrivateKey.from_private_bytes(key))
        assert (state / "cluster" / "root.key").exists() == (node == "n1")


def test_client_verbs_reach_a_lab_node_by_name(lab: Lab) -> None:
    fast = edgenode("get", "nodes", "-o", "json", "--node", "n2", "--lab", lab.name)
    assert fast.returncode == 0, fast.stderr
    assert "n2" in [n["metadata"]["name"] for n in json.loads(fast.stdout)]
    full = edgenode("describe", "node/n3", "--node", "n3", "--lab", lab.name)
    assert full.returncode == 0 and "n3" in full.stdout, full.stderr
    alone = edgenode("get", "pods", "--lab", lab.name)  # the first node that answers: n1
    whole = edgenode("describe", "node/n1", "--lab", lab.name)
    assert alone.returncode == 0 and whole.returncode == 0, (alone.stderr, whole.stderr)
    assert "n1" in whole.stdout
    unknown = edgenode("get", "nodes", "--node", "n9", "--lab", lab.name)
    assert unknown.returncode == 2
    assert f"lab '{lab.name}' has no node 'n9'; its nodes: n1, n2, n3" in unknown.stderr


def flush_neighbours(lab: Lab) -> None:
    """Forget every neighbour: the next ping must solicit it by multicast first."""
    for node in NODES:
        assert lab.exec(node, ["ip", "neigh", "flush", "all"]).returncode == 0


def test_partition_cuts_groups_apart_keeps_each_whole_and_heal_rejoins(lab: Lab) -> None:
    require(ping_tool_available(), "needs ping (or busybox)")
    ula = {n: lab.address(n)[0] for n in NODES}
    flush_neighbours(lab)
    try:
        assert lab.partition([["n1"], ["n2", "n3"]]) == [["n1"], ["n2", "n3"]]
        assert reaches(lab, "n2", ula["n3"])  # after a multicast neighbour solicitation
        assert reaches(lab, "n3", f"{link_local(lab, 'n2')}%eth0")
        assert cut_off(lab, "n1", ula["n2"])
        assert cut_off(lab, "n3", lab.address("n1")[1])
        assert [s.group for s in lab.status()] == [1, 2, 2]
    finally:
        lab.heal()
    assert reaches(lab, "n1", ula["n2"]) and reaches(lab, "n3", lab.address("n1")[1])
    assert [s.group for s in lab.status()] == [None, None, None]


def test_full_loss_on_a_node_cuts_its_pings_and_zero_restores_them(lab: Lab) -> None:
    require(ping_tool_available(), "needs ping (or busybox)")
    try:
        lab.loss("n3", 100)
        assert [s.loss for s in lab.status()] == [0, 0, 100]
        assert cut_off(lab, "n1", lab.address("n3")[0])
        assert reaches(lab, "n1", lab.address("n2")[0])
    finally:
        lab.loss("n3", 0)
    assert reaches(lab, "n1", lab.address("n3")[0])


def test_killed_daemon_is_replaced_by_start_and_answers_again(lab: Lab) -> None:
    old = lab.pid("n2")
    assert old is not None
    killed = edgenode("lab", "kill", "n2", "--lab", lab.name)
    assert killed.returncode == 0 and f"daemon {old} ended by SIGKILL" in killed.stdout
    assert gone(old) and not lab.answering("n2") and lab.pid("n2") is None
    assert [s.running for s in lab.status()] == [True, False, True]
    for verb in (["get", "nodes"], ["describe", "node/n2"]):  # the fast path, and click's
        down = edgenode(*verb, "--node", "n2", "--lab", lab.name)
        assert down.returncode == 69 and f"daemon at {lab.socket('n2')}" in down.stderr
    started = edgenode("lab", "start", "n2", "--lab", lab.name)
    assert started.returncode == 0, started.stderr
    new = lab.pid("n2")
    assert new is not None and new != old and lab.answering("n2")
    assert net_ns(new) == f"net:[{os.stat('/run/netns/' + lab.netns('n2')).st_ino}]"


POD = """\
kind: Pod
metadata: {name: web}
spec:
  containers:
    web:
      image: busybox
      command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
"""


def running_pod(lab: Lab, node: str, name: str) -> tuple[int, str]:
    """Wait until pod `name` runs on `node`; its container's pid and its netns path."""
    pod_dir = lab.state_dir(node) / "pods" / name
    deadline = time.monotonic() + 30
    while True:
        out = lab.cli(node, "get", "pod", name, "-o", "json")
        if out.returncode == 0 and json.loads(out.stdout)["status"].get("phase") == "Running":
            break
        assert time.monotonic() < deadline, f"pod {name} not running: {out.stdout}{out.stderr}"
        time.sleep(0.1)
    status = json.loads((pod_dir / "containers" / name / "status.json").read_text())
    return int(status["pid"]), json.loads((pod_dir / "pod.json").read_text())["netns"]


def test_down_removes_namespaces_processes_pods_state_and_runtime_dirs() -> None:
    with running_lab(2) as lab:
        applied = lab.cli("n1", "apply", "-f", "-", input=POD)
        assert applied.returncode == 0, applied.stderr
        container, pod_netns = running_pod(lab, "n1", "web")
        lab.kill("n1")  # a crash: the pod outlives its daemon, and down still finds it
        assert not gone(container) and os.path.exists(pod_netns)
        pids = [s.pid for s in lab.status()]
        started = time.monotonic()
        out = edgenode("lab", "down", "--lab", lab.name)
        took = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, check=True).stdout
        assert f"enl-{lab.name}-".encode() not in listed
        assert all(gone(p) for p in [container, *pids] if p is not None)
        assert not os.path.exists(pod_netns)
        assert not lab.state_root.exists() and not lab.run_dir.exists()
        again = edgenode("lab", "down", "--lab", lab.name)
        assert again.returncode == 0 and "nothing to remove" in again.stdout
        print(f"lab down: 2 nodes and a pod in {took:.2f} s")


def test_up_refuses_a_lab_that_exists_and_changes_nothing(lab: Lab) -> None:
    out = edgenode("lab", "up", "--nodes", "2", "--lab", lab.name)
    assert out.returncode == 1 and "already exists" in out.stderr
    assert "nothing was changed" in out.stderr
    assert lab.nodes() == NODES and all(s.answering for s in lab.status())
