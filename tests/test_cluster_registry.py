"""A cluster node's store trusts what its credentials say: the node's key acts as node and
placement, its local operator as user; user writes (offline apply, the daemon's verbs) are
authored by that operator, and a peer trusting the operator, not the node, accepts them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edgenode import local
from edgenode.offline import cli
from gossip.identity import (
    init_cluster,
    issue_bundle,
    join,
    join_request,
    registry_entry,
)
from store import Store

DAY = 86_400
NOW = int(time.time()) - DAY
"""Issued a day ago: the CLI and the daemon's verbs check credentials on the wall clock."""
POD = """\
kind: Pod
metadata: {name: web}
spec:
  containers:
    web: {image: busybox}
"""


def managers(store: Store, key_id: str) -> tuple[str, ...] | None:
    entry = store.registry.get(key_id)
    return entry.managers if entry else None


def two_nodes(tmp_path: Path) -> tuple[Path, Path]:
    """n1 made the cluster; n2 joined it with a bundle n1 issued."""
    n1, n2 = tmp_path / "n1", tmp_path / "n2"
    init_cluster(n1, "n1", now=NOW)
    bundle = issue_bundle(n1, join_request(n2, "n2"), now=NOW)
    join(n2, bundle, "n2", now=NOW)
    return n1, n2


def test_a_cluster_node_acts_as_node_and_placement_and_its_operator_as_user(
    tmp_path: Path,
) -> None:
    with local.open_store(tmp_path, "n1") as lone:  # first a lone node, acting as user itself
        assert managers(lone, "n1") == ("node:n1", "placement", "user")
    assert local.user_author(tmp_path) is None
    init_cluster(tmp_path, "n1", now=NOW)
    with local.open_store(tmp_path, now=NOW + 60) as store:
        assert store.node_id == "n1"  # the credential names the node
        assert managers(store, "n1") == ("node:n1", "placement")
        assert managers(store, "admin-n1") == ("user",)
    author = local.user_author(tmp_path, now=NOW + 60)
    assert author is not None and author.name == "admin-n1"


def test_offline_apply_on_a_cluster_node_is_authored_by_its_operator_and_a_peer_accepts_it(
    tmp_path: Path,
) -> None:
    n1, n2 = two_nodes(tmp_path)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD)
    done = CliRunner().invoke(cli, ["apply", "-f", str(manifest), "--state-dir", str(n2)])
    assert done.exit_code == 0, done.output
    with local.open_store(n2) as s2:
        (rev,) = s2.history("Pod", "web")
        assert (rev.author, rev.manager) == ("admin-n2", "user")
        changes = s2.missing({}).changes
    bundle = issue_bundle(n1, join_request(n2, "n2"), now=NOW)
    with local.open_store(n1) as s1:  # n1 learns n2's credentials (the mesh brings them)
        s1.register_key(registry_entry(bundle.node))
        s1.register_key(registry_entry(bundle.operator))
        assert len(s1.apply_remote(changes).applied) == 1
        assert s1.get("Pod", "web") is not None


class FakeDaemon:
    """What the handlers use of a daemon: its store, state directory, refusals and wake."""

    def __init__(self, store: Store, state_dir: Path) -> None:
        from edgenode.daemon import NodeState

        self.store = store
        self.state_dir = state_dir
        self.state = NodeState()

    def wake(self) -> None:
        pass


def test_the_daemons_user_verbs_on_a_cluster_node_are_authored_by_its_operator(
    tmp_path: Path,
) -> None:
    from edgenode.handlers import Handlers

    init_cluster(tmp_path, "n1", now=NOW)
    store = local.open_store(tmp_path)
    api = Handlers(FakeDaemon(store, tmp_path))  # type: ignore[arg-type]

    def call(verb: str, **args: Any) -> Any:
        return asyncio.run(api.dispatch(verb, args))

    call("apply", files=[{"name": "pod.yaml", "text": POD}])
    call("set", ref="pod/web", assignments=["spec.containers.web.image=busybox:2"])
    call("rollback", ref="pod/web", revision=1)
    call("delete", ref="pod/web")
    authors = [(r.author, r.manager) for r in store.history("Pod", "web")]
    store.close()
    assert authors == [("admin-n1", "user")] * 4


def test_a_node_credential_that_expired_stops_the_store_opening_and_says_how_to_renew(
    tmp_path: Path,
) -> None:
    init_cluster(tmp_path, "n1", now=NOW, days=1)
    with pytest.raises(local.StateDirError) as info:
        local.open_store(tmp_path, now=NOW + 2 * DAY)
    message = str(info.value)
    assert str(tmp_path / "cluster" / "node.cred") in message and "expired" in message
    assert "edgenode join request" in message and "Nothing was changed" in message
    assert not (tmp_path / "store").exists()


def test_a_credential_for_another_key_or_another_name_is_refused(tmp_path: Path) -> None:
    init_cluster(tmp_path, "n1", now=NOW)
    with pytest.raises(local.StateDirError, match=r"node.cred is for node 'n1', expected"):
        local.open_store(tmp_path, "n9", now=NOW)
    other = Ed25519PrivateKey.generate()
    (tmp_path / "node.key").write_bytes(
        other.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    )
    with pytest.raises(local.StateDirError, match=r"node.cred: it is for key .* expected the key"):
        local.open_store(tmp_path, now=NOW)


def test_a_missing_or_foreign_operator_credential_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    init_cluster(tmp_path, "n1", now=NOW)
    init_cluster(tmp_path / "other", "n1", now=NOW)
    foreign = (tmp_path / "other" / "cluster" / "operator.cred").read_bytes()
    (tmp_path / "cluster" / "operator.cred").write_bytes(foreign)
    with pytest.raises(local.StateDirError, match=r"operator.cred: credential of admin-n1 belongs"):
        local.open_store(tmp_path, now=NOW)
    (tmp_path / "cluster" / "operator.cred").unlink()
    with pytest.raises(local.StateDirError, match=r"operator.cred does not exist"):
        local.user_author(tmp_path, now=NOW)
