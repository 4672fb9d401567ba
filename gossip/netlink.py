"""pyroute2's route netlink sockets, without importing the rest of pyroute2.

`import pyroute2`, and so any `from pyroute2 import IPRoute`, runs the package's ``__init__``,
which imports every family pyroute2 supports: NDB with sqlite3, IPDB, conntrack, IPVS, nl80211,
WireGuard, plan9, unittest.mock. That is 163 modules and 13 MB of an idle daemon's resident
memory, for a daemon that uses the route family alone: `IPRoute`, `AsyncIPRoute` and
`NetlinkError`, which live in modules of their own.

Importing a submodule needs its package in `sys.modules`, and Python runs the package's
``__init__`` to put it there. Here the package goes there first with its ``__init__`` not run
(a *held-back* package): submodules import from it as from any package. The first look-up of
a name it lacks that is not a submodule (`from pyroute2 import NDB`, `pyroute2.__version__`,
anywhere in the process) runs the ``__init__`` then, on the same module object, so code that
wants the rest of pyroute2 finds it whole. `tests/test_netlink.py` pins both halves.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any


def hold_back(name: str) -> None:
    """Put package `name` in `sys.modules` without running its ``__init__`` until a name it
    lacks is looked up. Nothing happens if it is imported already or is not a plain package."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()  # pods' links are made from threads: one of them runs __init__

    def look_up(attr: str) -> Any:
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")  # `from pkg import submodule`
        with lock:
            if package.__dict__.pop("__getattr__", None) is not None:
                loader.exec_module(package)
        return getattr(package, attr)

    package.__dict__["__getattr__"] = look_up
    sys.modules[name] = package


hold_back("pyroute2")

from pyroute2.iproute.linux import AsyncIPRoute, IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

__all__ = ["AsyncIPRoute", "IPRoute", "NetlinkError", "hold_back"]
