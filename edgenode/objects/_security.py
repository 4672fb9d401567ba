"""A pod's security settings: which relaxations of the sandbox they ask for, and their rules.

Theory of operation. The sandbox is locked down by default (DESIGN.md §7); a pod spec weakens
it only through named settings, each of which asks for one *relaxation* (`sandbox._relax`):

    spec.hostNetwork: true                                 host-network       (pod-wide)
    spec.network: host-ports                               host-network       (pod-wide)
    spec.userNamespace: false                              no-user-namespace  (pod-wide)
    spec.volumes.NAME.hostPath                             host-path
    spec.containers.C.securityContext.runAsRoot: true      run-as-root
      ... .runAsUser: 0                                    run-as-root
      ... .privileged: true                                privileged
      ... .capabilities.add: [...]                         add-capability
      ... .seccomp: unconfined                             unconfined-seccomp
      ... .readOnlyRootFilesystem: false                   writable-root

`asks` lists every such setting with its place; `relaxations` keeps the first place of each
relaxation (`object_relaxations` does so for every pod spec of an object, for the CLI's
`--confirm-insecure`). A manifest is valid only when the spec's `acknowledge` list names
exactly the relaxations it asks for: `security_issues` turns each `sandbox._relax.check`
problem into an `Issue` at the setting's place, and adds the rules that tie the settings
together (volume mounts name declared volumes, ids agree with `runAsRoot`, ...). A relaxation
asked in several places needs one acknowledgement; its refusal names every place. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenode.objects._deployment import PinnedDeployment
from edgenode.objects._fields import suggest
from edgenode.objects._kinds import ObjectModel
from edgenode.objects._pod import Container, Pod, PodSpec
from edgenode.objects._schema import Loc
from edgenode.objects._translate import Issue, nothing_applied, path_text, render_value
from sandbox._ids import RANGE_SIZE
from sandbox._relax import check

POD_WIDE: frozenset[str] = frozenset({"host-network", "no-user-namespace"})
"""Relaxations that apply to the whole pod; the others apply to single containers."""


@dataclass(frozen=True)
class Ask:
    """One setting that asks for a relaxation: which, where (under the pod spec), as shown."""

    relaxation: str
    loc: Loc
    shown: str


def _container_asks(name: str, container: Container) -> list[Ask]:
    at: Loc = ("containers", name, "securityContext")
    sc = container.security_context
    asks: list[Ask] = []
    if sc.run_as_root:
        asks.append(Ask("run-as-root", (*at, "runAsRoot"), "true"))
    elif sc.run_as_root is None and sc.run_as_user == 0:
        asks.append(Ask("run-as-root", (*at, "runAsUser"), "0"))
    if sc.capabilities.add:
        shown = ", ".join(sc.capabilities.add)
        asks.append(Ask("add-capability", (*at, "capabilities", "add"), shown))
    if sc.privileged:
        asks.append(Ask("privileged", (*at, "privileged"), "true"))
    if sc.seccomp == "unconfined":
        asks.append(Ask("unconfined-seccomp", (*at, "seccomp"), "'unconfined'"))
    if not sc.read_only_root_filesystem:
        asks.append(Ask("writable-root", (*at, "readOnlyRootFilesystem"), "false"))
    return asks


def asks(spec: PodSpec) -> list[Ask]:
    """Every setting of `spec` that relaxes the sandbox: pod-wide ones, volumes, containers."""
    found: list[Ask] = []
    if spec.host_network:
        found.append(Ask("host-network", ("hostNetwork",), "true"))
    if spec.network == "host-ports":
        found.append(Ask("host-network", ("network",), "'host-ports'"))
    if not spec.user_namespace:
        found.append(Ask("no-user-namespace", ("userNamespace",), "false"))
    for vname, volume in spec.volumes.items():
        found.append(Ask("host-path", ("volumes", vname, "hostPath"), repr(volume.host_path.path)))
    for cname, container in spec.containers.items():
        found.extend(_container_asks(cname, container))
    return found


def _joined(at: str, loc: Loc) -> str:
    inner = path_text(loc)
    return f"{at}.{inner}" if at else inner


def relaxations(spec: PodSpec, *, at: str = "spec") -> dict[str, str]:
    """Each relaxation `spec` asks for, with the path of the first setting that asks for it.

    `at` is the path of the spec in its object (`spec.versions.v1.template.spec` in a
    PinnedDeployment). The keys are what `sandbox._relax.added` compares before and after a
    change, to ask for `--confirm-insecure`.
    """
    found: dict[str, str] = {}
    for ask in asks(spec):
        found.setdefault(ask.relaxation, _joined(at, ask.loc))
    return found


def pod_specs(model: ObjectModel) -> list[tuple[Loc, PodSpec]]:
    """Every pod spec of an object with its path: a Pod's, a PinnedDeployment's templates'."""
    if isinstance(model, Pod):
        return [(("spec",), model.spec)]
    if isinstance(model, PinnedDeployment):
        return [
            (("spec", "versions", vname, "template", "spec"), version.template.spec)
            for vname, version in model.spec.versions.items()
        ]
    return []


def object_relaxations(model: ObjectModel) -> dict[str, str]:
    """`relaxations` of every pod spec of an object (a Pod, or each template of a
    PinnedDeployment), first place first; empty for a Node."""
    found: dict[str, str] = {}
    for at, spec in pod_specs(model):
        for name, where in relaxations(spec, at=path_text(at)).items():
            found.setdefault(name, where)
    return found


def pod_relaxations(spec: PodSpec) -> frozenset[str]:
    """The pod-wide relaxations `spec` asks for (`host-network`, `no-user-namespace`)."""
    return frozenset(a.relaxation for a in asks(spec) if a.relaxation in POD_WIDE)


