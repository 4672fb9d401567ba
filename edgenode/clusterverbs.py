"""The cluster identity verbs: `init`, `token`, `join` and `credential`.

They work on a node's state directory directly, without its daemon: `init` makes a cluster
with this node as its first member; `join request` prints what the cluster's root holder needs
to admit this node, `credential issue` there writes the join bundle, and `join BUNDLE` installs
it here; `token create` makes a one-time join token redeemed over the mesh. The work is
`gossip.identity`'s, imported when a verb runs; these verbs parse their input, report, and
turn a refusal into exit code 2. Each is mounted into `edgenode.cli`'s group by its name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from edgenode import local
from edgenode._protocol import EXIT_INVALID
from edgenode.offline import state_dir_option


@click.group()
def cli() -> None:
    """The cluster identity verbs (mounted into `edgenode.cli`'s group one by one)."""


def _identity_failed(verb: str, exc: Exception) -> NoReturn:
    click.echo(f"edgenode {verb}: {exc}", err=True)
    raise SystemExit(EXIT_INVALID)


def _now() -> int:
    import time  # noqa: PLC0415

    return int(time.time())


def _day(unix: int) -> str:
    import datetime  # noqa: PLC0415

    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%d")


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path`, mode 0644 (what is written here is public)."""
    import os  # noqa: PLC0415

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, data)
    finally:
        os.close(fd)


_name_option = click.option(
    "--name", default=None, help="This node's name (default: the host name)."
)
_operator_option = click.option(
    "--operator",
    default=None,
    metavar="NAME",
    help="The name of this node's local administrator as an operator (default: admin-NAME).",
)


@cli.command("init")
@state_dir_option
@_name_option
@_operator_option
@click.option("--days", type=int, default=365, show_default=True, help="Credential lifetime.")
def init(*, state_dir: Path, name: str | None, operator: str | None, days: int) -> None:
    """Create a cluster with this node as its first member: its trust root, its id and IPv6
    ULA prefix, this node's credential, and an operator credential for this node's root
    user (the local API is root-only: its user acts as `user`)."""
    from gossip.identity import IdentityError, init_cluster, local_identity  # noqa: PLC0415

    node = name or local.default_node_name()
    try:
        cluster, cred = init_cluster(state_dir, node, now=_now(), days=days, operator=operator)
        mine = local_identity(state_dir, node, now=_now())
    except IdentityError as exc:
        _identity_failed("init", exc)
    assert mine is not None
    cdir = state_dir / "cluster"
    click.echo(f"cluster {cluster.id} created; its IPv6 ULA prefix is {cluster.ula}")
    click.echo(f"node {cred.subject} is its first member (credential valid {days} days)")
    click.echo(
        f"operator {mine.operator.subject} ({cdir / 'operator.key'}, root only) is this node's "
        "administrator: edits made here are signed with its key"
    )
    click.echo(
        f"the trust root's key is {cdir / 'root.key'} (root only): whoever holds it can admit "
        "nodes. Admit one with `edgenode join request` there, `edgenode credential issue` here."
    )


@cli.group()
def token() -> None:
    """One-time join tokens for new nodes (redeemed over the mesh; see docs/cluster.md)."""


@token.command("create")
@state_dir_option
@click.option("--ttl", type=int, default=3600, show_default=True, help="Seconds it is valid.")
def token_create(*, state_dir: Path, ttl: int) -> None:
    """Print a one-time join token (shown once; only its digest is kept). A token is spent
    by a new node over the mesh; to admit a node without a network, use `edgenode join
    request` and `edgenode credential issue`."""
    from gossip.identity import IdentityError, create_join_token  # noqa: PLC0415

    try:
        click.echo(create_join_token(state_dir, now=_now(), ttl_s=ttl))
    except IdentityError as exc:
        _identity_failed("token", exc)


class _JoinGroup(click.Group):
    """`join request` runs the subcommand; `join BUNDLE` (anything else) runs `join bundle`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        helping = set(args) <= {*ctx.help_option_names, "-h", "--help"}
        if not helping and not any(a in self.commands for a in args):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_JoinGroup, subcommand_metavar="BUNDLE | request")
def join() -> None:
    """Join a cluster without a network, in three steps:

    \b
      1. here:           edgenode join request            (prints one line)
      2. on a node holding the trust root:
                         edgenode credential issue LINE -o join.bundle
      3. here:           edgenode join join.bundle

    `edgenode join BUNDLE` takes --state-dir and --name (this node's name, default the host
    name) as `join request` does; BUNDLE is a file, - (standard input) or the
    edgenode-bundle: line. The bundle holds the cluster's description and credentials for
    this node and its local operator; it holds no secret. Joining the same cluster again
    renews the credentials; then restart the node's daemon.

    \b
    Exit codes:
      0  joined (or the request printed)
      2  refused (another cluster's, altered, expired, or another node's bundle); nothing
         was written
    """


@join.command("request")
@state_dir_option
@_name_option
@_operator_option
def join_request_(*, state_dir: Path, name: str | None, operator: str | None) -> None:
    """Print this node's join request (its name and public keys; made if missing)."""
    from gossip.identity import IdentityError, join_request  # noqa: PLC0415

    node = name or local.default_node_name()
    try:
        request = join_request(state_dir, node, operator=operator)
    except (IdentityError, OSError) as exc:
        _identity_failed("join request", exc)
    click.echo(request.encode())
    click.echo(
        "give this line to an operator of the cluster: `edgenode credential issue LINE -o "
        "FILE` on a node holding its trust root; then `edgenode join FILE` here",
        err=True,
    )


