"""Membership, failure detection, desired-state anti-entropy, discovery and the QUIC transport.

Landed so far: `_credentials`, the pure core of cluster identity (trust root, cluster id, ULA
prefix, signed node and operator credentials). Membership, dissemination, discovery and the
transport follow.
"""
