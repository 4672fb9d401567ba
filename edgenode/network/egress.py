"""IPv4 egress for pods: the node's masquerade rules (`edgenode.network._egress`), applied with
``nft -f -``. pyroute2 speaks netlink for links, addresses and routes but has no usable
nftables API, so the node runs the nftables tool for this one transaction at start."""

from __future__ import annotations

import shutil
import subprocess

from edgenode.network._egress import ruleset


class EgressError(RuntimeError):
    """The masquerade rules could not be applied; pods have no IPv4 egress."""


def apply() -> None:
    """Replace ``table ip edgenode`` with the masquerade rules (idempotent)."""
    nft = shutil.which("nft")
    if nft is None:
        raise EgressError(
            "nft (nftables) is not installed: pods have no IPv4 egress; install it "
            "(apt-get install nftables) and restart the daemon"
        )
    out = subprocess.run(
        [nft, "-f", "-"], input=ruleset(), capture_output=True, text=True, timeout=30, check=False
    )
    if out.returncode != 0:
        raise EgressError(
            f"nft refused the masquerade rules ({out.stderr.strip()}): pods have no IPv4 "
            "egress; nothing of table ip edgenode was changed"
        )
