"""The image store with real skopeo and umoci: formats, names, digests, shared blobs, collection,
refusals, what an unmapped uid sees of a root filesystem, and the `edgenode image` verbs.

Every archive is made here from the busybox image built from the node's own busybox-static:
no test needs a network (the pull test asks a registry that cannot exist).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require

from edgenode.cli import cli
from sandbox._image import ImageNotFoundError
from sandbox.busybox import BusyboxMissingError, build_image, ensure_busybox, find_busybox
from sandbox.images import (
    Image,
    ImageInputError,
    ImageInUseError,
    ImageStore,
    RegistryUnreachableError,
    normalize_name,
)

UNMAPPED_UID = 123456


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Built:
    base: Path
    """A mode-0755 directory for stores (pytest's tmp_path is 0700: unmapped uids can't enter)."""
    image: Image
    """busybox:latest as `build_image` made it."""
    layout: Path
    oci_archive: Path
    """An OCI archive whose image is named busybox:latest."""
    docker_archive: Path
    """A docker-archive whose RepoTags say busybox:1.36."""

    def store(
        self,
        *,
        in_use: Callable[[str], list[str]] | None = None,
        pull_timeout_s: float = 600.0,
    ) -> ImageStore:
        """A new, empty store in a node state dir of its own."""
        root = self.base / f"node-{uuid.uuid4().hex[:8]}" / "images"
        return ImageStore(root, in_use=in_use, pull_timeout_s=pull_timeout_s)


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    require(os.geteuid() == 0, "unpacks images as root, owned by root: needs root")
    for tool in ("skopeo", "umoci", "setpriv"):
        require(shutil.which(tool) is not None, f"needs {tool} (apt-get install {tool})")
    try:
        find_busybox()
    except BusyboxMissingError as exc:
        require(False, str(exc))
    base = Path(tempfile.mkdtemp(prefix="edgenode-images-"))
    try:
        os.chmod(base, 0o755)
        source = ImageStore(base / "source")
        image = build_image(source)
        layout = base / "source" / "oci"
        oci_archive, docker_archive = base / "busybox-oci.tar", base / "busybox-docker.tar"
        skopeo("copy", f"oci:{layout}:busybox:latest", f"oci-archive:{oci_archive}:busybox:latest")
        skopeo(
            "copy", f"oci:{layout}:busybox:latest", f"docker-archive:{docker_archive}:busybox:1.36"
        )
        yield Built(base, image, layout, oci_archive, docker_archive)
    finally:
        shutil.rmtree(base)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under `root` with its mode and (for files) content hash."""
    out: dict[str, tuple[int, str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
        out[str(p.relative_to(root))] = (st.st_mode, digest)
    return out


def blob_count(store: ImageStore) -> int:
    return len(list((store.root / "oci" / "blobs" / "sha256").iterdir()))


def rootfs_count(store: ImageStore) -> int:
    return len(list((store.root / "rootfs").iterdir()))


# -- formats and names ------------------------------------------------------------------------


def test_oci_archive_imports_under_its_recorded_name_with_its_digest(built: Built) -> None:
    store = built.store()
    image = store.import_file(built.oci_archive)
    assert image.names == ("busybox:latest",)
    assert image.digest == built.image.digest  # OCI sources keep their digest
    assert image.config.cmd == ("/bin/sh",)


def test_docker_archive_imports_under_its_repo_tag_as_an_oci_image(built: Built) -> None:
    store = built.store()
    image = store.import_file(built.docker_archive)
    assert image.names == ("busybox:1.36",)
    assert image.digest != built.image.digest  # converted to an OCI manifest
    assert image.config.cmd == ("/bin/sh",)
    assert image.config.env["PATH"].startswith("/usr/local/sbin")


def test_oci_layout_directory_imports_the_tag_asked_for(built: Built) -> None:
    store = built.store()
    image = store.import_file(f"{built.layout}:busybox:latest", name="tools")
    assert image.names == ("tools:latest",)
    assert image.digest == built.image.digest


def test_format_is_detected_by_content_not_by_file_name(built: Built) -> None:
    store = built.store()
    odd = built.base / f"odd-{uuid.uuid4().hex[:6]}"
    odd.mkdir()
    shutil.copy(built.oci_archive, odd / "really-oci.zip")
    shutil.copy(built.docker_archive, odd / "really-docker.oci")
    assert store.import_file(odd / "really-oci.zip").names == ("busybox:latest",)
    assert store.import_file(odd / "really-docker.oci").names == ("busybox:1.36",)


def test_archive_without_a_recorded_name_is_named_after_the_file(built: Built) -> None:
    store = built.store()
    unnamed = built.base / f"My_Tools-{uuid.uuid4().hex[:6]}.tar"
    skopeo("copy", f"oci:{built.layout}:busybox:latest", f"oci-archive:{unnamed}")
    image = store.import_file(unnamed)
    assert image.names == (unnamed.name.removesuffix(".tar").lower() + ":latest",)


def test_names_normalise_to_docker_short_form_with_latest_tag() -> None:
    assert normalize_name("busybox") == "busybox:latest"
    assert normalize_name("docker.io/library/busybox:1.36") == "busybox:1.36"
    assert normalize_name("docker.io/acme/app") == "acme/app:latest"
    assert normalize_name("localhost:5000/app") == "localhost:5000/app:latest"
    with pytest.raises(ImageInputError, match=r"repository 'Busybox' must be lowercase"):
        normalize_name("Busybox")


def test_ls_lists_every_image_with_names_size_and_build_time(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive)
    store.import_file(built.docker_archive)
    images = store.list()
    assert [i.names for i in images] == [("busybox:1.36",), ("busybox:latest",)]
    assert all(i.size > 500_000 for i in images)  # a whole busybox layer each
    mtime = int(os.stat(find_busybox()).st_mtime)
    assert all(i.created is not None and i.created.timestamp() == mtime for i in images)


# -- resolving and the root filesystem --------------------------------------------------------


def test_resolve_by_name_bare_name_or_digest_prefix_gives_one_rootfs(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive)
    hexdigest = built.image.digest.removeprefix("sha256:")
    refs = ["busybox:latest", "busybox", f"sha256:{hexdigest[:12]}", built.image.digest]
    resolved = [store.resolve(r) for r in refs]
    assert {r.digest for r in resolved} == {built.image.digest}
    assert {r.rootfs for r in resolved} == {str(store.root / "rootfs" / hexdigest)}
    assert [r.reference for r in resolved] == refs
    assert resolved[0].config.cmd == ("/bin/sh",)
    assert rootfs_count(store) == 1  # unpacked once


def test_rootfs_is_owned_by_root_and_readable_by_an_unmapped_uid(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive)
    rootfs = Path(store.resolve("busybox").rootfs)
    assert (rootfs / "bin" / "sh").is_symlink()
    for d in [rootfs, *rootfs.parents]:
        assert d.stat().st_mode & stat.S_IXOTH, f"{d} is not traversable by other users"
    assert {p.lstat().st_uid for p in rootfs.rglob("*")} == {0}
    seen = subprocess.run(
        [
            *("setpriv", f"--reuid={UNMAPPED_UID}", f"--regid={UNMAPPED_UID}", "--clear-groups"),
            *("sh", "-c", f"ls {rootfs}/bin && cat {rootfs}/etc/passwd"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert seen.returncode == 0, seen.stderr
    assert "busybox" in seen.stdout.split()
    assert "root:x:0:0" in seen.stdout


def test_unpacked_rootfs_grants_no_privilege_on_the_host(built: Built) -> None:
    """An image may carry device nodes, setuid files, file capabilities and foreign owners;
    the shared tree is reachable by every host user, so none of that survives unpacking."""
    layout = built.base / f"hostile-{uuid.uuid4().hex[:6]}"
    cap_setuid = b"\x01\x00\x00\x02\x80" + bytes(15)  # VFS_CAP_REVISION_2, effective, CAP_SETUID
    layer = io.BytesIO()
    # surrogateescape carries the capability's raw bytes through tarfile's str headers.
    with tarfile.open(
        fileobj=layer, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape"
    ) as tar:
        for name, kind, mode, uid, extra in [
            ("bin", tarfile.DIRTYPE, 0o755, 0, {}),
            ("bin/suid", tarfile.REGTYPE, 0o4755, 0, {}),
            ("bin/cap", tarfile.REGTYPE, 0o755, 0, {"SCHILY.xattr.security.capability": ""}),
            ("bin/theirs", tarfile.REGTYPE, 0o644, 1000, {}),
            ("dev", tarfile.DIRTYPE, 0o755, 0, {}),
            ("dev/mem", tarfile.CHRTYPE, 0o666, 0, {}),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, uid
            info.devmajor, info.devminor = (1, 1) if kind == tarfile.CHRTYPE else (0, 0)
            if extra:
                info.pax_headers = {k: cap_setuid.decode(errors="surrogateescape") for k in extra}
            data = b"#!/bin/sh\n" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    write_layout(layout, layer.getvalue(), ref="hostile")
    store = built.store()
    store.import_file(f"{layout}:hostile", name="hostile")
    rootfs = Path(store.resolve("hostile").rootfs)
    assert not (rootfs / "dev" / "mem").exists()
    assert not (rootfs / "bin" / "suid").stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert (rootfs / "bin" / "theirs").stat().st_uid == 0
    with pytest.raises(OSError):
        os.getxattr(rootfs / "bin" / "cap", "security.capability")


def write_layout(layout: Path, layer: bytes, *, ref: str) -> None:
    """A one-layer OCI layout around an uncompressed `layer`."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer_desc = put(layer)
    config = {"os": "linux", "architecture": "amd64", "config": {}}
    config["rootfs"] = {"type": "layers", "diff_ids": [layer_desc["digest"]]}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **put(json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    desc = {"mediaType": manifest["mediaType"], **put(json.dumps(manifest).encode())}
    desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))


# -- sharing and collecting -------------------------------------------------------------------


def test_same_content_imported_twice_stores_its_blobs_once(built: Built) -> None:
    store = built.store()
    first = store.import_file(built.oci_archive, name="a")
    blobs = blob_count(store)
    second = store.import_file(built.oci_archive, name="b:2")
    assert blob_count(store) == blobs == 3  # manifest, config, layer
    assert second.digest == first.digest
    assert second.names == ("a:latest", "b:2")
    assert store.resolve("a").rootfs == store.resolve("b:2").rootfs


def test_rm_of_one_of_two_names_keeps_the_image(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive, name="a")
    store.import_file(built.oci_archive, name="b")
    store.resolve("a")
    store.remove("a")
    assert [i.names for i in store.list()] == [("b:latest",)]
    assert blob_count(store) == 3
    assert rootfs_count(store) == 1


def test_rm_collects_blobs_and_rootfs_that_no_name_uses(built: Built) -> None:
    store = built.store()
    kept = store.import_file(built.oci_archive)
    gone = store.import_file(built.docker_archive)
    store.resolve("busybox:latest")
    store.resolve("busybox:1.36")
    assert rootfs_count(store) == 2
    removed = store.remove("busybox:1.36")
    assert removed.digest == gone.digest
    assert [i.digest for i in store.list()] == [kept.digest]
    assert blob_count(store) == 3
    assert [p.name for p in (store.root / "rootfs").iterdir()] == [kept.digest[7:]]
    store.remove(f"sha256:{kept.digest[7:19]}")
    assert store.list() == []
    assert blob_count(store) == 0 and rootfs_count(store) == 0


def test_rm_is_refused_while_pods_use_the_image(built: Built) -> None:
    users: dict[str, list[str]] = {}
    store = built.store(in_use=lambda digest: users.get(digest, []))
    image = store.import_file(built.oci_archive)
    users[image.digest] = ["web", "db"]
    with pytest.raises(ImageInUseError, match=r"used by pods db, web; nothing was removed"):
        store.remove("busybox")
    assert store.resolve("busybox").digest == image.digest
    users.clear()
    store.remove("busybox")
    assert store.list() == []


def test_name_moved_to_new_content_keeps_the_old_image_while_pods_use_it(built: Built) -> None:
    users: dict[str, list[str]] = {}
    store = built.store(in_use=lambda digest: users.get(digest, []))
    old = store.import_file(built.oci_archive, name="app:1")
    old_rootfs = Path(store.resolve("app:1").rootfs)
    users[old.digest] = ["web"]
    new = store.import_file(built.docker_archive, name="app:1")
    assert [(i.names, i.digest) for i in store.list()] == [
        (("app:1",), new.digest),
        ((), old.digest),
    ]
    assert old_rootfs.is_dir()  # the running pod keeps its files
    with pytest.raises(ImageInUseError, match=r"image <none> .* used by pod web"):
        store.remove(old.digest)
    users.clear()
    store.remove(old.digest)
    assert not old_rootfs.exists()
    assert [i.digest for i in store.list()] == [new.digest]


# -- errors -----------------------------------------------------------------------------------


def test_unknown_reference_names_the_known_images_and_how_to_add_one(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive)
    with pytest.raises(ImageNotFoundError) as caught:
        store.resolve("nginx")
    message = str(caught.value)
    assert "no image nginx:latest" in message
    assert f"known images: busybox:latest ({built.image.digest[7:19]})" in message
    assert "edgenode image import FILE" in message
    assert "edgenode image pull REF" in message


def test_digest_prefix_shorter_than_12_hex_digits_is_refused(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive)
    with pytest.raises(ImageNotFoundError, match=r"at least 12 lowercase hex digits"):
        store.resolve(built.image.digest[:15])


def test_files_that_are_not_images_are_refused_and_the_store_is_untouched(built: Built) -> None:
    store = built.store()
    store.import_file(built.oci_archive)
    before = snapshot(store.root)
    junk = built.base / f"junk-{uuid.uuid4().hex[:6]}"
    junk.mkdir()
    (junk / "garbage.tar").write_bytes(b"PK\x03\x04 this is a zip, not a tar" * 20)
    with tarfile.open(junk / "notes.tar", "w") as tar:
        tar.add(__file__, arcname="notes.txt")
    (junk / "dir").mkdir()
    (junk / "dir" / "hello.txt").write_text("hi")
    cases = {
        "garbage.tar": "not a tar archive or OCI layout directory",
        "notes.tar": "neither oci-layout (an OCI archive) nor manifest.json (a docker-archive)",
        "dir": "a directory without an oci-layout file is not an OCI image layout",
        "missing.tar": "no such file or directory",
    }
    for name, expected in cases.items():
        with pytest.raises(ImageInputError) as caught:
            store.import_file(junk / name)
        message = str(caught.value)
        assert str(junk / name) in message and expected in message
        assert "nothing was imported" in message
        if name != "missing.tar":
            assert "accepted are an OCI archive" in message
    assert snapshot(store.root) == before


def test_corrupt_archive_leaves_the_store_as_it_was(built: Built) -> None:
    """skopeo checks every digest while copying into staging; nothing reaches the store."""
    store = built.store()
    store.import_file(built.docker_archive)
    before = snapshot(store.root)
    corrupt = built.base / f"corrupt-{uuid.uuid4().hex[:6]}.tar"
    with tarfile.open(built.oci_archive) as src, tarfile.open(corrupt, "w") as dst:
        for member in src.getmembers():
            f = src.extractfile(member)
            data = f.read() if f else b""
            if member.size > 10_000:  # the layer: same size, other bytes
                data = data[:-100] + bytes(100)
            dst.addfile(member, io.BytesIO(data) if f else None)
    with pytest.raises(ImageInputError, match=r"skopeo could not read it as an OCI archive"):
        store.import_file(corrupt)
    assert snapshot(store.root) == before


def test_pull_without_a_reachable_registry_fails_fast_and_says_how_to_import(
    built: Built,
) -> None:
    store = built.store(pull_timeout_s=10)
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError) as caught:
        store.pull("registry.invalid/tools/busybox:1.36")
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "could not reach the registry registry.invalid" in message
    assert "nothing was written" in message
    assert (
        "skopeo copy docker://registry.invalid/tools/busybox:1.36 oci-archive:busybox.tar"
        in message
    )
    assert "edgenode image import busybox.tar --name registry.invalid/tools/busybox:1.36" in message
    assert store.list() == []


# -- the busybox image ------------------------------------------------------------------------


def test_busybox_image_has_the_same_digest_on_every_build(built: Built) -> None:
    again = build_image(built.store())
    assert again.digest == built.image.digest
    assert again.config.cmd == ("/bin/sh",)


def test_ensure_busybox_builds_only_when_missing(built: Built) -> None:
    store = built.store()
    store.import_file(built.docker_archive, name="busybox:latest")
    assert ensure_busybox(store).digest != built.image.digest  # kept what was there
    empty = built.store()
    assert ensure_busybox(empty).digest == built.image.digest


# -- concurrency ------------------------------------------------------------------------------


def test_two_imports_at_once_both_land(built: Built) -> None:
    """Each thread has its own store object, so they contend on the flock like processes."""
    root = built.store().root
    errors: list[BaseException] = []

    def run(path: Path, name: str) -> None:
        try:
            ImageStore(root).import_file(path, name=name)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(built.oci_archive, "one")),
        threading.Thread(target=run, args=(built.docker_archive, "two")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    store = ImageStore(root)
    assert sorted(n for i in store.list() for n in i.names) == ["one:latest", "two:latest"]
    assert all(Path(store.resolve(n).rootfs, "bin", "busybox").is_file() for n in ("one", "two"))
    assert list((root / "tmp").iterdir()) == []


# -- the CLI ----------------------------------------------------------------------------------


def test_image_verbs_import_list_remove_and_build(built: Built) -> None:
    state = built.store().root.parent
    runner = CliRunner()
    at = ["--state-dir", str(state)]  # offline: on the state directory, without a daemon

    done = runner.invoke(cli, ["image", "import", str(built.docker_archive), *at])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("imported busybox:1.36  sha256:")
    done = runner.invoke(cli, ["image", "build-busybox", *at])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"built busybox:latest  {built.image.digest}")

    table = runner.invoke(cli, ["image", "ls", *at]).stdout.splitlines()
    assert table[0].split() == ["NAME", "DIGEST", "SIZE", "CREATED"]
    row = next(line.split() for line in table if line.startswith("busybox:latest"))
    assert row[1] == built.image.digest[7:19]
    assert row[3] in ("KiB", "MiB")

    listed = json.loads(runner.invoke(cli, ["image", "ls", "-o", "json", *at]).stdout)
    assert {n for i in listed for n in i["names"]} == {"busybox:1.36", "busybox:latest"}
    assert all(i["config"]["cmd"] == ["/bin/sh"] for i in listed)

    done = runner.invoke(cli, ["image", "rm", "busybox:1.36", *at])
    assert done.exit_code == 0 and done.stdout.startswith("removed busybox:1.36")
    listed = json.loads(runner.invoke(cli, ["image", "ls", "-o", "json", *at]).stdout)
    assert [i["names"] for i in listed] == [["busybox:latest"]]


def test_image_verbs_report_errors_on_stderr_with_exit_status_2(built: Built) -> None:
    state = built.store().root.parent
    runner = CliRunner()
    for args in (
        ["image", "rm", "nginx", "--state-dir", str(state)],
        ["image", "import", str(built.base / "nope.tar"), "--state-dir", str(state)],
        ["image", "import", str(built.oci_archive), "--name", "Bad", "--state-dir", str(state)],
        ["image", "pull", "registry.invalid/x", "--timeout", "10", "--state-dir", str(state)],
    ):
        done = runner.invoke(cli, args)
        assert done.exit_code == 2, (args, done.output)
        assert done.stderr.startswith("edgenode image: "), done.stderr
        assert done.stdout == ""
