"""A container's readiness check: `spec.containers.C.readiness`.

Theory of operation. A container that declares `readiness` is ready only while its check
passes; one without is ready once it runs. The check is exactly one of:

    exec: {command: [test, -f, /tmp/ready]}   run in the container, as its user; exit 0 passes
    http: {path: /healthz, port: http}         GET http://localhost:PORT/PATH; 2xx or 3xx passes
    tcp:  {port: 8080}                         a TCP connection to localhost:PORT is accepted

`port` is a number or the name of one of the container's own `ports` (a TCP one). The node
runs the check `initialDelay` after the container starts, then every `period`; a check that
has not answered within `timeout` fails. `successThreshold` passes in a row make a container
ready, `failureThreshold` failures in a row make a ready one not ready (docs/objects.md).

The stored document keeps every setting with its value in force, defaults filled in. The rules
that span fields (exactly one check, a named port that exists and is TCP, no http or tcp check
in a gVisor pod, whose network the node cannot reach) are `readiness_issues`. Pure.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, ClassVar, Final

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from edgenode.objects._duration import DURATION_EXAMPLES, duration_within
from edgenode.objects._fields import DNS_LABEL_RE, Expect, StrictModel, suggest
from edgenode.objects._schema import Loc
from edgenode.objects._translate import Issue, nothing_applied

if TYPE_CHECKING:
    from edgenode.objects._pod import Container, PodSpec

DEFAULT_INITIAL_DELAY: Final = "0s"
DEFAULT_PERIOD: Final = "10s"
DEFAULT_TIMEOUT: Final = "1s"
DEFAULT_FAILURE_THRESHOLD: Final = 3
DEFAULT_SUCCESS_THRESHOLD: Final = 1
MAX_PROBE_INTERVAL_S: Final = 3600
"""The longest initialDelay, period and timeout (1h)."""
MAX_THRESHOLD: Final = 100
MAX_PATH: Final = 1024
CHECKS: Final = ("exec", "http", "tcp")

_PATH_RE = re.compile(r"^/[\x21-\x7e]*$")  # printable ASCII, no spaces: it goes on a request line


def _port_ref(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            return value
        reason = f"{value} is not a port number (1 to 65535)"
    elif isinstance(value, str) and value.isdigit():
        reason = f'remove the quotes ("{value}" is text) so YAML reads a port number'
    elif isinstance(value, str) and DNS_LABEL_RE.match(value) and len(value) <= 63:
        return value
    else:
        reason = "write a port number such as 8080, or a port's name such as http"
    raise PydanticCustomError("port_ref", "{reason}", {"reason": reason})


def _http_path(value: str) -> str:
    if len(value) > MAX_PATH or not _PATH_RE.match(value):
        raise PydanticCustomError("http_path", "not a URL path", {"value": value})
    return value


def _interval(value: object) -> str:
    return duration_within(value, low_s=1, high_s=MAX_PROBE_INTERVAL_S, field="period or timeout")


def _delay(value: object) -> str:
    return duration_within(value, low_s=0, high_s=MAX_PROBE_INTERVAL_S, field="initialDelay")


PortRef = Annotated[
    int | str,
    BeforeValidator(_port_ref),
    Expect("a port number from 1 to 65535, or the name of one of the container's ports"),
]
HttpPath = Annotated[
    str,
    AfterValidator(_http_path),
    Expect(f"a URL path starting with / without spaces, at most {MAX_PATH} characters"),
]
ProbeInterval = Annotated[
    str,
    BeforeValidator(_interval),
    Expect(f"a duration from 1s to 1h, such as {DURATION_EXAMPLES}"),
]
ProbeDelay = Annotated[
    str, BeforeValidator(_delay), Expect(f"a duration from 0s to 1h, such as {DURATION_EXAMPLES}")
]
Threshold = Annotated[int, Field(ge=1, le=MAX_THRESHOLD)]


class ExecCheck(StrictModel):
    """Run `command` in the container (its user, its sandbox); exit code 0 passes."""

    noun: ClassVar[str] = "an exec check"

    command: Annotated[
        list[str],
        Field(min_length=1),
        Expect("a non-empty list of strings, such as [test, -f, /tmp/ready]"),
    ]


class HttpCheck(StrictModel):
    """GET `path` from localhost:`port` in the pod's network; a 2xx or 3xx answer passes."""

    noun: ClassVar[str] = "an http check"

    path: HttpPath = "/"
    port: PortRef


