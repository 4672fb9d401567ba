"""A real node daemon for tests: `edgenode up` in its own process, driven by the real CLI.

`running_node()` starts the daemon on a temporary state directory and socket, waits until it
answers, and on the way out stops it and removes every pod it left running (pods outlive
their daemon by design, so a test must remove them itself).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxkit import require_runc

EDGENODE = str(Path(sys.executable).with_name("edgenode"))


@dataclass
class Node:
    root: Path
    state_dir: Path
    socket: str
    name: str
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "EDGENODE_SOCKET": self.socket}

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EDGENODE, *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        out = self.cli(*args, input=input)
        assert out.returncode == 0, f"edgenode {' '.join(args)}: {out.returncode}\n{out.stderr}"
        return out.stdout

    def get(self, ref: str) -> dict[str, Any]:
        kind, name = ref.split("/", 1)
        doc: dict[str, Any] = json.loads(self.ok("get", kind, name, "-o", "json"))
        return doc

    def start(self, *extra: str) -> None:
        log = open(self.root / "daemon.log", "ab")  # noqa: SIM115 - the daemon's stderr
        argv = [EDGENODE, "up", "--state-dir", str(self.state_dir), "--socket", self.socket]
        self.process = subprocess.Popen(
            [*argv, "--name", self.name, *extra],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for(lambda: self.cli("get", "nodes").returncode == 0, timeout=60, what="daemon up")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(60)
        self.process = None

    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")


def wait_for(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running_node(name: str = "test-node", *extra: str) -> Iterator[Node]:
    require_runc()
    root = Path(tempfile.mkdtemp(prefix="edgenode-test-daemon-"))
    root.chmod(0o755)
    node = Node(root, root / "state", str(root / "run" / "edgenode.sock"), name)
    try:
        node.start(*extra)
        yield node
    finally:
        node.stop()
        cleanup(node.state_dir)
        shutil.rmtree(root, ignore_errors=True)


def cleanup(state_dir: Path) -> None:
    """Remove every pod left on the node (containers, monitors, network namespaces)."""
    from sandbox.images import ImageStore
    from sandbox.pods import Sandbox

    if not (state_dir / "pods").exists():
        return
    sandbox = Sandbox(state_dir, ImageStore(state_dir / "images"))
    for pod in sandbox.pods():
        sandbox.delete_pod(pod, grace_s=0)
