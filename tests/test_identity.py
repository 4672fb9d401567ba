"""A cluster on disk: made once, root-only keys, credentials issued by its root, and one-time
join tokens spent by their first use."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gossip._credentials import check
from gossip.identity import (
    IdentityError,
    create_join_token,
    init_cluster,
    issue,
    load_cluster,
    public_bytes,
    redeem,
    registry_entry,
)

NOW = 1_800_000_000


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_cluster_whose_first_node_holds_a_credential(tmp_path: Path) -> None:
    cluster, cred = init_cluster(tmp_path, "n1", now=NOW)
    cdir = tmp_path / "cluster"
    assert mode(cdir / "root.key") == 0o600 and mode(tmp_path / "node.key") == 0o600
    assert mode(cdir) == 0o700
    assert json.loads((cdir / "cluster.json").read_text())["id"] == cluster.id
    assert load_cluster(tmp_path) == cluster and cluster.ula.endswith("::/48")
    node_key = Ed25519PrivateKey.from_private_bytes((tmp_path / "node.key").read_bytes())
    assert cred.public_key == public_bytes(node_key) and cred.subject == "n1"
    assert check(cred, root_public=cluster.root_public, now=NOW + 10) is None
    entry = registry_entry(cred)
    assert (entry.key_id, entry.managers) == ("n1", ("node:n1", "placement"))


def test_init_keeps_the_nodes_existing_signing_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()

    (tmp_path / "node.key").write_bytes(
        key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    )
    _, cred = init_cluster(tmp_path, "n1", now=NOW)
    assert cred.public_key == public_bytes(key)


def test_a_second_init_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    cluster, _ = init_cluster(tmp_path, "n1", now=NOW)
    before = (tmp_path / "cluster" / "root.key").read_bytes()
    with pytest.raises(IdentityError, match=f"already holds a cluster \\({cluster.id}\\)"):
        init_cluster(tmp_path, "n1", now=NOW)
    assert (tmp_path / "cluster" / "root.key").read_bytes() == before


def test_an_operator_credential_acts_as_user(tmp_path: Path) -> None:
    cluster, _ = init_cluster(tmp_path, "n1", now=NOW)
    alice = public_bytes(Ed25519PrivateKey.generate())
    cred = issue(tmp_path, "alice", "operator", alice, now=NOW, days=30)
    assert check(cred, root_public=cluster.root_public, now=NOW + 29 * 86_400) is None
    assert check(cred, root_public=cluster.root_public, now=NOW + 31 * 86_400) is not None
    assert registry_entry(cred).managers == ("user",)


def test_a_join_token_admits_one_node_once(tmp_path: Path) -> None:
    cluster, _ = init_cluster(tmp_path, "n1", now=NOW)
    token = create_join_token(tmp_path, now=NOW)
    assert token.startswith(f"edgenode-join:{cluster.id}:")
    assert cluster.id in token and "tokens.json" not in token
    stored = (tmp_path / "cluster" / "tokens.json").read_text()
    assert token.rsplit(":", 1)[1] not in stored  # only its digest is kept
    n2 = public_bytes(Ed25519PrivateKey.generate())
    cred = redeem(tmp_path, token, "n2", n2, now=NOW + 60)
    assert cred.subject == "n2" and cred.role == "node"
    assert check(cred, root_public=cluster.root_public, now=NOW + 60) is None
    with pytest.raises(IdentityError, match="unknown or already used"):
        redeem(tmp_path, token, "n3", n2, now=NOW + 61)


def test_expired_foreign_and_malformed_tokens_are_refused(tmp_path: Path) -> None:
    init_cluster(tmp_path, "n1", now=NOW)
    key = public_bytes(Ed25519PrivateKey.generate())
    late = create_join_token(tmp_path, now=NOW, ttl_s=60)
    with pytest.raises(IdentityError, match="expired"):
        redeem(tmp_path, late, "n2", key, now=NOW + 61)
    other = tmp_path / "other"
    init_cluster(other, "m1", now=NOW)
    foreign = create_join_token(other, now=NOW)
    with pytest.raises(IdentityError, match="is for cluster"):
        redeem(tmp_path, foreign, "n2", key, now=NOW)
    with pytest.raises(IdentityError, match="expected edgenode-join:CLUSTER:SECRET"):
        redeem(tmp_path, "hello", "n2", key, now=NOW)


def test_a_node_without_a_cluster_is_told_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="belongs to no cluster yet \\(edgenode init\\)"):
        load_cluster(tmp_path)


def test_edgenode_init_and_token_create_on_the_command_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgenode.cli import cli

    runner = CliRunner()
    done = runner.invoke(cli, ["init", "--state-dir", str(tmp_path), "--name", "n1"])
    assert done.exit_code == 0, done.output
    cluster = load_cluster(tmp_path)
    assert f"cluster {cluster.id} created" in done.output and cluster.ula in done.output
    again = runner.invoke(cli, ["init", "--state-dir", str(tmp_path), "--name", "n1"])
    assert again.exit_code == 2 and "already holds a cluster" in again.output
    made = runner.invoke(cli, ["token", "create", "--state-dir", str(tmp_path)])
    assert made.exit_code == 0 and made.output.startswith(f"edgenode-join:{cluster.id}:")
