"""OCI bundles with secure defaults, runtime drivers (runc, crun, runsc) and offline images.

Pure cores: `_oci` (the runtime config), `_relax` (relaxations and their acknowledgements),
`_ids` (user-namespace id ranges). Shell: `runtimes` (which OCI runtimes this node has),
`busybox` (the local image for demos and tests).
"""
