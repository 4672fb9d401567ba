"""A tiny root filesystem built from the node's own busybox-static: no network, no registry.

The demo and the tests need an image that exists on every node. Debian's ``busybox-static``
is one static binary; `build_rootfs` copies it into an empty tree, links every applet it
offers to it, and creates the directories a runtime mounts over (/tmp world-writable with the
sticky bit, since runc gives a tmpfs the mode of the directory it covers). The files belong to
the node's root, so inside a pod's user namespace they are unmapped and read-only, which is
what an image should be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "etc", "mnt", "run", "var", "root", "home")


class BusyboxMissingError(RuntimeError):
    pass


def find_busybox() -> str:
    for p in BUSYBOX_PATHS:
        if os.access(p, os.X_OK) and _is_static(p):
            return p
    raise BusyboxMissingError(
        "no static busybox on this node (looked at " + ", ".join(BUSYBOX_PATHS) + "); "
        "install it with `apt-get install busybox-static`"
    )


def _is_static(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    # A dynamically linked ELF names its interpreter; a static one has no PT_INTERP string.
    return (
        head.startswith(b"\x7fELF") and b"/lib64/ld-linux" not in head and b"/lib/ld-" not in head
    )


def build_rootfs(dest: Path, busybox: str | None = None) -> Path:
    """A busybox root filesystem at `dest` (made anew; `dest` must not exist)."""
    source = busybox or find_busybox()
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "bin").mkdir(parents=True)
    shutil.copy2(source, tmp / "bin" / "busybox")
    applets = subprocess.run(
        [source, "--list"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            os.symlink("busybox", tmp / "bin" / applet)
    for d in MOUNT_POINTS:
        (tmp / d).mkdir(exist_ok=True)
    os.chmod(tmp / "tmp", 0o1777)
    (tmp / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n"
    )
    (tmp / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    tmp.rename(dest)
    return dest
