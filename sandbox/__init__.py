"""OCI bundles with secure defaults, runtime drivers (runc, crun, runsc) and offline images.

Pure cores: `_oci` (the runtime config), `_relax` (relaxations and their acknowledgements),
`_ids` (user-namespace id ranges), `_lifecycle` (a container's state table and restart
policy), `_update` (what an in-place update restarts), `_spec` (what a node is asked to run),
`_classes` (how each runtime class is invoked and what it cannot honour), `_imageref` (image
names and OCI documents), `_apparmor` (the containers' profile), `_image` (what a pod needs
of an image). Shells: `pods` (the pods of a node), `containers` (a container's runs and
its record), `monitor` (builds `monitor.c`, the small C process that watches each run),
`images` and `imagesources` (the content-addressed image store and its inputs), `logs`,
`idtable`, `runtimes`, `host`, `busybox`.

The public names below are imported on first use, so importing one module of the package
does not load them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox._spec import ContainerDef, PodDef
    from sandbox.containers import ContainerState
    from sandbox.host import Feature, features
    from sandbox.images import Image, ImageStore
    from sandbox.logs import LogLine
    from sandbox.pods import (
        PodNotFoundError,
        PodState,
        Sandbox,
        SandboxError,
        UpdateResult,
    )
    from sandbox.runtimes import Runtime, RuntimeUnavailableError, detect

_EXPORTS = {
    "ContainerDef": "sandbox._spec",
    "PodDef": "sandbox._spec",
    "Feature": "sandbox.host",
    "features": "sandbox.host",
    "Image": "sandbox.images",
    "ImageStore": "sandbox.images",
    "LogLine": "sandbox.logs",
    "ContainerState": "sandbox.containers",
    "PodNotFoundError": "sandbox.pods",
    "PodState": "sandbox.pods",
    "Sandbox": "sandbox.pods",
    "SandboxError": "sandbox.pods",
    "UpdateResult": "sandbox.pods",
    "Runtime": "sandbox.runtimes",
    "RuntimeUnavailableError": "sandbox.runtimes",
    "detect": "sandbox.runtimes",
}

__all__ = [
    "ContainerDef",
    "ContainerState",
    "Feature",
    "Image",
    "ImageStore",
    "LogLine",
    "PodDef",
    "PodNotFoundError",
    "PodState",
    "Runtime",
    "RuntimeUnavailableError",
    "Sandbox",
    "SandboxError",
    "UpdateResult",
    "detect",
    "features",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
