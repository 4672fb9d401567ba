"""The image store's pure rules: names, digests, the index's contents and what images declare.

Theory of operation
-------------------
Nothing here reads a file or runs a tool. The shells (`sandbox.images`, the store, and
`sandbox.imagesources`, the input formats and skopeo/umoci) read bytes and parse JSON, then hand
the decoded documents here and act on what comes back. Every error says what happened to the
store ("nothing was imported"), so the shells raise these as they are.

**Names** follow Docker's grammar, shortened the way ``docker`` shows them: a name without a tag
gets ``:latest``, and ``docker.io/library/busybox`` is ``busybox`` (``docker.io/acme/app`` is
``acme/app``). Other registries keep their host: ``ghcr.io/acme/app:1.2``. A reference is a
name, a bare name, or ``sha256:`` followed by at least `DIGEST_PREFIX_MIN` hex digits of a
manifest digest; a prefix that matches two manifests is refused, never guessed.

**The index** is the OCI layout's index.json: one descriptor per (manifest, name), the name in
the ``org.opencontainers.image.ref.name`` annotation, and one descriptor without a name for a
manifest that lost its last name while pods still use it. `parse_index` folds it into one
`Entry` per manifest digest; `index_document` writes it back, sorted, so the same entries
always give the same bytes.

**Sources** name their image in one of three ways: an OCI index's ref-name annotation (a bare
``1.36`` is a tag of the file's stem, ``busybox:1.36`` a whole name), containerd's
``io.containerd.image.name`` annotation (preferred when present), or a docker-archive's
``RepoTags``. A source that names nothing is named after its file (``busybox.tar.gz`` →
``busybox:latest``). The file's name is asked for only when needed, through a callable, so a
source whose names are whole never depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox._image import ImageConfig, ImageNotFoundError

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HOW_TO_ADD = (
    "import one with `edgenode image import FILE` (an archive made where there is network, "
    "e.g. `skopeo copy docker://REF oci-archive:FILE`) or fetch it with `edgenode image pull REF`"
)
DIGEST_PREFIX_MIN = 12
"""Hex digits a ``sha256:`` reference must give at least (as ``edgenode image ls`` shows)."""
ARCHIVE_SUFFIXES = (".tar", ".gz", ".tgz", ".oci", ".xz", ".bz2", ".zst", ".zstd")
"""Dropped from a file's name to make the name of an image that records none."""

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)(?::[0-9]+)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_UNREACHABLE = (
    "dial tcp",
    "no such host",
    "connection refused",
    "network is unreachable",
    "no route to host",
    "i/o timeout",
    "tls handshake timeout",
    "context deadline exceeded",
    "temporary failure in name resolution",
    "pinging container registry",
)


class ImageStoreError(Exception):
    """Base of the image store's errors. Each message says what happened to the store."""


class ImageInputError(ImageStoreError, ValueError):
    """The caller's mistake: a file that is not an image, or a malformed name. Nothing written."""


class ImageInUseError(ImageStoreError):
    """Pods use the image that would be removed; nothing was removed."""


class RegistryError(ImageStoreError):
    """The registry refused or failed a pull; nothing was written."""


class RegistryUnreachableError(RegistryError):
    """The node could not reach the registry (offline, DNS, firewall); nothing was written."""


class ImageToolError(ImageStoreError):
    """skopeo or umoci is missing, failed or timed out; the message carries its stderr."""


# -- names ----------------------------------------------------------------------------------


def normalize_name(reference: str) -> str:
    """``busybox`` → ``busybox:latest``; ``docker.io/library/busybox:1.36`` → ``busybox:1.36``."""
    ref = reference.strip()
    if "@" in ref:
        raise ImageInputError(
            f"image name {reference!r}: name@digest is not supported; "
            "give the name (busybox:1.36) or the digest alone (sha256:<hex>)"
        )
    domain = ""
    rest = ref
    first, slash, after = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, rest = first, after
    path, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    tag = tag if colon else "latest"
    problem = ""
    if domain and not _DOMAIN_RE.fullmatch(domain):
        problem = f"registry host {domain!r} is not a host[:port]"
    elif not _PATH_RE.fullmatch(path):
        problem = (
            f"repository {path!r} must be lowercase letters, digits and . _ - separators, "
            "in /-separated parts"
        )
    elif not _TAG_RE.fullmatch(tag):
        problem = f"tag {tag!r} must be letters, digits, _ . - (at most 128, not starting . -)"
    if problem:
        raise ImageInputError(
            f"image name {reference!r} is not valid: {problem}; "
            "expected NAME[:TAG] like busybox, busybox:1.36 or ghcr.io/acme/app:2"
        )
    if domain in ("docker.io", "index.docker.io"):
        domain = ""
        if path.startswith("library/") and path.count("/") == 1:
            path = path.removeprefix("library/")
    return f"{domain}/{path}:{tag}" if domain else f"{path}:{tag}"


