"""OCI bundles with secure defaults, runtime drivers (runc, crun, runsc) and offline images.

The sandbox lands in a later milestone; this package holds its place in the layout.
"""
