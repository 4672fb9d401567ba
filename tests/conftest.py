"""Shared test helpers.

A test that needs something the machine may lack (root, runc, namespaces) calls `require(...)`:
outside CI it is skipped with the reason; in CI (CI=true) the lack is a failure, because CI
machines are expected to have everything.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) the calling test unless `condition` holds."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to run this test: {reason}")
    pytest.skip(reason)


def run_in_processes(target: Callable[..., None], argsets: Sequence[tuple[Any, ...]]) -> None:
    """Run `target` with each of `argsets` in a process of its own (spawned), all at once;
    each must exit 0 within a minute."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in argsets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
