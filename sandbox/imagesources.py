"""Where images come from: the input formats an import reads, and the skopeo and umoci runs.

`inspect_source` tells the formats apart by looking, not by the file's name: a directory with
an ``oci-layout`` file is an OCI layout (``DIR:TAG`` picks one of its images), a tar archive
holding ``oci-layout`` is an OCI archive, one holding ``manifest.json`` is a docker-archive,
compressed or not. It reads only the index or manifest, decides nothing itself (which image,
which names: `sandbox._imageref`) and writes nothing. `copy_source` and `skopeo_copy` copy an
image into a fresh OCI layout in a staging directory the store gave them; `umoci_unpack`
unpacks one. Every tool runs through `run_tool`, which bounds it in time and turns a missing
tool or a timeout into an `ImageToolError`.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox._imageref import (
    ImageInputError,
    ImageToolError,
    pick_docker,
    pick_oci,
    source_names,
    stem_name,
    tool_message,
)

ACCEPTED = (
    "accepted are an OCI archive (`skopeo copy ... oci-archive:FILE`), an OCI layout "
    "directory (DIR or DIR:TAG) and a docker-archive (`docker save` output)"
)
TOOL_TIMEOUT_S = 600.0
"""Seconds one skopeo or umoci run may take for local work (import, unpack) before it is
killed. Raise it for very large images on slow disks."""


@dataclass(frozen=True, slots=True)
class Source:
    """An image to import, as `inspect_source` found it."""

    path: Path
    kind: str
    """What it is, for messages: ``an OCI archive``, ``a docker-archive``..."""
    transport: str
    """skopeo's transport for it: ``oci``, ``oci-archive`` or ``docker-archive``."""
    selector: str
    """The ref name that selects its image in an OCI layout or archive (may be empty)."""
    recorded: tuple[str, ...]
    """Names as the source records them (a bare OCI ref name is a tag of the file's stem)."""

    def names(self) -> tuple[str, ...]:
        """The store names: the recorded ones, normalised, else the file's stem."""
        return source_names(self.recorded, shown=str(self.path), stem=lambda: file_stem(self.path))


def inspect_source(arg: str) -> Source:
    """What `arg` (a file, a directory or ``DIR:TAG``) holds; `ImageInputError` if no image."""
    path, selector = _split_path(arg)
    if path.is_dir():
        if not (path / "oci-layout").is_file():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
            raise ImageInputError(
                f"import {path}: a directory without an oci-layout file is not an OCI image "
                f"layout (found: {found}); {ACCEPTED}; nothing was imported"
            )
        index = _load_json(path / "index.json", f"import {path}: index.json")
        return _oci_source(path, "an OCI layout directory", "oci", index, selector)
    if not path.is_file():
        raise ImageInputError(
            f"import {path}: neither a regular file nor a directory; {ACCEPTED}; "
            "nothing was imported"
        )
    if selector is not None:
        raise ImageInputError(
            f"import {arg}: no such file or directory ({path} is a file; DIR:TAG selects an "
            "image only in an OCI layout directory); nothing was imported"
        )
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            if "oci-layout" in members:
                index = _tar_json(tar, members.get("index.json"), path)
                return _oci_source(path, "an OCI archive", "oci-archive", index, None)
            if "manifest.json" in members:
                manifest = _tar_json(tar, members["manifest.json"], path)
                tags = pick_docker(manifest, shown=str(path))
                return Source(path, "a docker-archive", "docker-archive", "", tags)
    except (tarfile.TarError, EOFError, OSError) as exc:
        with path.open("rb") as f:
            head = f.read(16)
        raise ImageInputError(
            f"import {path}: not a tar archive or OCI layout directory ({exc}; it starts with "
            f"{head!r}); {ACCEPTED}; nothing was imported"
        ) from None
    shown = ", ".join(sorted(members)[:8]) or "no files"
    raise ImageInputError(
        f"import {path}: a tar archive with neither oci-layout (an OCI archive) nor "
        f"manifest.json (a docker-archive); it holds {shown}; {ACCEPTED}; nothing was imported"
    )


def file_stem(path: Path) -> str:
    """The file's name without archive suffixes, as a repository name (no tag)."""
    return stem_name(path.resolve().name, shown=str(path))


