"""Named network namespaces for pods, made without forking.

A pod's network namespace is a bind mount at ``/run/netns/<name>`` (where ``ip netns`` and
pyroute2 look for them), so it outlives every process in it. pyroute2's ``netns.create``
makes one by forking the calling Python process, which costs about 20 ms for a daemon's size
and is unsafe in a process with threads (the child inherits locks held by other threads and
the parent's signal handlers). Here a short-lived thread unshares its own network namespace
(a namespace is per thread, so nothing else in the process moves), bind-mounts it by name and
brings its loopback up with one ioctl; then the thread ends. About a millisecond.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import threading

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


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
