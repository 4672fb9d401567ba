"""A cluster on disk: made once, root-only keys, credentials issued by its root, and one-time
join tokens spent by their first use."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gossip._credentials import Credential, check
from gossip.identity import (
    IdentityError,
    JoinRequest,
    create_join_token,
    init_cluster,
    issue,
    issue_bundle,
    join,
    join_request,
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


# -- the local operator, join requests and bundles --------------------------------------------


def test_init_makes_an_operator_credential_for_the_nodes_administrator(tmp_path: Path) -> None:
    cluster, _ = init_cluster(tmp_path, "n1", now=NOW)
    cdir = tmp_path / "cluster"
    assert mode(cdir / "operator.key") == 0o600 and mode(cdir / "operator.cred") == 0o644
    key = Ed25519PrivateKey.from_private_bytes((cdir / "operator.key").read_bytes())
    cred = Credential.decode((cdir / "operator.cred").read_bytes())
    assert (cred.subject, cred.role, cred.public_key) == ("admin-n1", "operator", public_bytes(key))
    assert check(cred, root_public=cluster.root_public, now=NOW) is None
    assert registry_entry(cred).managers == ("user",)


def test_init_with_a_name_that_is_no_dns_label_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match=r"expected a DNS label .* got 'Edge_1'"):
        init_cluster(tmp_path / "s", "Edge_1", now=NOW)
    with pytest.raises(IdentityError, match="the local operator's name"):
        init_cluster(tmp_path / "s", "n1", now=NOW, operator="admin-" + "x" * 60)
    assert not (tmp_path / "s").exists()


def test_a_join_request_is_one_line_of_public_values_that_parses_back(tmp_path: Path) -> None:
    request = join_request(tmp_path, "n2")
    line = request.encode()
    assert line.startswith("edgenode-join-request:n2:") and "\n" not in line
    assert JoinRequest.parse(line + "\n") == request
    assert request.operator == "admin-n2" and request.node_public != request.operator_public
    assert join_request(tmp_path, "n2") == request  # the keys are made once


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("edgenode-join:abc:def", "expected edgenode-join-request:NODE:KEY:OPERATOR:KEY"),
        (f"edgenode-join-request:n2:{'ab' * 31}:admin-n2:{'cd' * 32}", "the node's key"),
        (f"edgenode-join-request:N2:{'ab' * 32}:admin-n2:{'cd' * 32}", "expected a DNS label"),
        (f"edgenode-join-request:n2:{'ab' * 32}:admin-n2:{'ab' * 32}", "names and keys of"),
    ],
)
def test_a_malformed_join_request_is_refused(line: str, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason):
        JoinRequest.parse(line)


# -- the join flow on the command line ----------------------------------------------------------

DAY = 86_400
WALL = int(time.time()) - DAY
"""The CLI checks bundles on the wall clock: bundles made here are issued a day before."""


def cli_run(*args: str | Path) -> Result:
    from edgenode.clusterverbs import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def files(state_dir: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(state_dir.rglob("*")) if p.is_file()}


def test_a_node_joins_with_a_bundle_from_the_root_holder_and_may_renew_it(
    tmp_path: Path,
) -> None:
    n1, n2 = tmp_path / "n1", tmp_path / "n2"
    assert cli_run("init", "--state-dir", n1, "--name", "n1").exit_code == 0
    asked = cli_run("join", "request", "--state-dir", n2, "--name", "n2")
    assert asked.exit_code == 0, asked.output
    line = asked.stdout.splitlines()[0]
    bundle_file = tmp_path / "n2.bundle"
    issued = cli_run("credential", "issue", line, "--state-dir", n1, "-o", bundle_file)
    assert issued.exit_code == 0, issued.output
    assert mode(bundle_file) == 0o644 and b"operator.key" not in bundle_file.read_bytes()
    joined = cli_run("join", bundle_file, "--state-dir", n2, "--name", "n2")
    assert joined.exit_code == 0, joined.output
    cluster = load_cluster(n1)
    assert f"node n2 joined cluster {cluster.id}" in joined.output
    assert load_cluster(n2) == cluster
    node_cred = Credential.decode((n2 / "cluster" / "node.cred").read_bytes())
    assert (node_cred.subject, node_cred.role) == ("n2", "node")
    # Renewal: the same request, a new bundle as a base64 line on stdout.
    renewed = cli_run("credential", "issue", line, "--state-dir", n1, "--days", "30")
    text = renewed.stdout.strip()
    assert renewed.exit_code == 0 and text.startswith("edgenode-bundle:")
    again = cli_run("join", text, "--state-dir", n2, "--name", "n2")
    assert again.exit_code == 0, again.output
    renewed_cred = Credential.decode((n2 / "cluster" / "node.cred").read_bytes())
    assert renewed_cred.not_after < node_cred.not_after


def joined_pair(tmp_path: Path) -> tuple[Path, Path, JoinRequest]:
    n1, n2 = tmp_path / "n1", tmp_path / "n2"
    init_cluster(n1, "n1", now=WALL)
    request = join_request(n2, "n2")
    join(n2, issue_bundle(n1, request, now=WALL), "n2", now=WALL)
    return n1, n2, request


def refused_join(tmp_path: Path, n2: Path, bundle: bytes, reason: str) -> None:
    path = tmp_path / "refused.bundle"
    path.write_bytes(bundle)
    before = files(n2)
    done = cli_run("join", path, "--state-dir", n2, "--name", "n2")
    assert done.exit_code == 2, done.output
    assert reason in done.output and "nothing was written" in done.output
    assert files(n2) == before


def test_a_bundle_of_another_cluster_is_refused_by_a_member(tmp_path: Path) -> None:
    _, n2, request = joined_pair(tmp_path)
    other = tmp_path / "other"
    init_cluster(other, "m1", now=WALL)
    foreign = issue_bundle(other, request, now=WALL)
    refused_join(tmp_path, n2, foreign.encode(), "this node already belongs to cluster")


def test_a_bundle_whose_credential_was_altered_is_refused(tmp_path: Path) -> None:
    n1, n2, request = joined_pair(tmp_path)
    good = issue_bundle(n1, request, now=WALL)
    longer = dataclasses.replace(good.node, not_after=good.node.not_after + 3650 * DAY)
    tampered = dataclasses.replace(good, node=longer)
    refused_join(tmp_path, n2, tampered.encode(), "the trust root's signature does not verify")
    refused_join(tmp_path, n2, good.encode()[:-5], "expected what `edgenode credential issue`")


def test_an_expired_bundle_is_refused(tmp_path: Path) -> None:
    n1, n2, request = joined_pair(tmp_path)
    old = issue_bundle(n1, request, now=WALL - 40 * DAY, days=30)
    refused_join(tmp_path, n2, old.encode(), "expired at")


def test_a_bundle_for_another_nodes_key_is_refused(tmp_path: Path) -> None:
    n1, n2, request = joined_pair(tmp_path)
    someone = dataclasses.replace(request, node_public=public_bytes(Ed25519PrivateKey.generate()))
    wrong = issue_bundle(n1, someone, now=WALL)
    refused_join(tmp_path, n2, wrong.encode(), "answers another node's request")
    fresh = tmp_path / "fresh"
    renamed = dataclasses.replace(join_request(fresh, "n3"), node="n2")
    with pytest.raises(IdentityError, match="the node credential is for 'n2', this node is named"):
        join(fresh, issue_bundle(n1, renamed, now=WALL), "n3", now=WALL)
    assert not (fresh / "cluster" / "cluster.json").exists()


def test_credential_issue_makes_an_operator_credential_or_refuses_ambiguous_input(
    tmp_path: Path,
) -> None:
    cluster, _ = init_cluster(tmp_path, "n1", now=WALL)
    bob = public_bytes(Ed25519PrivateKey.generate())
    operator = ("--operator", "bob", "--public-key", bob.hex())
    done = cli_run("credential", "issue", *operator, "--state-dir", tmp_path)
    assert done.exit_code == 0, done.output
    cred = Credential.decode(base64.b64decode(done.stdout.strip()))
    assert (cred.subject, cred.role, cred.public_key) == ("bob", "operator", bob)
    assert check(cred, root_public=cluster.root_public, now=int(time.time())) is None
    neither = cli_run("credential", "issue", "--state-dir", tmp_path)
    assert neither.exit_code == 2 and "expected a join REQUEST, or --operator" in neither.output
    no_root = cli_run("credential", "issue", *operator, "--state-dir", tmp_path / "elsewhere")
    assert no_root.exit_code == 2 and "belongs to no cluster yet" in no_root.output
