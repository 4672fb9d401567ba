"""gossip.netlink: the route netlink sockets load without the rest of pyroute2, and the rest
is still whole for code that asks for it. Each case runs in a fresh interpreter, since what a
process has imported is the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import require


def run_python(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_daemons_netlink_modules_load_none_of_the_other_families() -> None:
    got = run_python(
        """
        import json, sys
        import gossip.discovery, edgenode.network.podlinks, edgenode.network.peerroutes
        heavy = ("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.conntrack", "pyroute2.plan9",
                 "pyroute2.netlink.nl80211", "pyroute2.netlink.generic.wireguard", "sqlite3")
        print(json.dumps({
            "heavy": sorted(m for m in sys.modules if m.startswith(heavy)),
            "pyroute2": sum(m.startswith("pyroute2") for m in sys.modules),
        }))
        """
    )
    assert got["heavy"] == []
    assert isinstance(got["pyroute2"], int) and 0 < got["pyroute2"] < 120


def test_the_route_sockets_work_from_the_held_back_package() -> None:
    require(os.geteuid() == 0, "asks the kernel to delete a link: needs root")
    got = run_python(
        """
        import asyncio, json
        from gossip.netlink import AsyncIPRoute, IPRoute, NetlinkError

        with IPRoute() as ipr:
            names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
            try:
                ipr.link("del", ifname="no-such-link0")
                refused = None
            except NetlinkError as exc:
                refused = exc.code

        async def neighbours():
            async with AsyncIPRoute() as ipr:
                return [n async for n in await ipr.get_neighbours()]

        print(json.dumps({"names": names, "refused": refused,
                          "neighbours": len(asyncio.run(neighbours()))}))
        """
    )
    assert "lo" in got["names"]  # type: ignore[operator]
    assert got["refused"] == 19  # ENODEV: NetlinkError is the class pyroute2 raises


@pytest.mark.parametrize(
    "ask",
    [
        "from pyroute2 import NDB, IPRoute as Whole",
        "import pyroute2; pyroute2.NetNS",
        "import pyroute2.ndb.main",
    ],
)
def test_the_rest_of_pyroute2_is_whole_when_a_process_asks_for_it(ask: str) -> None:
    got = run_python(
        f"""
        import json, sys
        from gossip.netlink import IPRoute
        {ask}
        import pyroute2
        print(json.dumps({{"version": pyroute2.__version__,
                           "same_class": pyroute2.IPRoute is IPRoute,
                           "ndb": "pyroute2.ndb.main" in sys.modules}}))
        """
    )
    assert got["same_class"] is True and got["ndb"] is True
    assert isinstance(got["version"], str) and got["version"][0].isdigit()


def test_a_package_imported_already_is_left_as_it_is() -> None:
    got = run_python(
        """
        import json, sys
        import pyroute2
        whole = sys.modules["pyroute2"]
        from gossip.netlink import IPRoute, hold_back
        hold_back("pyroute2")
        print(json.dumps({"same": sys.modules["pyroute2"] is whole,
                          "ipr": pyroute2.IPRoute is IPRoute}))
        """
    )
    assert got == {"same": True, "ipr": True}