def registry_reference(name: str) -> str:
    """The fully qualified reference skopeo pulls for a store name (``docker.io/library/...``)."""
    name = normalize_name(name)
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if slash else f"docker.io/library/{name}"


def is_digest(value: str) -> bool:
    """Whether `value` is a whole ``sha256:<64 hex>`` digest."""
    return _DIGEST_RE.fullmatch(value) is not None


# -- the index ------------------------------------------------------------------------------


@dataclass
class Entry:
    """One manifest of the store's index and every name it has there."""

    digest: str
    size: int
    media_type: str
    names: set[str] = field(default_factory=set)


def parse_index(index: Mapping[str, Any]) -> tuple[dict[str, Entry], list[str]]:
    """The entries of a decoded index.json by digest, and the descriptor digests skipped as bad."""
    entries: dict[str, Entry] = {}
    skipped: list[str] = []
    for d in index.get("manifests", []):
        digest = d.get("digest", "")
        if not _DIGEST_RE.fullmatch(digest):
            skipped.append(digest)
            continue
        entry = entries.setdefault(
            digest, Entry(digest, int(d.get("size", 0)), d.get("mediaType", OCI_MANIFEST))
        )
        name = (d.get("annotations") or {}).get(REF_NAME)
        if name:
            entry.names.add(name)
    return entries, skipped


def index_document(entries: Mapping[str, Entry]) -> dict[str, Any]:
    """The index.json for `entries`: a descriptor per name, one without a name if it has none."""
    manifests: list[dict[str, Any]] = []
    for entry in sorted(entries.values(), key=lambda e: (sorted(e.names), e.digest)):
        base = {"mediaType": entry.media_type, "digest": entry.digest, "size": entry.size}
        if not entry.names:
            manifests.append(base)
        for name in sorted(entry.names):
            manifests.append({**base, "annotations": {REF_NAME: name}})
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


def find_entry(entries: Mapping[str, Entry], reference: str, *, store: str) -> Entry:
    """The entry `reference` (a name or a digest prefix) names in the store at `store`.

    `ImageNotFoundError` if none, if a digest prefix is too short or matches several."""
    ref = reference.strip()
    if ref.startswith("sha256:"):
        hexpart = ref.removeprefix("sha256:")
        if not re.fullmatch(rf"[0-9a-f]{{{DIGEST_PREFIX_MIN},64}}", hexpart):
            raise ImageNotFoundError(
                f"image reference {reference!r}: a digest is sha256: and at least "
                f"{DIGEST_PREFIX_MIN} lowercase hex digits (got {len(hexpart)} characters "
                f"{hexpart!r}); see `edgenode image ls` for the digests"
            )
        found = [e for d, e in entries.items() if d.removeprefix("sha256:").startswith(hexpart)]
        if len(found) > 1:
            raise ImageNotFoundError(
                f"image reference {reference!r} matches {len(found)} images "
                f"({', '.join(e.digest for e in found)}); give more digits"
            )
        if found:
            return found[0]
        wanted = ref
    else:
        try:
            wanted = normalize_name(ref)
        except ImageInputError as exc:
            raise ImageNotFoundError(f"{exc}; {HOW_TO_ADD}") from None
        for entry in entries.values():
            if wanted in entry.names:
                return entry
    raise not_found(entries, reference, wanted, store=store)


def not_found(
    entries: Mapping[str, Entry], reference: str, wanted: str, *, store: str
) -> ImageNotFoundError:
    """The error for `wanted` (as asked: `reference`) missing; it lists what the store has."""
    known = ", ".join(
        f"{n} ({e.digest[7:19]})" for e in entries.values() for n in sorted(e.names) or ["<none>"]
    )
    return ImageNotFoundError(
        f"no image {wanted} in the store at {store}"
        + (f" (asked for {reference!r})" if wanted != reference else "")
        + (f"; known images: {known}" if known else "; the store has no images")
        + f"; {HOW_TO_ADD}"
    )


# -- manifests and configs ------------------------------------------------------------------


def manifest_config(manifest: Mapping[str, Any]) -> tuple[str, int]:
    """A decoded image manifest's config digest, and the bytes of its config and layers."""
    config_desc = manifest.get("config", {})
    digest = config_desc["digest"]
    size = int(config_desc.get("size", 0))
    size += sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
    return digest, size


def manifest_blobs(manifest: Mapping[str, Any]) -> set[str]:
    """The hex digests of the blobs a decoded image manifest reaches (config and layers)."""
    return {
        str(desc.get("digest", "")).removeprefix("sha256:")
        for desc in [manifest.get("config", {}), *manifest.get("layers", [])]
    }


def image_config(c: Mapping[str, Any]) -> ImageConfig:
    """The run defaults of an OCI image config's ``config`` object."""
    env: dict[str, str] = {}
    for item in c.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return ImageConfig(
        entrypoint=tuple(str(a) for a in c.get("Entrypoint") or ()),
        cmd=tuple(str(a) for a in c.get("Cmd") or ()),
        env=env,
        working_dir=str(c.get("WorkingDir") or "/"),
        user=str(c.get("User") or ""),
    )


