"""Named network namespaces for pods, made without forking.

A pod's network namespace is a bind mount at ``/run/netns/<name>`` (where ``ip netns`` and
pyroute2 look for them), so it outlives every process in it. pyroute2's ``netns.create``
makes one by forking the calling Python process, which costs about 20 ms for a daemon's size
and is unsafe in a process with threads (the child inherits locks held by other threads and
the parent's signal handlers). Here a short-lived thread unshares its own network namespace
(a namespace is per thread, so nothing else in the process moves), bind-mounts it by name and
brings its loopback up with one ioctl; then the thread ends. About a millisecond.

Work inside a pod's namespace (a readiness check connecting to the pod's localhost) is done the
same way: `submit_in` runs a function in a new thread that joins the namespace (``setns``) and
ends with the function, so no thread of the process ever stays in a pod's namespace, and no
pool thread is borrowed. A socket belongs to the namespace it was made in for good, whichever
thread uses it next: the function may just make sockets and hand them back.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class NetnsError(OSError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"{what}: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def create(name: str) -> str:
    """Make network namespace `name` (loopback up) and return its path; an existing one is
    kept as it is."""
    target = path(name)
    if os.path.ismount(target):
        return target
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            _check(_libc.unshare(CLONE_NEWNET), f"unshare a network namespace for {name}")
            fd = os.open(target, os.O_RDONLY | os.O_CREAT, 0o444)
            os.close(fd)
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
            _check(
                _libc.mount(source.encode(), target.encode(), None, MS_BIND, None),
                f"bind-mount network namespace {name} at {target}",
            )
            _loopback_up()
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=work, name=f"netns-{name}")
    thread.start()
    thread.join()
    if failure:
        remove(name)
        raise failure[0]
    return target


def remove(name: str) -> None:
    """Unmount and remove network namespace `name` (it lives on while a process is in it)."""
    target = path(name)
    if os.path.ismount(target):
        _check(_libc.umount2(target.encode(), MNT_DETACH), f"unmount {target}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)


def submit_in(ns_path: str, fn: Callable[[], T]) -> Future[T]:
    """Run `fn` in a new thread that first joins the network namespace at `ns_path`; the
    thread ends with `fn`. The future holds what `fn` returned or raised (an `OSError` if
    the namespace could not be joined, say it is gone). It does not block the caller."""
    future: Future[T] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check(_libc.setns(fd, CLONE_NEWNET), f"enter network namespace {ns_path}")
            finally:
                os.close(fd)
            future.set_result(fn())
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    threading.Thread(target=work, name=f"netns-in-{os.path.basename(ns_path)}", daemon=True).start()
    return future
