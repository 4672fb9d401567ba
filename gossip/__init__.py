"""Membership, failure detection, desired-state anti-entropy, discovery and the QUIC transport.

Pure cores (``_*.py``: no I/O, no clock, no asyncio; time is passed in) and the shells that
run them:

- Identity: `_credentials` (trust root, cluster id, ULA prefix, signed node and operator
  credentials) and `identity` (the cluster's files on disk, join requests and bundles, tokens).
- Membership: `_membership` (SWIM with suspicion, incarnations and Lifeguard health), with its
  config, events, suspicion and wire format in the other ``_membership_*`` modules.
- Dissemination: `_dissemination` (push for latency, push-pull of version vectors for
  completeness) and `_dissemination_wire`; `logs` holds the change logs behind its `Log` seam
  and the credential book.
- Discovery: `_discovery` (seed and neighbour bookkeeping, mDNS records) and `discovery` (mDNS,
  IPv6 neighbour discovery and seeds on the event loop).
- Transport: `_frames` (frames, channels, the authentication handshake), `quicconn` (one QUIC
  connection) and `transport` (the node's endpoint: listen, dial, authenticate, send).
- Simulation: `sim`, a seeded in-process network with virtual time that drives the real cores
  at 1000+ nodes.
"""
