"""`get pods -o wide` shows where each pod runs, its address and its ports."""

from __future__ import annotations

from typing import Any

import pytest

from edgenode.fastcli import print_objects


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "revision": 3},
        "spec": {
            "containers": {
                "web": {
                    "image": "busybox",
                    "ports": {
                        "http": {"containerPort": 8080},
                        "dns": {"containerPort": 53, "protocol": "udp"},
                    },
                }
            }
        },
        "assignment": {"node": "n2"},
        "status": status,
    }


def test_wide_pods_show_node_address_and_ports(capsys: pytest.CaptureFixture[str]) -> None:
    objects = [
        pod("web", phase="Running", node="n2", addresses={"ipv6": "fd12::2", "ipv4": "100.64.0.2"}),
        pod("pending"),
    ]
    print_objects("pods", None, objects, "wide")
    header, web, pending = capsys.readouterr().out.splitlines()
    assert header.split() == [
        *("NAME", "READY", "PHASE", "RESTARTS", "REVISION", "NODE"),
        *("ADDRESS", "IMAGES", "PORTS", "MESSAGE"),
    ]
    assert web.split() == [
        "web",
        "0/1",
        "Running",
        "0",
        "3",
        "n2",
        "fd12::2",
        "busybox",
        "dns=53/udp,http=8080",
    ]
    assert pending.split()[5:7] == ["n2", "<none>"]
