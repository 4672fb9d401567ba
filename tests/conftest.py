"""Shared test helpers.

A test that needs something the machine may lack (root, runc, namespaces) calls `require(...)`:
outside CI it is skipped with the reason; in CI (CI=true) the lack is a failure, because CI
machines are expected to have everything.
"""

from __future__ import annotations

import os

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) the calling test unless `condition` holds."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to run this test: {reason}")
    pytest.skip(reason)