# -- what a source names its image ----------------------------------------------------------


def pick_oci(
    index: Any, selector: str | None, *, shown: str, kind: str, stem: Callable[[], str]
) -> tuple[str, tuple[str, ...]]:
    """The one image of a decoded OCI index: (its ref name to select it by, its names as recorded).

    `shown` is the source as the user gave it; `stem()` the repository its file name gives."""
    descs = [d for d in (index or {}).get("manifests", []) if isinstance(d, dict)]
    refs = sorted({str((d.get("annotations") or {}).get(REF_NAME, "")) for d in descs} - {""})
    if selector is not None:
        descs = [d for d in descs if (d.get("annotations") or {}).get(REF_NAME) == selector]
        if not descs:
            raise ImageInputError(
                f"import {shown}:{selector}: {kind} with no image named {selector!r} (its "
                f"names: {', '.join(refs) or 'none'}); nothing was imported"
            )
    if len({d.get("digest") for d in descs}) != 1:
        raise ImageInputError(
            f"import {shown}: {kind} holding {len(descs)} images; expected one, or choose one "
            f"by name (its names: {', '.join(refs) or 'none'}; DIR:NAME for a directory, or "
            "`skopeo copy oci-archive:FILE:NAME oci-archive:ONE.tar` for an archive); "
            "nothing was imported"
        )
    names: list[str] = []
    for d in descs:
        notes = d.get("annotations") or {}
        if notes.get(CONTAINERD_NAME):
            names.append(str(notes[CONTAINERD_NAME]))
        elif notes.get(REF_NAME):
            ref = str(notes[REF_NAME])
            names.append(ref if (":" in ref or "/" in ref) else f"{stem()}:{ref}")
    chosen = selector or str((descs[0].get("annotations") or {}).get(REF_NAME, ""))
    return chosen, tuple(names)


def pick_docker(manifest: Any, *, shown: str) -> tuple[str, ...]:
    """The names (``RepoTags``) of the one image of a docker-archive's decoded manifest.json."""
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else "no list of"
        raise ImageInputError(
            f"import {shown}: a docker-archive with {count} images in manifest.json; expected "
            "exactly one; save one image per archive (`docker save NAME:TAG`); "
            "nothing was imported"
        )
    tags = manifest[0].get("RepoTags") or []
    return tuple(str(t) for t in tags)


def source_names(
    recorded: tuple[str, ...], *, shown: str, stem: Callable[[], str]
) -> tuple[str, ...]:
    """The store names of a source: the `recorded` ones normalised, else its file's stem."""
    if not recorded:
        return (normalize_name(stem()),)
    return tuple(sorted({_checked(n, shown) for n in recorded}))


def stem_name(filename: str, *, shown: str) -> str:
    """A file's name without archive suffixes, as a repository name (no tag)."""
    stem = filename
    while (dot := stem.rfind(".")) > 0 and stem[dot:] in ARCHIVE_SUFFIXES:
        stem = stem[:dot]
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("._-")
    if not _PATH_RE.fullmatch(stem):
        raise ImageInputError(
            f"import {shown}: the archive records no name and the file name gives none "
            f"(got {stem!r}); give one with --name NAME[:TAG]; nothing was imported"
        )
    return stem


def _checked(name: str, shown: str) -> str:
    try:
        return normalize_name(name)
    except ImageInputError as exc:
        raise ImageInputError(
            f"import {shown}: the archive names its image {name!r}, which is not a valid name "
            f"({exc}); give one with --name; nothing was imported"
        ) from None


# -- what the tools said --------------------------------------------------------------------


def tool_message(stderr: str) -> str:
    """skopeo's `level=fatal msg="..."` lines made readable; other output as is."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return "no error output"
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', lines[-1])
    if m:
        return m.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return " / ".join(lines[-3:])


def pull_error(name: str, remote: str, stderr: str) -> RegistryError:
    """The error for a failed pull of `name` from `remote`: unreachable (with the offline way
    to bring the image) or refused, told apart by skopeo's stderr."""
    message = tool_message(stderr)
    host = remote.split("/", 1)[0]
    if any(marker in stderr.lower() for marker in _UNREACHABLE):
        archive = name.rsplit(":", 1)[0].rsplit("/", 1)[-1] + ".tar"
        return RegistryUnreachableError(
            f"pull {name}: this node could not reach the registry {host} ({message}); "
            f"nothing was written. On a machine that can reach it, run `skopeo copy "
            f"docker://{remote} oci-archive:{archive}`, bring {archive} to this node and run "
            f"`edgenode image import {archive} --name {name}`"
        )
    return RegistryError(
        f"pull {name}: the registry {host} refused or failed {remote} ({message}); "
        "nothing was written; check the name and tag, and that the image is public"
    )