@join.command("bundle", hidden=True)
@click.argument("bundle", metavar="BUNDLE")
@state_dir_option
@click.option("--name", default=None, help="This node's name (default: the host name).")
def join_bundle(*, bundle: str, state_dir: Path, name: str | None) -> None:
    """Install BUNDLE (a file, - for standard input, or the edgenode-bundle: line)."""
    from gossip.identity import Bundle, IdentityError, join  # noqa: PLC0415

    node = name or local.default_node_name()
    try:
        if bundle == "-":
            data = sys.stdin.buffer.read()
        elif bundle.startswith("edgenode-bundle:"):
            data = bundle.encode()
        else:
            data = Path(bundle).read_bytes()
        parsed = Bundle.decode(data)
        join(state_dir, parsed, node, now=_now())
    except (IdentityError, OSError) as exc:
        _identity_failed("join", exc)
    until = _day(min(parsed.node.not_after, parsed.operator.not_after))
    click.echo(f"node {node} joined cluster {parsed.cluster.id} (ULA {parsed.cluster.ula})")
    click.echo(
        f"operator {parsed.operator.subject} is this node's administrator; credentials valid "
        f"until {until}. Restart the node's daemon to use them."
    )


@cli.group()
def credential() -> None:
    """Credentials signed by the cluster's trust root (on a node holding cluster/root.key)."""


@credential.command("issue")
@click.argument("request", metavar="REQUEST", required=False)
@click.option(
    "--operator", default=None, metavar="NAME", help="Issue an operator credential for NAME."
)
@click.option("--public-key", default=None, metavar="HEX", help="The operator's Ed25519 key.")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="How long the credentials are valid.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (mode 0644; it holds no secret) instead of a base64 line on stdout.",
)
@state_dir_option
def credential_issue(
    *,
    request: str | None,
    operator: str | None,
    public_key: str | None,
    days: int,
    output: Path | None,
    state_dir: Path,
) -> None:
    """Admit a node: check its REQUEST (the line `edgenode join request` printed, or a file
    holding it) and write its join bundle. With --operator NAME --public-key HEX instead:
    an operator credential for NAME's key, to act as `user` in the cluster.

    \b
    Exit codes:
      0  issued
      2  refused (a malformed request, no trust root here); nothing was issued
    """
    import base64  # noqa: PLC0415

    from gossip.identity import (  # noqa: PLC0415
        REQUEST_PREFIX,
        IdentityError,
        JoinRequest,
        issue,
        issue_bundle,
        parse_public_key,
    )

    try:
        if (request is None) == (operator is None) or (operator is None) != (public_key is None):
            raise IdentityError(
                "expected a join REQUEST, or --operator NAME with --public-key HEX; nothing "
                "was issued"
            )
        if request is not None:
            if not request.startswith(REQUEST_PREFIX) and Path(request).is_file():
                request = Path(request).read_text()
            wanted = JoinRequest.parse(request)
            bundle = issue_bundle(state_dir, wanted, now=_now(), days=days)
            data, line = bundle.encode(), bundle.text()
            what = (
                f"join bundle for node {wanted.node} and operator {wanted.operator} of cluster "
                f"{bundle.cluster.id}"
            )
        else:
            assert operator is not None and public_key is not None
            key = parse_public_key(public_key, "--public-key")
            cred = issue(state_dir, operator, "operator", key, now=_now(), days=days)
            data, line = cred.encode(), base64.b64encode(cred.encode()).decode()
            what = f"operator credential for {operator} of cluster {cred.cluster}"
    except (IdentityError, OSError, ValueError) as exc:
        _identity_failed("credential issue", exc)
    if output is None:
        click.echo(line)
    else:
        try:
            _write_file(output, data)
        except OSError as exc:
            _identity_failed("credential issue", exc)
    click.echo(f"issued the {what}, valid {days} days", err=True)
