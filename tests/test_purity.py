"""Core modules stay pure: no I/O, no clocks, no asyncio, no module-level random (STYLE.md §1).

A core module is any private module (`_*.py`) of the four packages. Their imports are read from
the source, so a violation fails here before it can creep in. A core may import other cores of
ours, never a shell module or a package root (which re-exports the shells).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    *("asyncio", "socket", "selectors", "subprocess", "threading", "lmdb"),
    *("time", "datetime", "os", "sys", "io", "pathlib", "shutil"),
}
OURS = ("edgenode", "gossip", "store", "sandbox")
CORES = sorted(
    p
    for pkg in ("edgenode", "gossip", "store", "sandbox")
    for p in (ROOT / pkg).rglob("_*.py")
    if p.name not in {"__init__.py", "__main__.py"}
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "random":
                names.update(f"random.{a.name}" for a in node.names)
    return names


def test_there_are_core_modules_to_check() -> None:
    assert len(CORES) >= 8


@pytest.mark.parametrize("path", CORES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_io_clock_or_global_random(path: Path) -> None:
    bad = {n for n in imports_of(path) if n.split(".")[0] in FORBIDDEN}
    bad |= {n for n in imports_of(path) if n.startswith("random.") and n != "random.Random"}
    # Our own shell modules (and package roots, which re-export them) do I/O too.
    bad |= {
        n
        for n in imports_of(path)
        if n.split(".")[0] in OURS and not n.split(".")[-1].startswith("_")
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: move that to the shell"
