"""A tiny root filesystem built from the node's own busybox-static: no network, no registry.

The demo and the tests need an image that exists on every node. Debian's ``busybox-static``
is one static binary; `build_rootfs` copies it into an empty tree, links every applet it
offers to it, and creates the directories a runtime mounts over (/tmp world-writable with the
sticky bit, since runc gives a tmpfs the mode of the directory it covers). The files belong to
the node's root, so inside a pod's user namespace they are unmapped and read-only, which is
what an image should be.

`build_image` packs that tree into an OCI image and adds it to an `ImageStore`, so pods can
name ``busybox`` like any other image. The image is reproducible: one layer whose entries are
sorted, owned by 0:0, stamped with the busybox binary's mtime and normalised modes (0755 for
directories and executables, 0644 for other files, /tmp 1777), gzip with no timestamp, and
JSON with sorted keys. Built twice on one machine it has the same digest, so `ensure_busybox`
and every node with the same busybox package agree on it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sandbox._image import ImageNotFoundError
from sandbox.images import OCI_MANIFEST, Image, ImageStore

BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "etc", "mnt", "run", "var", "root", "home")
IMAGE_NAME = "busybox:latest"
IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
#: platform.machine() → the OCI (Go) architecture name.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


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


def build_image(store: ImageStore, name: str = IMAGE_NAME, busybox: str | None = None) -> Image:
    """Build the busybox image (``Cmd ["/bin/sh"]``) from this node's busybox and add it."""
    source = busybox or find_busybox()
    with tempfile.TemporaryDirectory(prefix="edgenode-busybox-") as tmp:
        rootfs = build_rootfs(Path(tmp) / "rootfs", source)
        layout = Path(tmp) / "layout"
        write_oci_layout(rootfs, layout, ref="busybox", source=source)
        return store.import_file(f"{layout}:busybox", name=name)


def ensure_busybox(store: ImageStore, name: str = IMAGE_NAME) -> Image:
    """The busybox image under `name`, built only if the store has no image by that name."""
    try:
        return store.inspect(name)
    except ImageNotFoundError:
        return build_image(store, name)


def write_oci_layout(rootfs: Path, layout: Path, *, ref: str, source: str) -> str:
    """Write `rootfs` as a one-layer OCI image layout at `layout`; return the manifest digest.

    `source` is the busybox binary: its mtime dates the image and its files."""
    stamp = int(os.stat(source).st_mtime)
    created = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tar = _layer_tar(rootfs, stamp)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = {
        "created": created,
        "architecture": GOARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": list(IMAGE_ENV), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
        "history": [{"created": created, "created_by": f"edgenode busybox image from {source}"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(_json(config))},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)}],
    }
    described = put(_json(manifest))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **described,
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(_json(index))
    return str(described["digest"])


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _layer_tar(rootfs: Path, mtime: int) -> bytes:
    """`rootfs` as a tar whose bytes depend only on the tree's names, contents and kinds."""
    paths = sorted(
        os.path.relpath(os.path.join(d, n), rootfs)
        for d, dirs, files in os.walk(rootfs)
        for n in dirs + files
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            full = rootfs / rel
            st = os.lstat(full)
            info = tarfile.TarInfo(rel)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if stat.S_ISLNK(st.st_mode):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                tar.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if st.st_mode & stat.S_ISVTX else 0o755
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                raise ValueError(f"{full}: only directories, files and symlinks go in the image")
    return out.getvalue()