def container_relaxations(spec: PodSpec, name: str) -> frozenset[str]:
    """The relaxations that apply to container `name`: its own settings, and `host-path` when
    it mounts a volume of the node."""
    container = spec.containers[name]
    found = {a.relaxation for a in _container_asks(name, container)}
    if any(v in spec.volumes for v in container.volume_mounts):
        found.add("host-path")
    return frozenset(found)


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _acknowledgement_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    where = path_text(at)
    places: dict[str, list[Ask]] = {}
    for ask in asks(spec):
        places.setdefault(ask.relaxation, []).append(ask)
    first = {name: _joined(where, found[0].loc) for name, found in places.items()}
    issues: list[Issue] = []
    for problem in check(first, spec.acknowledge):
        name = problem.relaxation
        message = problem.message
        if at != ("spec",):
            message = message.replace("the pod's spec", where)
        hint = _sentence(message)
        if problem.where == "acknowledge" or name not in places:
            issues.append(
                Issue(
                    (*at, "acknowledge"),
                    "acknowledgements only of relaxations this spec asks for",
                    repr(name),
                    f"{hint} {nothing_applied('fix the spec')}",
                )
            )
            continue
        ask, *more = places[name]
        if more:
            also = ", ".join(_joined(where, a.loc) for a in more)
            hint += f" The same acknowledgement covers {also}."
        issues.append(
            Issue(
                (*at, *ask.loc),
                f"an acknowledgement of this setting (`acknowledge: [{name}]` in {where})",
                f"{ask.shown}, not acknowledged",
                f"{hint} {nothing_applied('fix the spec')}",
            )
        )
    return issues


def _user_issues(name: str, container: Container, spec: PodSpec, at: Loc) -> list[Issue]:
    sc = container.security_context
    here: Loc = (*at, "containers", name, "securityContext")
    issues: list[Issue] = []

    def refuse(field: str, value: int, expected: str, hint: str) -> None:
        issues.append(
            Issue((*here, field), expected, render_value(value), f"{hint} {nothing_applied()}")
        )

    uid, gid = sc.run_as_user, sc.run_as_group
    if sc.run_as_root is False and uid == 0:
        refuse(
            "runAsUser",
            uid,
            "a user id other than 0 (runAsRoot is false)",
            "Pick a non-root user id, or remove runAsRoot: false to run as root.",
        )
    elif sc.run_as_root or uid == 0:
        for field, value in (("runAsUser", uid), ("runAsGroup", gid)):
            if value not in (None, 0):
                refuse(
                    field,
                    value,
                    "0 or no value (root runs as user 0 and group 0)",
                    f"Remove {field}, or runAsRoot to run as a non-root user.",
                )
    elif gid is not None and uid is None:
        refuse(
            "runAsGroup",
            gid,
            "runAsGroup together with runAsUser",
            "Add runAsUser: the sandbox sets a container's user and group together.",
        )
    elif gid == 0:
        refuse(
            "runAsGroup",
            gid,
            "a group id other than 0 for a non-root user",
            "Group 0 is root's group: pick another group, or run as root with runAsRoot: true.",
        )
    if spec.user_namespace:
        for field, value in (("runAsUser", uid), ("runAsGroup", gid)):
            if value is not None and value >= RANGE_SIZE:
                refuse(
                    field,
                    value,
                    f"an integer from 0 to {RANGE_SIZE - 1} (the pod's user namespace maps "
                    f"{RANGE_SIZE} ids)",
                    "Pick a smaller id; ids above that exist only without a user namespace "
                    "(userNamespace: false).",
                )
    return issues


def _mount_issues(name: str, container: Container, spec: PodSpec, at: Loc) -> list[Issue]:
    here: Loc = (*at, "containers", name, "volumeMounts")
    where = path_text(at)
    issues: list[Issue] = []
    seen: dict[str, str] = {}
    for vname, mount in container.volume_mounts.items():
        volume = spec.volumes.get(vname)
        if volume is None:
            declared = list(spec.volumes)
            better = suggest(vname, declared)
            advice = f"Did you mean {better!r}? " if better else ""
            issues.append(
                Issue(
                    (*here, vname),
                    f"the name of a volume in {where}.volumes"
                    + (f" ({', '.join(declared)})" if declared else " (it has none)"),
                    repr(vname),
                    f"{advice}Declare the volume under {where}.volumes, or fix the name. "
                    + nothing_applied("fix the spec"),
                )
            )
        elif mount.read_only is False and volume.host_path.read_only:
            issues.append(
                Issue(
                    (*here, vname, "readOnly"),
                    f"true or no value: volume {vname} is read-only "
                    f"({where}.volumes.{vname}.hostPath.readOnly)",
                    "false",
                    f"Set readOnly: false on the volume's hostPath to let containers write to "
                    f"it, or remove readOnly here. {nothing_applied()}",
                )
            )
        path = mount.mount_path.rstrip("/") or "/"
        if path in seen:
            issues.append(
                Issue(
                    (*here, vname, "mountPath"),
                    "a mount path no other volume of this container uses",
                    repr(mount.mount_path),
                    f"Volume {seen[path]} is already mounted there; pick another path. "
                    + nothing_applied(),
                )
            )
        else:
            seen[path] = vname
    return issues


def security_issues(spec: PodSpec, at: Loc) -> list[Issue]:
    """Problems with the security settings of the pod spec at `at`; empty when consistent."""
    issues: list[Issue] = []
    for name, container in spec.containers.items():
        issues.extend(_user_issues(name, container, spec, at))
        issues.extend(_mount_issues(name, container, spec, at))
    issues.extend(_acknowledgement_issues(spec, at))
    return issues
