"""Work inside a pod from outside it: a check's sockets made in the pod's network namespace by
a thread that ends at once, and the exec command line that works around runc's join order."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

import pytest
from conftest import require

from sandbox import netns
from sandbox._exec import joins_network_late, without_network


@pytest.mark.parametrize(
    ("runtime_class", "version", "late"),
    [
        ("runc", "runc version 1.1.5+ds1", True),
        ("runc", "runc version 1.2.6", True),
        ("runc", "runc version 1.3.0", False),
        ("runc", None, True),
        ("crun", "crun version 1.8.1", False),
        ("gvisor", "runsc version release-20221219.0", False),
    ],
)
def test_only_a_runc_before_1_3_needs_the_network_joined_for_it(
    runtime_class: str, version: str | None, late: bool
) -> None:
    assert joins_network_late(runtime_class, version) is late


def test_the_exec_state_names_every_namespace_but_the_network() -> None:
    state: dict[str, Any] = {
        "id": "web.main",
        "init_process_pid": 42,
        "config": {
            "rootfs": "/x",
            "namespaces": [
                {"type": "NEWPID", "path": ""},
                {"type": "NEWUSER", "path": ""},
                {"type": "NEWNET", "path": "/run/netns/edgenode-abc-web"},
            ],
        },
        "namespace_paths": {"NEWPID": "/proc/42/ns/pid", "NEWNET": "/proc/42/ns/net"},
    }
    copy = without_network(state)
    assert [ns["type"] for ns in copy["config"]["namespaces"]] == ["NEWPID", "NEWUSER"]
    assert copy["namespace_paths"] == {"NEWPID": "/proc/42/ns/pid"}
    assert copy["config"]["rootfs"] == "/x" and copy["init_process_pid"] == 42
    assert len(state["config"]["namespaces"]) == 3  # the original is left alone


def test_a_socket_made_in_a_pods_namespace_stays_there_and_no_thread_does() -> None:
    require(os.geteuid() == 0, "makes a network namespace: needs root")
    name = f"edgenode-test-{uuid.uuid4().hex[:8]}"
    path = netns.create(name)
    try:
        inside = os.stat(path).st_ino
        here = os.stat("/proc/thread-self/ns/net").st_ino
        threads = threading.active_count()

        def listen() -> tuple[socket.socket, int]:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            s.listen()
            return s, os.stat("/proc/thread-self/ns/net").st_ino

        server, seen = netns.submit_in(path, listen).result(timeout=10)
        client = netns.submit_in(path, socket.socket).result(timeout=10)
        with server, client:
            assert seen == inside != here
            client.connect(server.getsockname())  # from this thread, in the pod's network
            with socket.socket() as outside, pytest.raises(OSError):
                outside.connect(server.getsockname())  # the node's loopback has no such port
        assert os.stat("/proc/thread-self/ns/net").st_ino == here
        deadline = time.monotonic() + 5
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.01)  # each thread ends just after handing its result over
        assert threading.active_count() == threads
        with pytest.raises(OSError, match="-gone"):
            netns.submit_in(f"{path}-gone", lambda: None).result(timeout=10)
    finally:
        netns.remove(name)
