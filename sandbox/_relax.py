"""Relaxations: every way to weaken a pod's sandbox, each needing two explicit confirmations.

Theory of operation. A pod's spec may ask for something less safe than the defaults (root
inside, an added capability, a host path, the host's network, privileged mode, no seccomp, a
writable root filesystem, no user namespace). Asking is not enough: the manifest must also
list the matching *acknowledgement* (``acknowledge: [run-as-root]``), so an insecure setting
never slips in by a typo or a copied snippet. `check` returns one `Problem` per relaxation that
lacks its acknowledgement (and per acknowledgement that matches nothing, which is usually a
mistake), each naming the setting and the exact line to add. The CLI adds the third gate
(``--confirm-insecure=NAME`` when a change *adds* a relaxation), using `added`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

RELAXATIONS: Mapping[str, str] = {
    "run-as-root": "runs the container's process as root (uid 0) inside its user namespace",
    "add-capability": "gives the container Linux capabilities",
    "host-path": "mounts a path of the node into the container",
    "host-network": "puts the pod in the node's network namespace",
    "privileged": "gives every capability and turns off seccomp and masked paths",
    "unconfined-seccomp": "turns off the seccomp syscall filter",
    "writable-root": "makes the container's root filesystem writable",
    "no-user-namespace": "runs without a user namespace: ids inside are the node's ids",
}
"""Each relaxation by its acknowledgement name, with what it does (shown in refusals)."""


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    """Where in the pod the setting is (``spec.containers.web.securityContext.runAsRoot``)."""
    relaxation: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def check(asked: Mapping[str, str], acknowledged: Iterable[str]) -> list[Problem]:
    """`asked` maps each relaxation the spec asks for to where it asks; `acknowledged` is the
    manifest's ``acknowledge`` list. Problems, sorted by place; none means both agree."""
    acks = list(acknowledged)
    problems: list[Problem] = []
    for name in acks:
        if name not in RELAXATIONS:
            problems.append(
                Problem(
                    "acknowledge",
                    name,
                    f"unknown acknowledgement {name!r}; known: {', '.join(sorted(RELAXATIONS))}",
                )
            )
    for name, where in sorted(asked.items(), key=lambda kv: kv[1]):
        if name not in RELAXATIONS:
            raise ValueError(f"{where}: {name!r} is not a relaxation")
        if name not in acks:
            problems.append(
                Problem(
                    where,
                    name,
                    f"this {RELAXATIONS[name]}, which needs an explicit acknowledgement: add "
                    f"`acknowledge: [{name}]` to the pod's spec, or remove the setting",
                )
            )
    for name in acks:
        if name in RELAXATIONS and name not in asked:
            problems.append(
                Problem(
                    "acknowledge",
                    name,
                    f"acknowledges {name!r}, but nothing in the spec asks for it; remove it",
                )
            )
    return problems


def added(before: Iterable[str], after: Iterable[str]) -> list[str]:
    """Relaxations in `after` that `before` did not have: what a change must confirm."""
    had = set(before)
    return sorted(set(after) - had)