class TcpCheck(StrictModel):
    """Connect to localhost:`port` in the pod's network; an accepted connection passes."""

    noun: ClassVar[str] = "a tcp check"

    port: PortRef


class Readiness(StrictModel):
    """When a container counts as ready (see the module's doc)."""

    noun: ClassVar[str] = "a readiness check"

    exec: ExecCheck | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    initial_delay: ProbeDelay = Field(default=DEFAULT_INITIAL_DELAY, alias="initialDelay")
    """After the container starts, before the first check (0s to 1h)."""
    period: ProbeInterval = DEFAULT_PERIOD
    """From the start of one check to the next (1s to 1h): shorter notices sooner, costs more."""
    timeout: ProbeInterval = DEFAULT_TIMEOUT
    """A check that has not answered by then fails (1s to 1h)."""
    failure_threshold: Threshold = Field(
        default=DEFAULT_FAILURE_THRESHOLD, alias="failureThreshold"
    )
    """Failures in a row that make a ready container not ready (1 to 100)."""
    success_threshold: Threshold = Field(
        default=DEFAULT_SUCCESS_THRESHOLD, alias="successThreshold"
    )
    """Passes in a row that make a not-ready container ready (1 to 100)."""

    def checks(self) -> list[str]:
        """The checks it names (a valid one names exactly one)."""
        return [name for name in CHECKS if getattr(self, name) is not None]


def port_number(container: Container, port: int | str) -> int | None:
    """The number `port` stands for in `container` (None: no port of that name, or a port
    without `containerPort`, which the node numbers with `network: host-ports`)."""
    if isinstance(port, int):
        return port
    named = container.ports.get(port)
    return named.container_port if named is not None else None


def _port_issues(spec: PodSpec, cname: str, check: str, port: int | str, at: Loc) -> list[Issue]:
    container = spec.containers[cname]
    where = (*at, check, "port")
    if isinstance(port, int):
        return []
    named = container.ports.get(port)
    if named is None:
        names = sorted(container.ports)
        better = suggest(port, names)
        expected = "a port number, or the name of one of this container's ports"
        expected += f" ({', '.join(names)})" if names else " (it declares none)"
        advice = f"Write {better!r}" if better else "Write the port's number"
        return [
            Issue(
                where,
                expected,
                repr(port),
                f"{advice}, or declare it under spec.containers.{cname}.ports. "
                + nothing_applied(),
            )
        ]
    if named.protocol != "tcp":
        return [
            Issue(
                where,
                f"a TCP port (a {check} check connects over TCP)",
                f"{port!r}, a {named.protocol} port",
                "Name a TCP port, or use an exec check. " + nothing_applied(),
            )
        ]
    return []


def readiness_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    """The problems of every container's `readiness` of the pod spec at `at`."""
    issues: list[Issue] = []
    for cname, container in spec.containers.items():
        probe = container.readiness
        if probe is None:
            continue
        where = (*at, "containers", cname, "readiness")
        named = probe.checks()
        if len(named) != 1:
            issues.append(
                Issue(
                    where,
                    "exactly one of exec, http or tcp",
                    " and ".join(named) if named else "none",
                    "Say how to check the container, e.g. http: {path: /healthz, port: http}; "
                    "a container without readiness is ready once it runs. " + nothing_applied(),
                )
            )
            continue
        check = getattr(probe, named[0])
        if isinstance(check, HttpCheck | TcpCheck):
            issues += _port_issues(spec, cname, named[0], check.port, where)
            if spec.runtime_class == "gvisor":
                issues.append(
                    Issue(
                        (*where, named[0]),
                        "an exec check in a gVisor pod",
                        f"a {named[0]} check",
                        "A gVisor pod's network is the sandbox's own loopback, which the node "
                        "cannot reach; use exec (e.g. a command that connects from inside). "
                        + nothing_applied(),
                    )
                )
    return issues
