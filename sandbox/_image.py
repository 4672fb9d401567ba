"""What the sandbox needs of an image: its unpacked root filesystem and its run defaults.

The image store (`sandbox.images`) resolves a reference to a `ResolvedImage`; the pod runner
(`sandbox.pods`) builds containers from it, with the command line (`process_args`) and user
(`process_user`) the spec and the image give together. Kept apart so either side can be
tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sandbox._oci import DEFAULT_GID, DEFAULT_UID
from sandbox._spec import ContainerDef

INIT_PATH = "/.edgenode/init"
"""Where the image store puts a small static init (tini) in every unpacked root filesystem.
The sandbox runs a container's command under it when present, so pid 1 forwards SIGTERM to
the command (a bare process as pid 1 ignores signals it does not handle, and every stop
would wait out the grace period) and reaps orphaned processes."""


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The run defaults an image declares (its OCI image config)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    user: str = ""
    """As the image says it: ``""``, ``"1000"``, ``"1000:1000"`` or a name."""


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    reference: str
    """The reference as asked (``busybox``, ``busybox:1.36``, ``sha256:...``)."""
    digest: str
    """``sha256:<hex>`` of the image manifest: what a pod's status records."""
    rootfs: str
    """Path of the unpacked root filesystem, shared read-only by every container of it."""
    config: ImageConfig


class ImageNotFoundError(LookupError):
    """No image matches the reference; the message says how to import or pull one."""


class ImageResolver(Protocol):
    def resolve(self, reference: str) -> ResolvedImage: ...


def process_args(c: ContainerDef, image: ResolvedImage) -> list[str]:
    """The command line, as Kubernetes combines them: `command` replaces the image's entrypoint
    (and drops its cmd), `args` replaces the image's cmd."""
    if c.command is not None:
        return [*c.command, *(c.args or ())]
    return [*image.config.entrypoint, *(c.args if c.args is not None else image.config.cmd)]


def process_user(c: ContainerDef, image: ResolvedImage) -> tuple[int, int]:
    """The spec's user; else the image's if numeric and not root; else 1000:1000. An image
    that asks for root does not get it without the spec's run-as-root."""
    if c.user is not None:
        return c.user
    uid_s, _, gid_s = image.config.user.partition(":")
    if uid_s.isdigit() and int(uid_s) != 0:
        uid = int(uid_s)
        gid = int(gid_s) if gid_s.isdigit() and int(gid_s) != 0 else uid
        return uid, gid
    return DEFAULT_UID, DEFAULT_GID
