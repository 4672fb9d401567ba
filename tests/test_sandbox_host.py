"""The node reports what its sandbox has and lacks: AppArmor above all, never silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgenode.objects import Node
from sandbox import host
from sandbox._apparmor import PROFILE_NAME, profile
from sandbox.runtimes import Runtime


def test_apparmor_is_reported_unavailable_where_the_kernel_lacks_it(tmp_path: Path) -> None:
    feature = host.apparmor(str(tmp_path))
    assert not feature.available
    assert f"{tmp_path}/apparmor does not exist" in feature.detail


def test_apparmor_with_kernel_support_needs_its_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "apparmor").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path))
    feature = host.apparmor(str(tmp_path))
    assert not feature.available and "apt-get install apparmor" in feature.detail


def test_features_cover_every_protection_and_runtime_class(tmp_path: Path) -> None:
    runtimes = {
        "runc": Runtime("runc", "/usr/bin/runc", "runc 1.1", True),
        "gvisor": Runtime("gvisor", None, None, False, "runsc is not installed: apt-get ..."),
    }
    found = host.features(security_dir=str(tmp_path), runtimes=runtimes)
    assert set(found) == {
        "apparmor",
        "seccomp",
        "user-namespaces",
        "cgroups",
        "init",
        "runtime-runc",
        "runtime-gvisor",
    }
    assert found["runtime-gvisor"].detail == "runsc is not installed: apt-get ..."
    assert found["runtime-runc"] == host.Feature(True, "runc 1.1")


def test_node_status_carries_the_sandbox_report_for_describe(tmp_path: Path) -> None:
    found = host.features(security_dir=str(tmp_path))
    node = Node.model_validate(
        {
            "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {
                "phase": "Ready",
                "sandbox": {
                    k: {"available": v.available, "detail": v.detail} for k, v in found.items()
                },
            },
        }
    )
    assert node.status is not None
    assert node.status.sandbox["apparmor"].available is False


def test_apparmor_profile_denies_mounts_and_names_itself() -> None:
    text = profile()
    assert f"profile {PROFILE_NAME} " in text
    assert "deny mount," in text and "deny @{PROC}/sysrq-trigger rwklx," in text
