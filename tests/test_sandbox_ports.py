"""Host ports are unique per node, kept by a pod for its life, freed with it, and persisted:
across restarts, concurrent processes and ports other programs hold."""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
from pathlib import Path

import pytest

from sandbox._ports import (
    DEFAULT_RANGE,
    PortRange,
    PortRangeError,
    PortsExhaustedError,
    allocate,
    env_name,
    parse_range,
    port_env,
    release,
)
from sandbox.porttable import PortTable, bound_on_node
from sandbox.tables import TableCorruptError

RANGE = PortRange(30000, 30009)


def nothing_bound(port: int) -> bool:
    return False


def test_new_ports_get_the_lowest_free_numbers_and_a_pod_keeps_its_own() -> None:
    table, web = allocate({}, "web", ["http", "admin"], RANGE, bound=nothing_bound)
    assert web == {"admin": 30000, "http": 30001}
    table, api = allocate(table, "api", ["http"], RANGE, bound=nothing_bound)
    assert api == {"http": 30002}
    again, same = allocate(table, "web", ["admin", "http"], RANGE, bound=nothing_bound)
    assert (again, same) == (table, web)
    assert table == {"web": {"admin": 30000, "http": 30001}, "api": {"http": 30002}}


def test_an_edit_keeps_the_ports_a_pod_still_has_frees_the_dropped_and_adds_the_new() -> None:
    table, _ = allocate({}, "web", ["http", "metrics"], RANGE, bound=nothing_bound)
    table, web = allocate(table, "web", ["http", "grpc"], RANGE, bound=nothing_bound)
    assert web["http"] == 30000  # kept
    assert web["grpc"] == 30001  # metrics (30001) was freed and is the lowest free one
    assert set(table["web"]) == {"http", "grpc"}


def test_a_released_pods_ports_are_free_again_and_lowest_first() -> None:
    table, _ = allocate({}, "a", ["p"], RANGE, bound=nothing_bound)
    table, _ = allocate(table, "b", ["p"], RANGE, bound=nothing_bound)
    table = release(table, "a")
    assert table == {"b": {"p": 30001}}
    _, c = allocate(table, "c", ["p"], RANGE, bound=nothing_bound)
    assert c == {"p": 30000}


def test_ports_in_use_on_the_node_are_skipped() -> None:
    busy = {30000, 30002}
    _, web = allocate({}, "web", ["a", "b"], RANGE, bound=busy.__contains__)
    assert web == {"a": 30001, "b": 30003}


def test_a_kept_port_is_not_checked_again_since_its_own_pod_listens_there() -> None:
    table, web = allocate({}, "web", ["http"], RANGE, bound=nothing_bound)
    _, again = allocate(table, "web", ["http"], RANGE, bound=lambda p: True)
    assert again == web


def test_a_port_outside_a_narrowed_range_is_kept_by_its_pod() -> None:
    table, web = allocate({}, "web", ["http"], RANGE, bound=nothing_bound)
    _, again = allocate(table, "web", ["http"], PortRange(40000, 40001), bound=nothing_bound)
    assert again == web == {"http": 30000}


def test_an_exhausted_range_is_refused_with_the_reason_and_the_table_unchanged() -> None:
    small = PortRange(30000, 30002)
    table, _ = allocate({}, "a", ["p", "q"], small, bound=nothing_bound)
    with pytest.raises(PortsExhaustedError) as info:
        allocate(table, "b", ["p"], small, bound={30002}.__contains__)
    assert str(info.value) == (
        "no host port left for pod b port p: all 3 ports of the node's range 30000-30002 are "
        "taken (2 by pods of this node, 1 by other programs listening on the node); nothing "
        "was allocated. Delete pods that use host ports, or restart the node with a wider "
        "range (edgenode up --host-ports FIRST-LAST)"
    )
    assert table == {"a": {"p": 30000, "q": 30001}}


def test_a_pod_without_host_ports_has_no_entry() -> None:
    table, ports = allocate({}, "web", [], RANGE, bound=nothing_bound)
    assert (table, ports) == ({}, {})


