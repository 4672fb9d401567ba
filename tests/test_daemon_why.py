"""`edgenode why` names the failing step and its cause first, for each way a pod fails to run."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator

import pytest
from daemonkit import Node, running_node, wait_for

FAST = ("--restart-backoff", "0.2", "--restart-backoff-max", "1")


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with running_node("why-node", *FAST) as n:
        yield n


def apply(node: Node, name: str, spec: str, *flags: str) -> tuple[int, str]:
    text = f"kind: Pod\nmetadata: {{name: {name}}}\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )
    path = node.root / f"{name}.yaml"
    path.write_text(text)
    out = node.cli("apply", "-f", str(path), *flags)
    return out.returncode, out.stdout + out.stderr


def why_when(node: Node, ref: str, expected: str) -> list[str]:
    """`why` once its answer contains `expected` (the node gets there asynchronously)."""
    lines: list[str] = []

    def answered() -> bool:
        nonlocal lines
        lines = node.ok("why", ref).splitlines()
        return expected in "\n".join(lines)

    try:
        wait_for(answered, timeout=30, what=f"why {ref} to say {expected!r}")
    except AssertionError:
        raise AssertionError("\n".join(lines)) from None
    return lines


def test_why_names_an_unknown_image(node: Node) -> None:
    code, out = apply(
        node, "lost-image", "containers:\n  main: {image: nosuch:1.0, command: [sleep, '1']}"
    )
    assert code == 0, out
    lines = why_when(node, "pod/lost-image", "image.ensure")
    assert lines[0].startswith("Pod/lost-image: pod.start failed at step image.ensure:")
    assert "nosuch:1.0" in lines[0]


def test_why_names_a_command_missing_from_the_image(node: Node) -> None:
    apply(
        node,
        "typo",
        "restartPolicy: never\ncontainers:\n  main: {image: busybox, command: [sleeep, '1']}",
    )
    lines = why_when(node, "pod/typo", "command not found")
    assert lines[0].startswith("Pod/typo is not running: container main:")
    assert any("command not found in the image: 'sleeep'" in line for line in lines)


def test_why_reports_a_crash_loop_with_its_backoff(node: Node) -> None:
    apply(
        node,
        "crashy",
        "containers:\n  main: {image: busybox, command: [sh, -c, 'echo boom >&2; exit 3']}",
    )
    lines = why_when(node, "pod/crashy", "crash loop")
    assert "container main" in lines[0] and "crash loop" in lines[0]
    assert any("boom" in line for line in lines)


def test_why_names_a_user_steps_veto(node: Node) -> None:
    hooks = node.state_dir / "hooks"
    hooks.mkdir(exist_ok=True)
    gate = hooks / "gate.sh"
    gate.write_text('#!/bin/sh\necho \'{"veto": "maintenance window until 18:00"}\'\n')
    gate.chmod(0o755)
    spec = """\
    workflow:
      steps:
        gate: {run: gate.sh, before: containers.start}
    containers:
      main: {image: busybox, command: [sleep, '1000']}
    """
    code, out = apply(node, "gated", spec)
    assert code == 0, out
    lines = why_when(node, "pod/gated", "user.gate")
    assert lines[0].startswith("Pod/gated: pod.start failed at step user.gate:")
    assert "maintenance window until 18:00" in lines[0]
    # Retried with backoff, through the gate every time: the container never runs.
    time.sleep(3.5)
    again = node.ok("why", "pod/gated").splitlines()[0]
    assert again.startswith("Pod/gated: pod.start failed at step user.gate:")
    status = node.state_dir / "pods" / "gated" / "containers" / "main" / "status.json"
    assert not status.exists()
    runs = node.ok("workflow", "pod/gated")
    assert runs.splitlines()[0].startswith("pod.start Pod/gated") and "vetoed" in runs


def test_why_points_at_the_seccomp_filter_for_a_denied_action(node: Node) -> None:
    apply(
        node,
        "netns-maker",
        "restartPolicy: never\ncontainers:\n"
        "  main: {image: busybox, command: [unshare, -n, 'true']}",
    )
    lines = why_when(node, "pod/netns-maker", "seccomp")
    assert lines[0].startswith("Pod/netns-maker is not running: container main:")
    assert any("Operation not permitted" in line for line in lines)
    assert any("acknowledge unconfined-seccomp" in line for line in lines)


def test_why_reports_a_refused_insecure_setting(node: Node) -> None:
    spec = """\
    acknowledge: [run-as-root]
    containers:
      main: {image: busybox, command: [id], securityContext: {runAsRoot: true}}
    """
    code, out = apply(node, "rooted", spec)
    assert code == 3, out
    lines = node.ok("why", "pod/rooted").splitlines()
    assert lines[0].startswith("Pod/rooted was not applied:")
    assert "--confirm-insecure=run-as-root" in "\n".join(lines)
