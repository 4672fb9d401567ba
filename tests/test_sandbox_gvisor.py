"""The gvisor runtime class: how it is invoked and adapted, and real runsc running our
secure-default bundles (see `sandbox._classes` for what gVisor cannot honour)."""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from sandboxkit import make_rootfs, run_bundle, shell_config

from sandbox._classes import (
    CLASS_NAMES,
    GVISOR_PIDS_BASE,
    GVISOR_TASKS_PER_PROCESS,
    NOT_HONOURED,
    UnsupportedConfigError,
    adapt_config,
    runtime_argv,
    supports_live_update,
)
from sandbox._ids import allocate
from sandbox._oci import DENIED_SYSCALLS, ContainerSpec, IdRange, PodSandbox, runtime_config
from sandbox.runtimes import CLASSES, RuntimeUnavailableError, detect
from sandbox.runtimes import require as require_class

IDS = allocate({"other": 0}, "pod")[1]
NNP_SOURCE = """#include <stdio.h>
#include <sys/prctl.h>
int main(void) { printf("nnp %d\\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)); return 0; }
"""
"""gVisor's /proc/self/status has no NoNewPrivs line: this asks the kernel directly."""


def default_config(**kw: Any) -> dict[str, Any]:
    pod = PodSandbox(IdRange(1 << 20, 1 << 16), "/run/netns/pod-web", "web")
    return runtime_config(ContainerSpec(rootfs="/r", args=["/bin/sh"], **kw), pod, arch="x86_64")


def test_each_class_is_invoked_with_its_global_flags_before_the_subcommand() -> None:
    assert set(CLASS_NAMES) == set(CLASSES)
    assert runtime_argv("runc", "/usr/sbin/runc", "/run/e") == [
        "/usr/sbin/runc",
        "--root",
        "/run/e",
    ]
    assert runtime_argv("crun", "/usr/bin/crun", None) == ["/usr/bin/crun"]
    argv = runtime_argv("gvisor", "/usr/bin/runsc", "/run/e")
    assert argv[:3] == ["/usr/bin/runsc", "--root", "/run/e"]
    assert {"--platform=ptrace", "--network=none", "--oci-seccomp"} <= set(argv)
    assert not [a for a in argv if a.startswith(("--debug", "--ignore-cgroups", "--rootless"))]
    with pytest.raises(ValueError, match="unknown runtime class 'kata'; known classes: runc"):
        runtime_argv("kata", "/bin/kata", None)
    assert supports_live_update("runc") and supports_live_update("crun")
    assert not supports_live_update("gvisor")


def test_adapting_keeps_every_protection_and_scales_only_gvisors_pids_limit() -> None:
    config = default_config(pids=100, memory_bytes=64 << 20)
    pristine = default_config(pids=100, memory_bytes=64 << 20)
    for cls in ("runc", "crun"):
        assert adapt_config(cls, config) == config and NOT_HONOURED[cls] == ()
    adapted = adapt_config("gvisor", config)
    assert config == pristine  # a copy: the caller's config is untouched
    limit = adapted["linux"]["resources"]["pids"]["limit"]
    assert limit == GVISOR_PIDS_BASE + GVISOR_TASKS_PER_PROCESS * 100
    adapted["linux"]["resources"]["pids"]["limit"] = 100
    assert adapted == config  # nothing else changed: seccomp, user namespace, mounts ...
    assert any(item.startswith("network:") for item in NOT_HONOURED["gvisor"])


def test_gvisor_refuses_host_network_rather_than_silently_giving_loopback() -> None:
    config = default_config(relaxations=frozenset({"host-network"}))
    assert adapt_config("runc", config) == config
    with pytest.raises(
        UnsupportedConfigError, match=r"host-network relaxation.*runtime class runc"
    ):
        adapt_config("gvisor", config)
    with pytest.raises(ValueError, match="unknown runtime class 'kata'"):
        adapt_config("kata", config)