def copy_source(source: Source, staging: Path) -> subprocess.CompletedProcess[str]:
    """Copy `source`'s image into ``staging/layout`` as OCI, keeping its digest if it can."""
    link = staging / "source"
    # skopeo reads docker-archives only uncompressed (`docker save | gzip` is common).
    if source.transport != "docker-archive" or not _decompress(source.path, link):
        os.symlink(source.path.resolve(), link)
    transport = f"{source.transport}:{link}" + (f":{source.selector}" if source.selector else "")
    preserve = ["--preserve-digests"] if source.transport != "docker-archive" else []
    copy = skopeo_copy(staging, transport, [*preserve, "--format", "oci"])
    if copy.returncode != 0 and preserve:
        # A source whose manifest is not OCI cannot keep its digest; convert it.
        copy = skopeo_copy(staging, transport, ["--format", "oci"])
    return copy


def skopeo_copy(
    staging: Path,
    source: str,
    flags: list[str],
    *,
    command_timeout_s: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``skopeo copy`` from `source` (transport:reference) into a new ``staging/layout``.

    `command_timeout_s` bounds a network copy (skopeo's --command-timeout); without it the copy
    is local and bounded by `TOOL_TIMEOUT_S`."""
    layout = staging / "layout"
    if layout.exists():
        shutil.rmtree(layout)
    top = ["--tmpdir", str(staging)]
    if command_timeout_s is not None:
        top += ["--command-timeout", f"{command_timeout_s}s"]
    args = [*top, "copy", "--quiet", "--retry-times", "0", "--remove-signatures", *flags]
    timeout = TOOL_TIMEOUT_S if command_timeout_s is None else command_timeout_s + 10.0
    return run_tool("skopeo", [*args, source, f"oci:{layout}:image"], timeout=timeout)


def umoci_unpack(layout: Path, name: str, tree: Path) -> subprocess.CompletedProcess[str]:
    """``umoci raw unpack`` the image `name` of the OCI layout `layout` into `tree` (absent)."""
    return run_tool(
        "umoci",
        ["raw", "unpack", "--image", f"{layout}:{name}", str(tree)],
        timeout=TOOL_TIMEOUT_S,
    )


def run_tool(tool: str, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `tool` with `args`, output captured; `ImageToolError` if missing or over `timeout`."""
    exe = shutil.which(tool)
    if exe is None:
        raise ImageToolError(
            f"{tool} is not installed on this node; install it with `apt-get install {tool}`; "
            "nothing was written"
        )
    try:
        return subprocess.run(
            [exe, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise ImageToolError(
            f"{tool} {args[0] if args else ''} took longer than {timeout:.0f} s and was "
            f"stopped ({tool_message(err)}); nothing was written"
        ) from None


def _oci_source(path: Path, kind: str, transport: str, index: Any, selector: str | None) -> Source:
    chosen, names = pick_oci(
        index, selector, shown=str(path), kind=kind, stem=lambda: file_stem(path)
    )
    return Source(path, kind, transport, chosen, names)


def _split_path(arg: str) -> tuple[Path, str | None]:
    if os.path.lexists(arg):
        return Path(arg), None
    for i, ch in enumerate(arg):
        if ch == ":" and arg[:i] and os.path.isdir(arg[:i]):
            return Path(arg[:i]), arg[i + 1 :]
    raise ImageInputError(f"import {arg}: no such file or directory; nothing was imported")


def _tar_json(tar: tarfile.TarFile, member: tarfile.TarInfo | None, path: Path) -> Any:
    f = tar.extractfile(member) if member is not None else None
    if f is None:
        raise ImageInputError(
            f"import {path}: an OCI archive without index.json; the archive is incomplete; "
            "nothing was imported"
        )
    try:
        return json.loads(f.read())
    except ValueError as exc:
        raise ImageInputError(
            f"import {path}: {member.name if member else ''} is not JSON ({exc}); "
            "nothing was imported"
        ) from None


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ImageInputError(f"{what} is unreadable ({exc}); nothing was imported") from None


def _decompress(path: Path, dest: Path) -> bool:
    """Write `path` decompressed to `dest` if it is gzip, bzip2 or xz; else False."""
    with path.open("rb") as f:
        head = f.read(6)
    openers: dict[bytes, Callable[[Path], Any]] = {
        b"\x1f\x8b": gzip.open,
        b"BZh": bz2.open,
        b"\xfd7zXZ\x00": lzma.open,
    }
    opener = next((o for magic, o in openers.items() if head.startswith(magic)), None)
    if opener is None:
        return False
    with opener(path) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return True
