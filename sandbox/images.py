"""The node's image store: offline first, content-addressed, one OCI image layout.

Theory of operation
-------------------
A store is a directory, normally ``<state-dir>/images``::

    lock                  flock(2) target: exclusive for every change, shared for reads
    oci/                  ONE OCI image layout holding every image of the node
      oci-layout
      index.json          the names: one descriptor per (manifest, name)
      blobs/sha256/<hex>  manifests, configs and layers, each stored once by digest
    rootfs/<hex>/         a manifest's unpacked root filesystem, made on first use
    tmp/                  staging (mode 0700); each staging dir holds a flock while in use

**Names live in the layout's own index.json**, as the ``org.opencontainers.image.ref.name``
annotation of a manifest descriptor (``busybox:latest``). A manifest with two names has two
descriptors; one whose last name went away while pods still used it keeps a descriptor without
a name (shown as ``<none>``) until it is removed by digest. Keeping names there, rather than in
a file of our own, leaves ``oci/`` a layout that skopeo and umoci read as is
(``skopeo copy oci:<store>/oci:busybox:latest oci-archive:busybox.tar`` exports an image). The
store, not skopeo, writes index.json, always whole: write a temporary file, fsync, rename,
fsync the directory. A reader sees the old index or the new one, never half of one.

**Adding an image** (import or pull) runs ``skopeo copy`` from the source into a fresh layout in
``tmp/``, outside the store lock: a slow pull does not block readers, and a failed or corrupt
copy (skopeo checks every digest) never touches the store. Then, under the exclusive lock, the
staged blobs are fsynced and renamed into ``oci/blobs`` (a blob already there is kept: that is
the deduplication), the new index.json is written, and blobs and root filesystems that no
descriptor reaches any more are collected. An error between those steps collects the blobs it
just moved, so the store is as it was. OCI sources are copied with ``--preserve-digests`` (the
digest on the node is the digest in the archive); docker-archives and registry images are
converted to OCI manifests (``--format oci``), so their digest is the converted manifest's.

**Root filesystems** are unpacked once per manifest digest with ``umoci raw unpack`` into
``tmp/`` and renamed to ``rootfs/<hex>`` when complete, so a directory under ``rootfs/`` is
always whole. Containers run in user namespaces where host ids are unmapped, so they read an
image as "other": ``<root>``, ``rootfs/`` and each ``rootfs/<hex>`` are mode 0755, and every
file is made owned by root (host uid 1000 must not be able to change an image that pods share).
Because any host user can then read the tree, unpacking also drops what would grant privilege
on the host: device nodes are removed, and setuid/setgid bits and file capabilities
(``security.capability``) are cleared. In a user namespace these mean nothing anyway (the
kernel ignores them for files owned by an unmapped id). Images are readable by every host user:
do not bake secrets into them.

The pure rules (names, digest prefixes, the index's contents, what a manifest and config
declare) live in `sandbox._imageref`; reading import formats and running skopeo and umoci in
`sandbox.imagesources`. This module holds the store: locks, staging, the index, collection,
unpacking and resolving.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from sandbox._image import INIT_PATH, ImageConfig, ImageNotFoundError, ResolvedImage
from sandbox._imageref import (
    CONTAINERD_NAME,
    DIGEST_PREFIX_MIN,
    HOW_TO_ADD,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Entry,
    ImageInputError,
    ImageInUseError,
    ImageStoreError,
    ImageToolError,
    RegistryError,
    RegistryUnreachableError,
    find_entry,
    image_config,
    index_document,
    is_digest,
    manifest_blobs,
    manifest_config,
    normalize_name,
    not_found,
    parse_index,
    pull_error,
    registry_reference,
    tool_message,
)
from sandbox.imagesources import (
    ACCEPTED,
    TOOL_TIMEOUT_S,
    copy_source,
    inspect_source,
    run_tool,
    skopeo_copy,
    umoci_unpack,
)

__all__ = [
    "ACCEPTED",
    "CONTAINERD_NAME",
    "DIGEST_PREFIX_MIN",
    "HOW_TO_ADD",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "REF_NAME",
    "TOOL_TIMEOUT_S",
    "Image",
    "ImageConfig",
    "ImageInUseError",
    "ImageInputError",
    "ImageNotFoundError",
    "ImageStore",
    "ImageStoreError",
    "ImageToolError",
    "RegistryError",
    "RegistryUnreachableError",
    "ResolvedImage",
    "normalize_name",
    "registry_reference",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Image:
    names: tuple[str, ...]
    """Every name of this manifest, sorted; empty for an unnamed image that pods still use."""
    digest: str
    """``sha256:<hex>`` of the image manifest."""
    size: int
    """Bytes of its blobs (manifest, config, layers as stored, compressed or not)."""
    created: datetime | None
    """When the image says it was built (its config's ``created``), if it says."""
    config: ImageConfig

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "names": list(self.names),
            "digest": self.digest,
            "size": self.size,
            "created": self.created.isoformat() if self.created else None,
            "config": {
                "entrypoint": list(c.entrypoint),
                "cmd": list(c.cmd),
                "env": dict(c.env),
                "working_dir": c.working_dir,
                "user": c.user,
            },
        }


