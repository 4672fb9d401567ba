"""From manifest to running pod: a Pod's YAML, its translation, the node's image store (with the
locally built busybox image) and real runc. Each relaxation, acknowledged, takes effect."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandboxkit import require_runc

from edgenode.objects import Pod, load_manifests_text
from edgenode.podspec import pod_def
from sandbox._lifecycle import Backoff
from sandbox.busybox import ensure_busybox
from sandbox.images import ImageStore
from sandbox.pods import Sandbox


@pytest.fixture(scope="module")
def node() -> Iterator[Sandbox]:
    require_runc()
    root = Path(tempfile.mkdtemp(prefix="edgenode-test-e2e-"))
    root.chmod(0o755)
    store = ImageStore(root / "images")
    ensure_busybox(store)
    sandbox = Sandbox(root / "state", store, backoff=Backoff(0.2, 1.0, 600.0))
    try:
        yield sandbox
    finally:
        for name in sandbox.pods():
            sandbox.delete_pod(name, grace_s=0)
        shutil.rmtree(root)


def run_once(node: Sandbox, manifest: str) -> list[str]:
    """Apply a one-pod manifest whose container prints and exits; its output lines."""
    (m,) = load_manifests_text(textwrap.dedent(manifest), source="test.yaml")
    assert isinstance(m.model, Pod)
    pod = pod_def(m.name, m.model.spec)
    node.run_pod(pod)
    deadline = time.monotonic() + 20
    while node.state(pod.name).containers["main"].state != "exited":
        assert time.monotonic() < deadline, node.state(pod.name)
        time.sleep(0.02)
    lines = [x.text for x in node.logs(pod.name, "main")]
    node.delete_pod(pod.name, grace_s=0)
    return lines


def test_a_default_pod_runs_as_an_unprivileged_user_on_a_read_only_root(node: Sandbox) -> None:
    out = run_once(
        node,
        """
        kind: Pod
        metadata: {name: plain}
        spec:
          restartPolicy: never
          containers:
            main:
              image: busybox
              command: [sh, -c, "id -u; touch /x 2>/dev/null || echo read-only; echo $GREETING"]
              env: {GREETING: hello}
        """,
    )
    assert out == ["1000", "read-only", "hello"]


def test_run_as_root_acknowledged_runs_as_root_inside(node: Sandbox) -> None:
    out = run_once(
        node,
        """
        kind: Pod
        metadata: {name: rooted}
        spec:
          restartPolicy: never
          acknowledge: [run-as-root]
          containers:
            main:
              image: busybox
              command: [id, -u]
              securityContext: {runAsRoot: true}
        """,
    )
    assert out == ["0"]


def test_writable_root_and_host_path_acknowledged_take_effect(node: Sandbox) -> None:
    shared = Path(tempfile.mkdtemp(prefix="edgenode-test-hostpath-"))
    try:
        shared.chmod(0o755)
        (shared / "greeting").write_text("from the node\n")
        out = run_once(
            node,
            f"""
            kind: Pod
            metadata: {{name: relaxed}}
            spec:
              restartPolicy: never
              acknowledge: [run-as-root, writable-root, host-path]
              volumes:
                config: {{hostPath: {{path: {shared}}}}}
              containers:
                main:
                  image: busybox
                  command: [sh, -c, "echo x > /etc/new && cat /etc/new; cat /config/greeting"]
                  securityContext: {{runAsRoot: true, readOnlyRootFilesystem: false}}
                  volumeMounts:
                    config: {{mountPath: /config}}
            """,
        )
    finally:
        shutil.rmtree(shared)
    assert out == ["x", "from the node"]


def test_the_image_in_status_is_the_stores_digest(node: Sandbox) -> None:
    (m,) = load_manifests_text(
        textwrap.dedent(
            """
            kind: Pod
            metadata: {name: digest}
            spec:
              containers:
                main: {image: busybox, command: [sleep, "1000"]}
            """
        ),
        source="test.yaml",
    )
    assert isinstance(m.model, Pod)
    state = node.run_pod(pod_def(m.name, m.model.spec))
    assert isinstance(node.images, ImageStore)
    assert state.containers["main"].image_digest == node.images.resolve("busybox").digest
    node.delete_pod("digest", grace_s=0)


def test_pid_1_is_the_init_so_a_plain_command_stops_at_sigterm(node: Sandbox) -> None:
    (m,) = load_manifests_text(
        textwrap.dedent(
            """
            kind: Pod
            metadata: {name: plain-sleep}
            spec:
              terminationGracePeriodSeconds: 30
              containers:
                main: {image: busybox, command: [sleep, "1000"]}
            """
        ),
        source="test.yaml",
    )
    assert isinstance(m.model, Pod)
    node.run_pod(pod_def(m.name, m.model.spec))
    started = time.monotonic()
    main = node.stop_pod("plain-sleep").containers["main"]
    assert (main.state, main.exit_code) == ("stopped", 143)  # SIGTERM, forwarded by the init
    assert time.monotonic() - started < 10
    node.delete_pod("plain-sleep", grace_s=0)
