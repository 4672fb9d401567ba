"""Labs for tests: uniquely named, always torn down, never touching a user's lab.

`lab_name()` is a name no other test run uses; `named_lab()` yields a `Lab` that is not up yet
(for a test that brings it up itself, e.g. with the CLI) and removes whatever part of it exists
on the way out; `running_lab(n)` brings n nodes up first. Both skip (or, in CI, fail) where the
machine cannot run a lab.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from conftest import require
from sandboxkit import require_runc

from edgenode._protocol import ApiError
from edgenode.client import Connection
from edgenode.lab import Lab


def require_lab() -> None:
    require_runc()
    for tool in ("ip", "nft", "nsenter"):
        require(shutil.which(tool) is not None, f"a lab needs {tool} (iproute2, nftables)")


def lab_name(prefix: str = "t") -> str:
    """A lab name of this test run alone (pid and randomness; short, so names stay short)."""
    return f"{prefix}{os.getpid() % 100000}{secrets.token_hex(2)}"


@contextmanager
def named_lab(prefix: str = "t") -> Iterator[Lab]:
    require_lab()
    lab = Lab(lab_name(prefix))
    try:
        yield lab
    finally:
        lab.down()


@contextmanager
def running_lab(
    nodes: int = 3, *, extra_daemon_args: Sequence[str] = (), prefix: str = "t"
) -> Iterator[Lab]:
    with named_lab(prefix) as lab:
        lab.up(nodes, extra_daemon_args=extra_daemon_args)
        yield lab


def call(lab: Lab, node: str, verb: str, **args: Any) -> Any:
    """One API call to a lab node's daemon."""
    with Connection(lab.socket(node)) as conn:
        return conn.call(verb, **args)


def pod(lab: Lab, node: str, name: str) -> dict[str, Any] | None:
    """Pod `name` as node `node` holds it (None: it has none of that name)."""
    try:
        [doc] = call(lab, node, "get", kind="pod", name=name)
    except ApiError:
        return None
    return dict(doc)


def apply(lab: Lab, node: str, text: str, *, timeout: float = 600) -> None:
    """`edgenode apply` of manifest `text` on a lab node; it must succeed."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        out = lab.cli(node, "apply", "-f", f.name, timeout=timeout)
        assert out.returncode == 0, out.stderr
    finally:
        os.unlink(f.name)


def ping_tool_available() -> bool:
    return shutil.which("ping") is not None or shutil.which("busybox") is not None


def ping(lab: Lab, src: str, address: str) -> bool:
    """Whether one echo from node `src` to `address` (``fe80::…%eth0`` for a link-local one)
    has its answer within a second."""
    flags = ["-c", "1", "-W", "1"]
    if shutil.which("ping"):
        argv = ["ping", *flags, address]
    else:
        argv = ["busybox", "ping6" if ":" in address else "ping", *flags, address]
    return lab.exec(src, argv, timeout=10).returncode == 0


def reaches(lab: Lab, src: str, address: str, *, tries: int = 3) -> bool:
    """Node `src` reaches `address` with one of `tries` echoes (a second each: time for
    neighbour discovery to try again after a fault has ended)."""
    return any(ping(lab, src, address) for _ in range(tries))


def cut_off(lab: Lab, src: str, address: str) -> bool:
    """One echo from node `src` to `address` has no answer within a second."""
    return not ping(lab, src, address)


def link_local(lab: Lab, node: str) -> str:
    """Node's IPv6 link-local address on eth0."""
    out = lab.exec(node, ["ip", "-j", "-6", "addr", "show", "dev", "eth0"])
    assert out.returncode == 0, out.stderr
    for iface in json.loads(out.stdout):
        for a in iface.get("addr_info", []):
            if a.get("scope") == "link":
                return str(a["local"])
    raise AssertionError(f"node {node}: eth0 has no link-local address: {out.stdout}")
