"""Pod networking: an IPv6 address per pod, routed on the LAN without overlays; IPv4 egress.

Pure cores: `_addressing` (the cluster's /48, nodes' /64s and their collisions, pods'
addresses, link names), `_leases` (which pod has which address), `_routes` (which peer's /64
goes where), `_egress` (the masquerade ruleset). Shells: `leases` (the persisted table),
`podlinks` (a pod's veth, addresses and routes, with netlink), `peerroutes` (this node's
advertised addresses, routes to peers' /64s), `egress` (``nft -f -``), `node` (the node's /64
claim, its pods' links and its routes, for the daemon). See docs/network.md.
"""
