"""Membership, failure detection, desired-state anti-entropy, discovery and the QUIC transport.

The mesh lands in a later milestone; this package holds its place in the layout.
"""
