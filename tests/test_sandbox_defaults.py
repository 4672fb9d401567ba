"""A container run from a generated bundle, with real runc, is locked down by default."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandboxkit import make_rootfs, require_runc, run_bundle, shell_config

from sandbox._ids import FIRST_BASE, RANGE_SIZE, allocate
from sandbox._oci import DENIED_SYSCALLS
from sandbox._relax import check

IDS = allocate({"other": 0}, "pod")[1]
# The list: each of these tests/probes/syscalls.c can call.
PROBED = (
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "ptrace",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "userfaultfd",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
)


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    require_runc()
    # Not under pytest's 0700 temporary tree: a pod's ids must be able to reach its image.
    images = Path(tempfile.mkdtemp(prefix="edgenode-test-image-"))
    try:
        images.chmod(0o755)
        yield make_rootfs(images / "rootfs")
    finally:
        shutil.rmtree(images)


def status_fields(text: str) -> dict[str, str]:
    return dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())
    )


def test_the_process_is_an_unprivileged_mapped_user_with_no_capabilities(
    rootfs: Path, tmp_path: Path
) -> None:
    ran = run_bundle(
        shell_config(rootfs, "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/status", IDS),
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    uid, gid, uid_map, *status = ran.stdout.splitlines()
    assert (uid, gid) == ("1000", "1000")
    inner, host, size = map(int, uid_map.split())
    assert (inner, host, size) == (0, IDS.base, RANGE_SIZE)
    assert host + int(uid) >= FIRST_BASE  # the host sees an id no node user has
    fields = status_fields("\n".join(status))
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0" * 16
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_every_listed_syscall_fails_with_eperm(rootfs: Path, tmp_path: Path) -> None:
    assert set(PROBED) <= set(DENIED_SYSCALLS)
    ran = run_bundle(
        shell_config(rootfs, "/bin/probe " + " ".join([*PROBED, "getpid"]), IDS), tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    results = dict(line.split() for line in ran.stdout.splitlines())
    assert results.pop("getpid") == "0"  # the probe itself works: allowed calls succeed
    assert results == {name: "1" for name in PROBED}  # 1 = EPERM


def test_root_is_read_only_tmp_is_writable_and_mount_fails(rootfs: Path, tmp_path: Path) -> None:
    script = (
        "touch /x 2>&1; echo root=$?; echo hi > /tmp/t && cat /tmp/t; "
        "mount -t tmpfs none /mnt 2>&1; echo mount=$?; "
        "echo 1 > /proc/sys/kernel/sysrq 2>&1; echo procsys=$?"
    )
    ran = run_bundle(shell_config(rootfs, script, IDS), tmp_path)
    out = ran.stdout
    assert "Read-only file system" in out and "root=1" in out
    assert "\nhi\n" in out
    assert re.search(r"mount=[1-9]", out) and "permission denied" in out.lower()
    assert re.search(r"procsys=[1-9]", out)


def test_host_files_are_invisible(rootfs: Path, tmp_path: Path) -> None:
    marker = tmp_path / f"host-marker-{os.getpid()}"
    marker.write_text("secret")
    script = f"ls /; echo ---; cat {marker} 2>&1; echo ---; ls /proc/1/root/ 2>&1; echo ---"
    ran = run_bundle(shell_config(rootfs, script, IDS), tmp_path)
    listing, cat, pid1_root, _ = ran.stdout.split("---\n")
    assert set(listing.split()) <= {p.name for p in rootfs.iterdir()}
    assert "No such file or directory" in cat and "secret" not in ran.stdout
    assert set(pid1_root.split()) <= {p.name for p in rootfs.iterdir()}  # pid 1 is the shell


def test_run_as_root_is_refused_without_its_acknowledgement_and_works_with_it(
    rootfs: Path, tmp_path: Path
) -> None:
    problems = check({"run-as-root": "spec.containers.web.securityContext.runAsRoot"}, [])
    assert [p.relaxation for p in problems] == ["run-as-root"]
    assert "add `acknowledge: [run-as-root]`" in str(problems[0])
    assert (
        check({"run-as-root": "spec.containers.web.securityContext.runAsRoot"}, ["run-as-root"])
        == []
    )
    config = shell_config(
        rootfs, "id -u; grep CapEff /proc/self/status", IDS, relaxations=frozenset({"run-as-root"})
    )
    ran = run_bundle(config, tmp_path)
    uid, capeff = ran.stdout.splitlines()
    assert uid == "0"
    assert capeff.split()[1] == "0" * 16  # root inside, still with no capabilities


RELAXED: dict[str, tuple[str, str, str]] = {
    # relaxation: (script, what the default run prints, what the relaxed run prints)
    "writable-root": ("grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1", "ro", "rw"),
    "unconfined-seccomp": ("grep Seccomp: /proc/self/status", "2", "0"),
    "add-capability": ("grep CapEff /proc/self/status", "0000000000000000", "0000000000000400"),
    "no-user-namespace": ("cat /proc/self/uid_map", f"0 {IDS.base} 65536", "0 0 4294967295"),
    "host-network": ("ip -o link | grep -c .", "1", "HOST"),
    "host-path": ("cat /mnt/note 2>&1", "No such file", "from the node"),
}


@pytest.mark.parametrize("name", sorted(RELAXED))
def test_each_relaxation_needs_its_acknowledgement_and_then_takes_effect(
    name: str, rootfs: Path, tmp_path: Path
) -> None:
    where = f"spec.containers.web.securityContext.{name}"
    refused = check({name: where}, [])
    assert len(refused) == 1 and f"`acknowledge: [{name}]`" in str(refused[0])
    assert check({name: where}, [name]) == []
    script, default, relaxed = RELAXED[name]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "note").write_text("from the node\n")
    (shared / "note").chmod(0o644)
    extra: dict[str, object] = {}
    if name == "add-capability":
        extra["capabilities"] = ["CAP_NET_BIND_SERVICE"]
    if name == "host-path":
        extra["host_paths"] = [(str(shared), "/mnt", True)]
        tmp_path.chmod(0o755)
    if extra:
        with pytest.raises(ValueError, match=f"only with the {name} relaxation"):
            shell_config(rootfs, script, IDS, **extra)
    before = run_bundle(shell_config(rootfs, script, IDS), tmp_path)
    after = run_bundle(
        shell_config(rootfs, script, IDS, relaxations=frozenset({name}), **extra), tmp_path
    )
    assert default in " ".join(before.stdout.split()), before
    if relaxed == "HOST":  # the node's interfaces: more than a fresh namespace's lo
        assert int(after.stdout.strip()) > 1, after
    else:
        assert relaxed in " ".join(after.stdout.split()), after
