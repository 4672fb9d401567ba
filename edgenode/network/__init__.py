"""Pod networking: an IPv6 address per pod, routed on the LAN without overlays; IPv4 egress.

Pure cores: `_addressing` (the cluster's /48, nodes' /64s and their collisions, pods'
addresses, link names), `_leases` (which pod has which address). Shells: `leases` (the
persisted table), `podlinks` (a pod's veth, addresses and routes, with netlink), `node` (the
node's /64 claim and its pods' links, for the daemon). See docs/network.md.
"""
