"""The per-container monitor (`monitor.c`), compiled once per source version and cached.

One monitor process runs per container (see the C file's header for what it does). It is
built from source with the node's C compiler the first time a node needs it, into a cache
named after the source's digest, so an upgrade of edgenode builds the new one and two
versions never mix. Building takes about a second; the project's Makefile installs gcc.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "monitor.c"
CACHE_DIR = Path(os.environ.get("EDGENODE_CACHE_DIR", "/var/cache/edgenode"))
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")


class MonitorBuildError(RuntimeError):
    pass


def binary(cache_dir: Path = CACHE_DIR) -> str:
    """Path of the compiled monitor for this source, building it if needed."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    target = cache_dir / f"edgenode-monitor-{digest}"
    if os.access(target, os.X_OK):
        return str(target)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise MonitorBuildError(
            "no C compiler on this node to build the container monitor (sandbox/monitor.c): "
            "apt-get install gcc libc6-dev"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".edgenode-monitor-", dir=cache_dir)
    os.close(fd)
    try:
        out = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            raise MonitorBuildError(
                f"building the container monitor failed ({compiler}): {out.stderr.strip()}"
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: two nodes' builds race harmlessly
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(target)