def test_detect_finds_runsc_on_the_path_and_names_its_package_when_missing(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = detect(cgroups="hybrid", path=str(empty))["gvisor"]
    assert not missing.available
    assert missing.reason == "runsc is not installed: apt-get install runsc"
    with pytest.raises(RuntimeUnavailableError, match="apt-get install runsc"):
        missing.argv()
    fake = tmp_path / "bin" / "runsc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'runsc version 0.0~fake'\necho 'spec: 1.0.2-dev'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    found = detect(cgroups="hybrid", path=str(fake.parent))["gvisor"]
    assert found.available and found.binary == str(fake)
    assert found.version == "runsc version 0.0~fake"
    assert found.argv("/run/e")[:3] == [str(fake), "--root", "/run/e"]
    assert require_class("gvisor", {"gvisor": found}) is found
    assert found.not_honoured == NOT_HONOURED["gvisor"]


# -- real runsc -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Gvisor:
    argv: list[str]
    rootfs: Path
    shared: Path
    """A directory the pod's ids can reach and write (0755 parents, itself 0777)."""


@pytest.fixture(scope="module")
def gvisor() -> Iterator[Gvisor]:
    require(os.geteuid() == 0, "runs containers: needs root")
    runsc = detect()["gvisor"]
    require(runsc.available, f"needs runsc: {runsc.reason}")
    # Not under pytest's 0700 temporary tree: runsc's gofer runs as the pod's ids.
    top = Path(tempfile.mkdtemp(prefix="edgenode-test-gvisor-"))
    argv = runsc.argv(str(top / "state"))
    try:
        top.chmod(0o755)
        rootfs = make_rootfs(top / "rootfs")
        (top / "nnp.c").write_text(NNP_SOURCE)
        subprocess.run(
            ["gcc", "-static", "-O2", "-o", str(rootfs / "bin" / "nnp"), str(top / "nnp.c")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        shared = top / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        yield Gvisor(argv, rootfs, shared)
    finally:
        listed = subprocess.run(
            [*argv, "list", "-quiet"], capture_output=True, text=True, check=False, timeout=30
        )
        for cid in listed.stdout.split():
            subprocess.run([*argv, "delete", "--force", cid], check=False, timeout=30)
        shutil.rmtree(top)


def run(gv: Gvisor, work: Path, script: str, **kw: Any) -> str:
    """Run `script` in the default config, adapted for gVisor; its stdout and stderr."""
    config = adapt_config("gvisor", shell_config(gv.rootfs, script, IDS, **kw))
    ran = run_bundle(config, work, gv.argv)
    assert ran.returncode == 0, ran
    return ran.stdout + ran.stderr


def fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_gvisor_runs_the_default_config_as_a_non_root_user_with_no_capabilities(
    gvisor: Gvisor, tmp_path: Path
) -> None:
    out = run(gvisor, tmp_path, "id -u; id -g; /bin/nnp; cat /proc/self/status")
    uid, gid, nnp, *status = out.splitlines()
    assert (uid, gid, nnp) == ("1000", "1000", "nnp 1")
    status_fields = fields("\n".join(status))
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapInh"):
        assert status_fields[cap] == "0" * 16
    assert status_fields["Seccomp"] == "2"  # the config's filter, loaded by --oci-seccomp


def test_it_is_gvisors_kernel_and_the_seccomp_filter_holds_inside_it(
    gvisor: Gvisor, tmp_path: Path
) -> None:
    probe = "/bin/probe " + " ".join([*DENIED_SYSCALLS, "getpid"])
    out = run(gvisor, tmp_path, f"uname -r; dmesg 2>&1; {probe}")
    release, dmesg, *lines = out.splitlines()
    assert release != platform.release()  # not the host's kernel
    assert "klogctl: Operation not permitted" in dmesg  # syslog is on the denied list
    results = {name: errno for name, errno in (line.split() for line in lines)}
    assert results.pop("getpid") == "0"
    probed = {name: errno for name, errno in results.items() if errno != "unknown"}
    assert len(probed) >= 20 and set(probed.values()) == {"1"}  # 1 = EPERM
    unfiltered = run(gvisor, tmp_path, "dmesg", relaxations=frozenset({"unconfined-seccomp"}))
    assert "Starting gVisor..." in unfiltered


def test_gvisor_root_is_read_only_tmp_is_writable_and_host_files_are_invisible(
    gvisor: Gvisor, tmp_path: Path
) -> None:
    marker = tmp_path / f"host-marker-{os.getpid()}"
    marker.write_text("secret")
    script = (
        "touch /x 2>&1; echo root=$?; grep ' / / ' /proc/self/mountinfo; "
        f"echo hi > /tmp/t && cat /tmp/t; cat {marker} 2>&1; echo ---; ls /"
    )
    out, listing = run(gvisor, tmp_path, script).split("---\n")
    assert "root=1" in out and " / / ro " in out
    assert "\nhi\n" in out
    assert "No such file or directory" in out and "secret" not in out
    assert set(listing.split()) <= {p.name for p in gvisor.rootfs.iterdir()}


def test_files_the_guest_writes_belong_to_the_pods_id_range_on_the_host(
    gvisor: Gvisor, tmp_path: Path
) -> None:
    out = run(
        gvisor,
        tmp_path,
        "echo from-gvisor > /mnt/made-inside",
        relaxations=frozenset({"host-path"}),
        host_paths=[(str(gvisor.shared), "/mnt", False)],
    )
    made = gvisor.shared / "made-inside"
    assert made.read_text() == "from-gvisor\n", out
    assert (made.stat().st_uid, made.stat().st_gid) == (IDS.host_id(1000), IDS.host_id(1000))


def test_the_scaled_pids_limit_lets_the_guest_run_the_processes_it_asked_for(
    gvisor: Gvisor, tmp_path: Path
) -> None:
    script = "for i in $(seq 20); do sleep 1 & done; wait; echo done"
    unscaled = run_bundle(shell_config(gvisor.rootfs, script, IDS, pids=30), tmp_path, gvisor.argv)
    # Unscaled, the sandbox's own host tasks use up the limit: the guest dies in its forks.
    assert unscaled.returncode != 0 and "done" not in unscaled.stdout
    assert run(gvisor, tmp_path, script, pids=30).strip() == "done"


@pytest.fixture
def pod_netns() -> Iterator[str]:
    require(shutil.which("ip") is not None, "makes a network namespace: needs iproute2")
    name = f"edgenode-test-gv-{os.getpid()}"
    host_end, pod_end = f"gvh{os.getpid()}"[:15], f"gvp{os.getpid()}"[:15]
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        for cmd in (
            ["ip", "link", "add", host_end, "type", "veth", "peer", "name", pod_end],
            ["ip", "link", "set", pod_end, "netns", name],
            ["ip", "-n", name, "addr", "add", "10.250.0.2/24", "dev", pod_end],
            ["ip", "-n", name, "link", "set", pod_end, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
        yield f"/run/netns/{name}"
    finally:
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def test_a_gvisor_pod_gets_loopback_only_not_its_network_namespace(
    gvisor: Gvisor, tmp_path: Path, pod_netns: str
) -> None:
    spec = ContainerSpec(rootfs=str(gvisor.rootfs), args=["/bin/sh", "-c", "ip -o link"])
    config = runtime_config(spec, PodSandbox(IDS, pod_netns, "pod"), arch=platform.machine())
    ran = run_bundle(adapt_config("gvisor", config), tmp_path, gvisor.argv)
    assert ran.returncode == 0, ran
    links = [line.split(":")[1].strip() for line in ran.stdout.splitlines()]
    assert links == ["lo"]  # the pod's veth (10.250.0.2) stays outside: see NOT_HONOURED