def test_each_port_is_passed_as_port_and_its_name_in_capitals() -> None:
    assert env_name("web-ui") == "PORT_WEB_UI"
    assert port_env({"web": 30000, "dns-1": 30001}) == {"PORT_DNS_1": "30001", "PORT_WEB": "30000"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("30000", "expected a port range FIRST-LAST of two numbers, such as 30000-32767"),
        ("a-b", "of two numbers"),
        ("-5", "of two numbers"),
        ("32767-30000", "with FIRST <= LAST, got '32767-30000'; write 30000-32767"),
        ("0-100", "with 1 <= FIRST <= LAST <= 65535, got 0-100"),
        ("60000-70000", "got 60000-70000"),
    ],
)
def test_a_bad_range_is_refused_saying_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(PortRangeError) as info:
        parse_range(text)
    assert says in str(info.value)


def test_a_range_is_read_from_its_text() -> None:
    assert parse_range(" 30000-32767 ") == DEFAULT_RANGE
    assert len(parse_range("8000-8000")) == 1


# -- the table on disk ----------------------------------------------------------------------


def test_ports_survive_a_restart_and_freed_ones_are_reused(tmp_path: Path) -> None:
    table = PortTable(tmp_path / "ports.json", RANGE, bound=nothing_bound)
    assert table.allocate("web", ["http"]) == {"http": 30000}
    assert table.allocate("api", ["http"]) == {"http": 30001}
    reopened = PortTable(tmp_path / "ports.json", RANGE, bound=nothing_bound)
    assert reopened.allocate("web", ["http"]) == {"http": 30000}
    reopened.release("web")
    assert reopened.of("web") == {}
    assert reopened.allocate("new", ["http"]) == {"http": 30000}
    assert reopened.ports() == {"api": {"http": 30001}, "new": {"http": 30000}}


def _allocate_many(path: str, prefix: str) -> None:
    table = PortTable(Path(path), PortRange(30000, 30999), bound=nothing_bound)
    for i in range(20):
        table.allocate(f"{prefix}-{i}", ["a", "b"])


def test_processes_allocating_at_once_never_get_the_same_port(tmp_path: Path) -> None:
    path = str(tmp_path / "ports.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_allocate_many, args=(path, p)) for p in ("x", "y", "z")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    numbers = [n for ports in PortTable(Path(path)).ports().values() for n in ports.values()]
    assert len(numbers) == 120 and len(set(numbers)) == 120


def test_threads_allocating_at_once_never_get_the_same_port(tmp_path: Path) -> None:
    path = str(tmp_path / "ports.json")
    threads = [threading.Thread(target=_allocate_many, args=(path, p)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    numbers = [n for ports in PortTable(Path(path)).ports().values() for n in ports.values()]
    assert len(numbers) == 160 and len(set(numbers)) == 160


def test_an_exhausted_range_leaves_the_table_on_disk_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    table = PortTable(path, PortRange(30000, 30000), bound=nothing_bound)
    table.allocate("a", ["p"])
    before = path.read_bytes()
    with pytest.raises(PortsExhaustedError):
        table.allocate("b", ["p"])
    assert path.read_bytes() == before


def test_an_unreadable_table_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    path.write_text('{"web": {"http": "30000"}}')
    with pytest.raises(TableCorruptError, match=r"host port table .*ports.json is unreadable"):
        PortTable(path).allocate("api", ["http"])
    assert json.loads(path.read_text()) == {"web": {"http": "30000"}}


@pytest.mark.parametrize(
    ("family", "kind", "host"),
    [
        (socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1"),
        (socket.AF_INET, socket.SOCK_DGRAM, "0.0.0.0"),
        (socket.AF_INET6, socket.SOCK_STREAM, "::"),
    ],
)
def test_a_port_another_program_holds_is_seen_as_bound(
    family: socket.AddressFamily, kind: socket.SocketKind, host: str
) -> None:
    with socket.socket(family, kind) as held:
        held.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            held.listen()
        port = held.getsockname()[1]
        assert bound_on_node(port)
    assert not bound_on_node(port)


def test_a_port_left_closing_by_a_server_that_is_gone_is_free_again() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = server.accept()
            conn.close()  # the server's side closes first: its port stays in TIME_WAIT
            client.recv(1)
    assert not bound_on_node(port)
