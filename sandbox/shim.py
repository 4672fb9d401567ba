"""The container monitor: one small process per container, independent of the daemon.

Theory of operation. ``python -m sandbox.shim DIR`` reads ``DIR/shim.json`` (written by
`sandbox.pods`), detaches from its caller (fork, the parent exits at once) and then, until the
container is finished for good:

- starts it with ``<runtime> run --detach``, the container's stdout and stderr going into two
  pipes it reads; being the *child subreaper*, it inherits the container's init process when
  the runtime exits, so it alone learns the exit code;
- writes what it reads to ``DIR/logs/container.log`` in the CRI log format
  (``<RFC 3339 time> <stdout|stderr> <F|P> <text>``, the format kubelet and log shippers
  read), rotating the file at ``max_bytes`` and keeping ``keep`` old files;
- applies the restart policy with exponential backoff (`sandbox._lifecycle`, the pure core);
- on SIGTERM stops the container (SIGTERM, then SIGKILL after the grace period); on SIGUSR1
  takes a new restart policy and grace period from shim.json; on SIGHUP
  restarts it in place at once (stopped the same way, started again in the same sandbox,
  no backoff);
- keeps ``DIR/status.json`` current (replaced atomically) for the daemon to read.

Because the shim, not the daemon, holds the pipes and reaps the container, a daemon restart or
upgrade loses neither logs nor exit codes, and restart policies keep working while it is down.
Only a few standard modules and the pure lifecycle core are imported (no subprocess, pathlib or
dataclasses), to keep each shim's start quick and its memory small.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import time
from typing import Any

from sandbox._lifecycle import Backoff, Lifecycle

PR_SET_CHILD_SUBREAPER = 36
READ_CHUNK = 65536
DRAIN_S = 1.0
"""After the container exits, how long to keep reading output its last processes left."""


class LogWriter:
    """CRI-format lines into a size-rotated file."""

    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._f = open(path, "ab")  # noqa: SIM115 - held open for the shim's life
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _stamp(self) -> bytes:
        now = time.time()
        return b"%s.%06dZ" % (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)).encode(),
            int(now % 1 * 1_000_000),
        )

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        lines = buf.split(b"\n")
        self._partial[stream] = lines.pop()
        stamp = self._stamp()
        tag = stream.encode()
        for line in lines:
            self._line(stamp, tag, b"F", line)
        if len(self._partial[stream]) >= READ_CHUNK:
            self._line(stamp, tag, b"P", self._partial[stream])
            self._partial[stream] = b""

    def flush_partial(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._line(self._stamp(), stream.encode(), b"F", rest)
                self._partial[stream] = b""
        self._f.flush()

    def _line(self, stamp: bytes, tag: bytes, flag: bytes, text: bytes) -> None:
        self._f.write(b"%s %s %s %s\n" % (stamp, tag, flag, text))
        if self._f.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._f.close()
        for n in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n + 1}")
        if self.keep > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._f = open(self.path, "ab")  # noqa: SIM115

    def flush(self) -> None:
        self._f.flush()


class Shim:
    def __init__(self, directory: str, config: dict[str, Any]) -> None:
        self.dir = directory
        self.id: str = config["id"]
        self.runtime: list[str] = list(config["runtime"])
        self.bundle: str = config["bundle"]
        self.grace_s: float = float(config["grace_s"])
        b = config["backoff"]
        self.life = Lifecycle(
            policy=config["policy"],
            backoff=Backoff(float(b["initial_s"]), float(b["max_s"]), float(b["reset_s"])),
        )
        before = config.get("restarts_before")
        if before is not None:
            self.life.restarts = int(before)
            self.life.ever_started = True
        log = config["log"]
        path = os.path.join(directory, "logs", "container.log")
        self.log = LogWriter(path, log["max_bytes"], log["keep"])
        self.pid: int | None = None
        self.pipes: dict[int, str] = {}
        self.kill_at: float | None = None
        self.restart_now = False
        self.stop_asked = False
        self.reload_asked = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def reload(self) -> None:
        """Take the restart policy, backoff and grace period from shim.json again."""
        with open(os.path.join(self.dir, "shim.json")) as f:
            config = json.load(f)
        self.grace_s = float(config["grace_s"])
        b = config["backoff"]
        self.life.policy = config["policy"]
        self.life.backoff = Backoff(float(b["initial_s"]), float(b["max_s"]), float(b["reset_s"]))

    # -- status ---------------------------------------------------------------------------

    def write_status(self) -> None:
        life = self.life
        status = {
            "state": life.state,
            "pid": self.pid,
            "shim_pid": os.getpid(),
            "restarts": life.restarts,
            "exit_code": life.exit_code,
            "started_at": life.started_at,
            "finished_at": life.finished_at,
            "next_start_at": life.next_start_at,
            "message": life.message,
        }
        tmp = os.path.join(self.dir, "status.json.tmp")
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, os.path.join(self.dir, "status.json"))

    # -- runtime --------------------------------------------------------------------------

    def _spawn(self, argv: list[str], stdout: int, stderr: int) -> int:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            return os.posix_spawn(
                argv[0],
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, null, 0),
                    (os.POSIX_SPAWN_DUP2, stdout if stdout >= 0 else null, 1),
                    (os.POSIX_SPAWN_DUP2, stderr if stderr >= 0 else null, 2),
                ],
                setsigdef=(signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT),
            )
        finally:
            os.close(null)

    def _runtime(self, *args: str) -> int:
        """Run the runtime with `args` to completion; its exit status."""
        pid = self._spawn([*self.runtime, *args], -1, -1)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def start(self) -> None:
        now = time.time()
        self._runtime("delete", "--force", self.id)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid_file = os.path.join(self.dir, "container.pid")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
        argv = [*self.runtime, "run", "--detach", "--pid-file", pid_file]
        argv += ["--bundle", self.bundle, self.id]
        try:
            runtime_pid = self._spawn(argv, out_w, err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pipes = {out_r: "stdout", err_r: "stderr"}
        rc = os.waitstatus_to_exitcode(os.waitpid(runtime_pid, 0)[1])
        if rc != 0 or not os.path.exists(pid_file):
            self._drain(deadline=time.monotonic() + 0.2)
            self.log.flush_partial()
            self.life.failed(
                now=time.time(),
                message=f"the runtime could not start the container (exit {rc}); see its log",
            )
            self.pid = None
            return
        with open(pid_file) as f:
            self.pid = int(f.read().strip())
        self.life.started(now=now)

    def signal_container(self, sig: str) -> None:
        self._runtime("kill", self.id, sig)

    # -- loop -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM:
            self.stop_asked = True
        elif signum == signal.SIGHUP:
            self.restart_now = True
        elif signum == signal.SIGUSR1:
            self.reload_asked = True
        with contextlib.suppress(BlockingIOError):  # already woken
            os.write(self.wake_w, b"x")

    def _drain(self, deadline: float) -> None:
        while self.pipes:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(self.pipes), [], [], left)
            for fd in ready:
                self._read(fd)
        for fd in list(self.pipes):
            os.close(fd)
        self.pipes = {}

    def _read(self, fd: int) -> None:
        data = os.read(fd, READ_CHUNK)
        if data:
            self.log.write(self.pipes[fd], data)
        else:
            os.close(fd)
            del self.pipes[fd]

    def _reap(self) -> int | None:
        """The container's exit code if it has exited (other orphans are reaped too)."""
        code = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
        return code

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.life.start(now=time.time())
        self.start()
        self.write_status()
        while not self.life.final:
            now = time.time()
            if self.reload_asked:
                self.reload_asked = False
                self.reload()
            if self.stop_asked:
                self.stop_asked = False
                if self.life.stop(now=now):
                    self.signal_container("TERM")
                    self.kill_at = time.monotonic() + self.grace_s
                self.write_status()
            if self.restart_now:
                self.restart_now = False
                if self.life.state in ("running", "backoff"):
                    if self.life.recycle(now=now):
                        self.signal_container("TERM")
                        self.kill_at = time.monotonic() + self.grace_s
                    self.write_status()
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self.signal_container("KILL")
                self.kill_at = None
            if self.pid is not None:
                code = self._reap()
                if code is not None:
                    self._container_exited(code)
                    continue
            else:
                self._reap()
            if self.life.state == "starting" or self.life.due(now=now):
                self.start()
                self.write_status()
                continue
            self._wait(self._timeout(now))
        self._runtime("delete", "--force", self.id)
        self.log.flush()
        self.write_status()

    def _container_exited(self, code: int) -> None:
        self._drain(deadline=time.monotonic() + DRAIN_S)
        self.log.flush_partial()
        self.pid = None
        self.kill_at = None
        self.life.exited(now=time.time(), exit_code=code)
        self.write_status()

    def _timeout(self, now: float) -> float:
        waits = [1.0]
        if self.life.next_start_at is not None:
            waits.append(self.life.next_start_at - now)
        if self.kill_at is not None:
            waits.append(self.kill_at - time.monotonic())
        return max(0.0, min(waits))

    def _wait(self, timeout: float) -> None:
        fds = [self.wake_r, *self.pipes]
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            if fd == self.wake_r:
                os.read(self.wake_r, 4096)
            else:
                self._read(fd)
        self.log.flush()


def main(argv: list[str]) -> int:
    directory = os.path.abspath(argv[1])
    with open(os.path.join(directory, "shim.json")) as f:
        config = json.load(f)
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    err = os.open(
        os.path.join(directory, "shim.err"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    os.dup2(err, 2)
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    Shim(directory, config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
