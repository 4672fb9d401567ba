"""IPv4 egress as data: the nftables ruleset that masquerades pods' IPv4 at their node.

Theory of operation. Pods' IPv4 addresses (`_addressing.POD_IPV4`) are node-local: a packet
from one leaving the node on any interface but a pod link gets the address of that interface
as its source (masquerade), and conntrack maps the answers back. Pod-to-pod IPv4 on one node
and everything IPv6 pass unchanged. The rules live in one table the node owns,
``table ip edgenode``, replaced whole in one transaction (`ruleset`), so applying it again
changes nothing and nobody else's rules are touched. It is kept when the daemon stops: the
pods outlive their daemon, and so does their egress.
"""

from __future__ import annotations

from edgenode.network._addressing import LINK_PREFIX, POD_IPV4

TABLE = "edgenode"


def ruleset() -> str:
    """The nft script that (re)makes ``table ip edgenode``: create it if missing (so the
    delete cannot fail), delete it, make it anew."""
    return (
        f"table ip {TABLE} {{}}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f'        ip saddr {POD_IPV4} oifname != "{LINK_PREFIX}*" masquerade\n'
        "    }\n"
        "}\n"
    )
