"""Host ports for pods in the node's network (`network: host-ports`): unique, kept, freed.

Theory of operation. A host-ports pod shares the node's network namespace, so each of its named
ports needs a number of the node's that no other pod holds. The node hands them out from one
range (`PortRange`; `edgenode up --host-ports FIRST-LAST`, 30000-32767 by default). The table
maps each pod to its ports by name. `allocate(table, pod, names, ...)` gives the pod exactly
`names`:

- a name the pod already has keeps its number (a restart, an in-place update, a daemon or node
  restart change nothing), even one outside a range the node was restarted with;
- a name it no longer asks for is freed;
- a new name gets the lowest number of the range that no pod of the table holds and that
  `bound` does not report in use on the node (a program outside edgenode listening there).

`release` frees all of a pod's ports (it was deleted, or left the node). A number the table
holds is never given to another pod. A process finds its port in `PORT_<NAME>` (`env_name`).
Pure: the shell (`sandbox.porttable`) keeps the table on disk and asks the kernel what is bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

MIN_PORT, MAX_PORT = 1, 65535


class PortRangeError(ValueError):
    """A port range was written wrong; nothing was changed."""


class PortsExhaustedError(RuntimeError):
    """No number of the range is free for a new port; nothing was allocated."""


@dataclass(frozen=True, slots=True)
class PortRange:
    """Ports `first` to `last`, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not MIN_PORT <= self.first <= self.last <= MAX_PORT:
            raise PortRangeError(
                f"expected a port range FIRST-LAST with {MIN_PORT} <= FIRST <= LAST <= "
                f"{MAX_PORT}, got {self.first}-{self.last}"
            )

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __len__(self) -> int:
        return self.last - self.first + 1


DEFAULT_RANGE = PortRange(30000, 32767)
"""Below Linux's ephemeral ports (32768-60999), so outgoing connections rarely hold one."""


def parse_range(text: str) -> PortRange:
    """`"30000-32767"` as a `PortRange`; a `PortRangeError` saying what is wrong otherwise."""
    first, dash, last = text.strip().partition("-")
    if not (dash and first.isdigit() and last.isdigit()):
        raise PortRangeError(
            f"expected a port range FIRST-LAST of two numbers, such as {DEFAULT_RANGE}, "
            f"got {text!r}"
        )
    lo, hi = int(first), int(last)
    if lo > hi:
        raise PortRangeError(
            f"expected a port range FIRST-LAST with FIRST <= LAST, got {text!r}; write {hi}-{lo}"
        )
    return PortRange(lo, hi)


def env_name(port: str) -> str:
    """The environment variable that carries port `port`'s number: ``web-ui`` -> PORT_WEB_UI."""
    return "PORT_" + port.upper().replace("-", "_")


def port_env(ports: Mapping[str, int]) -> dict[str, str]:
    """`PORT_<NAME>=<number>` for each allocated port."""
    return {env_name(name): str(number) for name, number in sorted(ports.items())}


Table = Mapping[str, Mapping[str, int]]
"""pod -> port name -> number."""


def allocate(
    table: Table,
    pod: str,
    names: Iterable[str],
    port_range: PortRange,
    *,
    bound: Callable[[int], bool],
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """The new table and `pod`'s ports by name (see the module's doc). Raises
    `PortsExhaustedError` when a new name finds no free number; the table is then unchanged."""
    had = dict(table.get(pod, {}))
    wanted = sorted(set(names))
    mine = {name: had[name] for name in wanted if name in had}
    held = {n for p, ports in table.items() if p != pod for n in ports.values()}
    held |= set(mine.values())
    in_use: set[int] = set()
    candidates = iter(range(port_range.first, port_range.last + 1))
    for name in (n for n in wanted if n not in mine):
        for number in candidates:
            if number in held:
                continue
            if bound(number):
                in_use.add(number)
                continue
            mine[name] = number
            held.add(number)
            break
        else:
            pods = sum(port_range.first <= n <= port_range.last for n in held)
            raise PortsExhaustedError(
                f"no host port left for pod {pod} port {name}: all {len(port_range)} ports "
                f"of the node's range {port_range} are taken ({pods} by pods of this node, "
                f"{len(in_use)} by other programs listening on the node); nothing was "
                "allocated. Delete pods that use host ports, or restart the node with a wider "
                "range (edgenode up --host-ports FIRST-LAST)"
            )
    new = {p: dict(ports) for p, ports in table.items() if p != pod}
    if mine:
        new[pod] = dict(sorted(mine.items()))
    return new, dict(sorted(mine.items()))


def release(table: Table, pod: str) -> dict[str, dict[str, int]]:
    """The table without `pod`'s ports."""
    return {p: dict(ports) for p, ports in table.items() if p != pod}
