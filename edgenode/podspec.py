"""A Pod's spec in the sandbox's terms: `pod_def(name, spec)` builds the `PodDef` a node runs,
and `probe_specs(name, spec)` the readiness checks the node runs beside it.

Theory of operation. The object model speaks YAML (`securityContext.runAsUser`, `memory: 64Mi`,
`volumes` + `volumeMounts`); the sandbox takes plain values (`user=(uid, gid)`, bytes,
millicores, `(host path, container path, read-only)` triples, relaxation names). This module
is the one translation between them, so the daemon never reads YAML field names and the
sandbox never sees a quantity string. Pure: no I/O, no clocks.

The translation trusts nothing it is handed: a spec that a manifest would have been refused
for (an unacknowledged relaxation, a mount of an undeclared volume) raises `PodSpecError`
instead of becoming a sandbox definition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgenode._probe import Check, ExecProbe, HttpProbe, ProbeSpec, TcpProbe
from edgenode.objects import (
    Container,
    ObjectError,
    Pod,
    PodSpec,
    container_relaxations,
    cpu_millis,
    duration_seconds,
    host_port_names,
    memory_bytes,
    parse_document,
    pod_relaxations,
    pod_spec_problems,
    port_number,
)
from sandbox._spec import ContainerDef, PodDef


class PodSpecError(ObjectError, ValueError):
    """A pod spec was not translated because it has problems; nothing was run or changed."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"pod {name} was not translated for the sandbox, its spec has problems "
            f"(validate it with parse_document first); nothing was run:\n{lines}"
        )


def _user(container: Container) -> tuple[int, int] | None:
    sc = container.security_context
    if sc.run_as_root or sc.run_as_user == 0:
        return (0, 0)
    if sc.run_as_user is None:
        return None
    gid = sc.run_as_group if sc.run_as_group is not None else sc.run_as_user
    return (sc.run_as_user, gid)


def _host_paths(spec: PodSpec, container: Container) -> tuple[tuple[str, str, bool], ...]:
    mounts = []
    for vname, mount in container.volume_mounts.items():
        host = spec.volumes[vname].host_path
        # A mount may make a writable volume read-only, never the other way round.
        mounts.append((host.path, mount.mount_path, host.read_only or bool(mount.read_only)))
    # A parent directory is mounted before the paths under it, or it would hide them.
    return tuple(sorted(mounts, key=lambda m: m[1].rstrip("/").split("/")))


def _check(name: str, spec: PodSpec) -> None:
    problems = pod_spec_problems(spec)
    if problems:
        raise PodSpecError(name, problems)


def _container_def(spec: PodSpec, name: str) -> ContainerDef:
    container = spec.containers[name]
    resources = container.resources
    return ContainerDef(
        image=container.image,
        command=tuple(container.command) if container.command is not None else None,
        args=tuple(container.args) if container.args is not None else None,
        env=dict(container.env),
        working_dir=container.working_dir,
        user=_user(container),
        memory_bytes=memory_bytes(resources.memory) if resources.memory is not None else None,
        cpu_millis=cpu_millis(resources.cpu) if resources.cpu is not None else None,
        relaxations=container_relaxations(spec, name),
        capabilities=tuple(container.security_context.capabilities.add),
        host_paths=_host_paths(spec, container),
    )


def pod_def(name: str, spec: PodSpec) -> PodDef:
    """The sandbox's definition of pod `name` (its `metadata.name`, a DNS label) from its spec.

    Raises `PodSpecError` when the spec has problems `parse_document` would have refused it
    for; a spec that came through `parse_document` (or `load_manifests`) never does.
    """
    _check(name, spec)
    return PodDef(
        name=name,
        containers={cname: _container_def(spec, cname) for cname in spec.containers},
        restart_policy=spec.restart_policy,
        grace_s=float(spec.termination_grace_period_seconds),
        runtime_class=spec.runtime_class,
        relaxations=pod_relaxations(spec),
        host_ports=host_port_names(spec),
    )


def _probe_spec(container: Container, *, host_ports: bool) -> ProbeSpec | None:
    probe = container.readiness
    if probe is None:
        return None
    check: Check
    if probe.exec is not None:
        check = ExecProbe(tuple(probe.exec.command))
    else:
        target = probe.http or probe.tcp
        assert target is not None  # exactly one check: pod_spec_problems says so
        # A named host port is numbered by the node: the prober looks its number up.
        port = target.port if host_ports else port_number(container, target.port)
        assert port is not None  # a named port exists: pod_spec_problems says so
        check = HttpProbe(probe.http.path, port) if probe.http is not None else TcpProbe(port)
    return ProbeSpec(
        check=check,
        initial_delay_s=float(duration_seconds(probe.initial_delay)),
        period_s=float(duration_seconds(probe.period)),
        timeout_s=float(duration_seconds(probe.timeout)),
        failure_threshold=probe.failure_threshold,
        success_threshold=probe.success_threshold,
    )


def probe_specs(name: str, spec: PodSpec) -> dict[str, ProbeSpec]:
    """The readiness checks of pod `name`, by container, in plain values (seconds, port
    numbers); a container without `readiness` has none. Raises `PodSpecError` like
    `pod_def`."""
    _check(name, spec)
    host_ports = spec.network == "host-ports"
    specs = {
        c: _probe_spec(container, host_ports=host_ports) for c, container in spec.containers.items()
    }
    return {c: s for c, s in specs.items() if s is not None}


def stored_pod(doc: Mapping[str, Any]) -> Pod:
    """The Pod model of a stored document: its revision (the store's) and its assignment (the
    placement's) are not part of what a user writes, so they are left out."""
    meta = {k: v for k, v in doc.get("metadata", {}).items() if k != "revision"}
    body = {k: v for k, v in doc.items() if k != "assignment"}
    model = parse_document({**body, "metadata": meta}, source="store", allow_status=True).model
    assert isinstance(model, Pod)
    return model