class ImageStore:
    """Images of one node (see the module docstring); an `ImageResolver` for the pod runner."""

    def __init__(
        self,
        root: Path,
        *,
        in_use: Callable[[str], list[str]] | None = None,
        pull_timeout_s: float = 600.0,
    ) -> None:
        """`in_use(digest)` names the pods that use a manifest digest (removal is refused then).
        `pull_timeout_s` bounds a whole pull (seconds; skopeo's --command-timeout)."""
        self.root = Path(root)
        self._in_use = in_use
        self._pull_timeout_s = pull_timeout_s
        self._oci = self.root / "oci"
        self._blobs = self._oci / "blobs" / "sha256"
        self._rootfs = self.root / "rootfs"
        self._tmp = self.root / "tmp"

    # -- reading ------------------------------------------------------------------------------

    def list(self) -> list[Image]:
        """Every image, by first name; unnamed images (kept for pods) last."""
        with self._lock(exclusive=False) as present:
            if not present:
                return []
            entries = self._read_index()
            images = [self._image_of(e) for e in entries.values()]
        return sorted(images, key=lambda i: (not i.names, i.names, i.digest))

    def inspect(self, reference: str) -> Image:
        """The image `reference` names; `ImageNotFoundError` if none."""
        with self._lock(exclusive=False) as present:
            entries = self._read_index() if present else {}
            return self._image_of(self._find(entries, reference))

    def resolve(self, reference: str) -> ResolvedImage:
        """The image and its unpacked root filesystem (unpacked now if this is its first use)."""
        image = self.inspect(reference)
        rootfs = self._rootfs / image.digest.removeprefix("sha256:")
        if not rootfs.is_dir():
            with self._lock(exclusive=True):
                entries = self._read_index()
                entry = self._find(entries, image.digest)
                if not rootfs.is_dir():
                    self._unpack(entry, rootfs)
        return ResolvedImage(
            reference=reference, digest=image.digest, rootfs=str(rootfs), config=image.config
        )

    # -- changing -----------------------------------------------------------------------------

    def import_file(self, path: Path | str, name: str | None = None) -> Image:
        """Add the image in an OCI archive, OCI layout directory (``DIR[:TAG]``) or docker-archive.

        Its names are `name`, else the names the archive records, else the file's stem."""
        source = inspect_source(str(path))
        try:
            names = (normalize_name(name),) if name is not None else source.names()
        except ImageInputError as exc:
            raise ImageInputError(f"import {path}: {exc}; nothing was imported") from None
        with self._staging("import") as staging:
            copy = copy_source(source, staging)
            if copy.returncode != 0:
                raise ImageInputError(
                    f"import {path}: skopeo could not read it as {source.kind}: "
                    f"{tool_message(copy.stderr)}; nothing was imported"
                )
            return self._publish(staging / "layout", names, what=f"import {path}")

    def pull(self, reference: str) -> Image:
        """Copy `reference` from its registry (``busybox`` is docker.io/library/busybox:latest)."""
        try:
            name = normalize_name(reference)
        except ImageInputError as exc:
            raise ImageInputError(f"pull {reference}: {exc}; nothing was written") from None
        remote = registry_reference(name)
        with self._staging("pull") as staging:
            timeout = max(1, round(self._pull_timeout_s))
            copy = skopeo_copy(
                staging,
                f"docker://{remote}",
                ["--format", "oci"],
                command_timeout_s=timeout,
            )
            if copy.returncode != 0:
                raise pull_error(name, remote, copy.stderr)
            return self._publish(staging / "layout", (name,), what=f"pull {name}")

    def remove(self, reference: str) -> Image:
        """Remove a name (or, by digest, the image and all its names); return the image as it was.

        Blobs and root filesystems no other name uses are deleted. Refused with
        `ImageInUseError` when the image would go away and `in_use` names pods using it."""
        if not self.root.is_dir():
            raise not_found({}, reference, reference, store=str(self.root))
        with self._lock(exclusive=True):
            entries = self._read_index()
            entry = self._find(entries, reference)
            image = self._image_of(entry)
            by_digest = reference.strip().startswith("sha256:")
            dropping = set(entry.names) if by_digest else {normalize_name(reference)}
            if dropping >= entry.names:
                pods = self._pods_using(entry.digest)
                if pods:
                    shown = ", ".join(image.names) or "<none>"
                    raise ImageInUseError(
                        f"image {shown} ({entry.digest}) is used by pod"
                        f"{'s' if len(pods) != 1 else ''} {', '.join(sorted(pods))}; "
                        "nothing was removed; delete those pods first"
                    )
                del entries[entry.digest]
            else:
                entry.names -= dropping
            self._write_index(entries)
            self._collect(entries)
            return image

    # -- internals: the index -----------------------------------------------------------------

    def _read_index(self) -> dict[str, Entry]:
        try:
            index = json.loads((self._oci / "index.json").read_text())
        except FileNotFoundError:
            return {}
        entries, skipped = parse_index(index)
        for digest in skipped:
            log.warning("image_index_entry_skipped", digest=digest, store=str(self.root))
        return entries

    def _write_index(self, entries: dict[str, Entry]) -> None:
        body = index_document(entries)
        _write_atomically(self._oci / "index.json", json.dumps(body, indent=1).encode())

    def _find(self, entries: dict[str, Entry], reference: str) -> Entry:
        return find_entry(entries, reference, store=str(self.root))

    def _pods_using(self, digest: str) -> builtins.list[str]:
        return sorted(self._in_use(digest)) if self._in_use else []

    def _image_of(self, entry: Entry) -> Image:
        manifest = json.loads(self._blob(entry.digest).read_bytes())
        config_digest, size = manifest_config(manifest)
        config = json.loads(self._blob(config_digest).read_bytes())
        return Image(
            names=tuple(sorted(entry.names)),
            digest=entry.digest,
            size=entry.size + size,
            created=_parse_time(config.get("created")),
            config=image_config(config.get("config") or {}),
        )

    def _blob(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ImageStoreError(
                f"image store {self.root}: a descriptor names blob {digest!r}, expected "
                "sha256:<64 hex>; remove the image and import it again"
            )
        return self._blobs / digest.removeprefix("sha256:")

    # -- internals: adding and collecting -----------------------------------------------------

    def _publish(self, layout: Path, names: tuple[str, ...], *, what: str) -> Image:
        staged = json.loads((layout / "index.json").read_text())["manifests"]
        digest, size, media_type = staged[0]["digest"], staged[0]["size"], staged[0]["mediaType"]
        if media_type != OCI_MANIFEST:
            raise ImageInputError(
                f"{what}: the image manifest is {media_type}, expected {OCI_MANIFEST}; "
                "nothing was imported; convert it with `skopeo copy --format oci`"
            )
        with self._lock(exclusive=True):
            self._make_dirs()
            entries = self._read_index()
            try:
                moved = 0
                for blob in sorted((layout / "blobs" / "sha256").iterdir()):
                    target = self._blobs / blob.name
                    if not target.exists():
                        _fsync_file(blob)
                        os.chmod(blob, 0o644)
                        os.rename(blob, target)
                        moved += 1
                _fsync_dir(self._blobs)
                entry = entries.setdefault(digest, Entry(digest, int(size), media_type))
                for other in list(entries.values()):
                    if other is entry or not other.names & set(names):
                        continue
                    other.names -= set(names)
                    # An image that loses its last name goes, unless pods still use it.
                    if not other.names and not self._pods_using(other.digest):
                        del entries[other.digest]
                entry.names |= set(names)
                image = self._image_of(entry)
                self._write_index(entries)
            except BaseException:
                self._collect(self._read_index())
                raise
            self._collect(entries)
        log.info("image_added", what=what, digest=digest, names=list(names), new_blobs=moved)
        return image

    def _collect(self, entries: dict[str, Entry]) -> None:
        """Delete blobs and root filesystems that no descriptor reaches. Lock held."""
        keep: set[str] = set()
        for entry in entries.values():
            keep.add(entry.digest.removeprefix("sha256:"))
            try:
                manifest = json.loads(self._blob(entry.digest).read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("image_manifest_unreadable", digest=entry.digest, error=str(exc))
                continue
            keep |= manifest_blobs(manifest)
        roots = {e.digest.removeprefix("sha256:") for e in entries.values()}
        blobs = rootfs = 0
        if self._blobs.is_dir():
            for blob in self._blobs.iterdir():
                if blob.name not in keep:
                    blob.unlink()
                    blobs += 1
        if self._rootfs.is_dir():
            for tree in self._rootfs.iterdir():
                if tree.name not in roots:
                    # Rename first so a half-deleted tree never sits under rootfs/.
                    doomed = self._tmp / f"gc-{uuid.uuid4().hex}"
                    os.rename(tree, doomed)
                    shutil.rmtree(doomed)
                    rootfs += 1
        self._clean_staging()
        if blobs or rootfs:
            log.info("image_garbage_collected", blobs=blobs, rootfs=rootfs, store=str(self.root))

    def _unpack(self, entry: Entry, dest: Path) -> None:
        """Unpack `entry` to `dest` (absent), whole or not at all. Lock held."""
        with self._staging("unpack", locked=True) as staging:
            layout = staging / "layout"
            layout.mkdir()
            (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            desc = {
                "mediaType": entry.media_type,
                "digest": entry.digest,
                "size": entry.size,
                "annotations": {REF_NAME: "image"},
            }
            index = {"schemaVersion": 2, "manifests": [desc]}
            (layout / "index.json").write_text(json.dumps(index))
            os.symlink(self._oci / "blobs", layout / "blobs")
            tree = staging / "rootfs"
            run = umoci_unpack(layout, "image", tree)
            if run.returncode != 0:
                raise ImageToolError(
                    f"unpack {entry.digest}: umoci failed: {tool_message(run.stderr)}; "
                    "nothing was unpacked; the image's blobs may be damaged: remove it and "
                    "import it again"
                )
            _make_harmless(tree)
            _add_init(tree)
            os.chmod(tree, 0o755)
            # syncfs: the tree is on disk before its name says it is whole.
            synced = run_tool("sync", ["-f", str(tree)], timeout=TOOL_TIMEOUT_S)
            if synced.returncode != 0:
                log.warning("image_rootfs_sync_failed", rootfs=str(tree), error=synced.stderr)
            os.rename(tree, dest)
        log.info("image_unpacked", digest=entry.digest, rootfs=str(dest))

    # -- internals: directories and locks -----------------------------------------------------

    def _make_dirs(self) -> None:
        for d, mode in (
            (self.root, 0o755),
            (self._oci, 0o755),
            (self._oci / "blobs", 0o755),
            (self._blobs, 0o755),
            (self._rootfs, 0o755),
            (self._tmp, 0o700),
        ):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        layout = self._oci / "oci-layout"
        if not layout.exists():
            _write_atomically(layout, b'{"imageLayoutVersion":"1.0.0"}')
        if not (self._oci / "index.json").exists():
            self._write_index({})

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool) -> Iterator[bool]:
        """Hold the store lock; yields False (no lock taken) when a reader finds no store."""
        if not exclusive and not self.root.is_dir():
            yield False
            return
        if exclusive:
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o755)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _staging(self, purpose: str, *, locked: bool = False) -> Iterator[Path]:
        """A private directory in tmp/, flocked while in use and removed afterwards.

        It is made under the store lock (taken here unless `locked` says the caller holds it),
        so `_clean_staging`, which also needs that lock, never sees one half made."""
        with contextlib.ExitStack() as stack:
            if not locked:
                stack.enter_context(self._lock(exclusive=True))
            self._make_dirs()
            staging = self._tmp / f"{purpose}-{uuid.uuid4().hex}"
            staging.mkdir(mode=0o700)
            fd = os.open(staging / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(fd)

    def _clean_staging(self) -> None:
        """Remove staging left by crashed processes (their lock is free). Store lock held."""
        if not self._tmp.is_dir():
            return
        for staging in self._tmp.iterdir():
            lock = staging / ".lock"
            if lock.exists():
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use by a live process
                finally:
                    os.close(fd)
            log.info("image_staging_removed", path=str(staging))
            shutil.rmtree(staging, ignore_errors=True)


# -- helpers --------------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # Go writes nanoseconds and Z; Python takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _make_harmless(tree: Path) -> None:
    """Root owns everything; no devices, setuid/setgid bits or file capabilities remain."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.unlink(p)
                continue
            if st.st_uid or st.st_gid:
                os.lchown(p, 0, 0)
            if stat.S_ISREG(st.st_mode):
                if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    os.chmod(p, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
                try:
                    os.removexattr(p, "security.capability")
                except OSError as exc:
                    if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
                        raise


INIT_BINARIES = ("/usr/bin/tini-static", "/usr/sbin/tini-static")
"""Static inits the store may add to root filesystems (Debian's tini package)."""


def find_init() -> str | None:
    return next((p for p in INIT_BINARIES if os.access(p, os.X_OK)), None)


def _add_init(tree: Path) -> None:
    """Put the node's static init at INIT_PATH in `tree` (see `sandbox._image.INIT_PATH`);
    without one (tini not installed) containers run their command as pid 1."""
    source = find_init()
    if source is None:
        log.warning("image_init_missing", hint="apt-get install tini", looked=INIT_BINARIES)
        return
    dest = tree / INIT_PATH.lstrip("/")
    dest.parent.mkdir(mode=0o755, exist_ok=True)
    shutil.copyfile(source, dest)
    os.chmod(dest, 0o755)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
