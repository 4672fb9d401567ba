"""Hostile input: 10,000 garbage and truncated datagrams at a node's QUIC port, and a peer with
another cluster's credentials.

From n3's namespace, `flood.py` sends n1's QUIC port 10,000 datagrams: random bytes, and real
aioquic client Initials cut short, with their connection id rewritten, replayed, and
short-header packets for no connection. Meanwhile a change written on n2 reaches n1 and n3,
and n1's API keeps answering. Then a daemon of another cluster (its own ``edgenode init``) in
n3's namespace dials n1 as a seed. It shows that n1 refused every datagram the kernel handed
it (counted by kind, and every one in its log as ``datagrams_refused`` counts), kept every
node alive in every view, and stored nothing but the one change written; that the intruder
was refused (``peer_refused``, the reason naming the cluster), known to no node, its
credential in no node's book, and that it sees no one.

Figures: `sent`, `seconds` (sending), `refused` (by kind, at n1), `kernel_dropped` (n1's
UDP receive buffer overflows), `api_p50_ms` / `api_max_ms` (n1 answering `nodes` during the
flood), `change_visible_s` (the change written on n2 during the flood, until on n1 and n3),
`intruder_refused_s` (the intruder's start until n1 has refused it), `intruder_refusals`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fieldkit import (
    Lab,
    all_see_all,
    apply_text,
    call,
    converged,
    deployments,
    get,
    log_events,
    named_lab,
    percentile,
    report,
    waited,
)

from edgenode.client import Connection
from edgenode.lab import NETNS_DIR, edgenode_argv

NODES = ["n1", "n2", "n3"]
TARGET, SOURCE, WRITER = "n1", "n3", "n2"
FLOOD = Path(__file__).resolve().parent / "flood.py"
PORT = 7946


def refused(lab: Lab) -> dict[str, int]:
    counts: dict[str, int] = call(lab, TARGET, "mesh")["transport"]["datagrams_refused"]
    return counts


def rcvbuf_errors(lab: Lab) -> int:
    """UDP datagrams (IPv4 and IPv6) n1's kernel dropped for a full receive buffer: its
    namespace's counts."""
    snmp = lab.exec(TARGET, ["cat", "/proc/net/snmp", "/proc/net/snmp6"]).stdout.splitlines()
    rows = [line.split() for line in snmp]
    names, values = [row for row in rows if row and row[0] == "Udp:"][:2]
    v6 = next(int(row[1]) for row in rows if row and row[0] == "Udp6RcvbufErrors")
    return int(values[names.index("RcvbufErrors")]) + v6


def held(lab: Lab) -> dict[str, dict[str, int]]:
    return {n: call(lab, n, "mesh")["versionVector"] for n in NODES}


def flood(lab: Lab) -> tuple[dict[str, Any], list[float], float]:
    """Run the flood; meanwhile time n1's API and a change written on n2. What flood.py
    printed, the API's latencies (s), and the seconds the change took to reach n1 and n3."""
    host = lab.address(TARGET)[0]
    argv = ["ip", "netns", "exec", lab.netns(SOURCE), sys.executable, str(FLOOD), host, str(PORT)]
    sender = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    latencies: list[float] = []
    visible_s = -1.0
    written: float | None = None
    try:
        while sender.poll() is None:
            t0 = time.monotonic()
            call(lab, TARGET, "nodes")
            latencies.append(time.monotonic() - t0)
            if written is None and len(latencies) == 20:  # well into the flood
                apply_text(lab, WRITER, deployments(["during-the-flood"]))
                written = time.monotonic()
            if (
                written is not None
                and visible_s < 0
                and all(
                    get(lab, n, "pinneddeployment", "during-the-flood") for n in (TARGET, SOURCE)
                )
            ):
                visible_s = time.monotonic() - written
            time.sleep(0.02)
        out, _ = sender.communicate(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 0, out
    assert written is not None and visible_s >= 0, "the change was not seen during the flood"
    return json.loads(out), latencies, visible_s


def intruder(lab: Lab) -> tuple[float, list[dict[str, Any]]]:
    """A daemon of another cluster dials n1 from n3's namespace; how long until n1 refused it,
    and n1's refusals of it. Its own view: itself alone."""
    root = Path(tempfile.mkdtemp(prefix="edgenode-intruder-"))
    root.chmod(0o755)
    state, sock = root / "state", str(root / "intruder.sock")
    made = subprocess.run(
        [*edgenode_argv(), "init", "--state-dir", str(state), "--name", "intruder"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    argv = ["nsenter", f"--net={NETNS_DIR / lab.netns(SOURCE)}", "--", *edgenode_argv(), "up"]
    argv += ["--state-dir", str(state), "--socket", sock, "--listen-port", "7950"]
    argv += ["--seed", f"[{lab.address(TARGET)[0]}]:{PORT}"]
    with open(root / "intruder.log", "wb") as log:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    started = time.monotonic()
    try:

        def refusals() -> list[dict[str, Any]]:
            return [
                e for e in log_events(lab, TARGET, "peer_refused") if e["subject"] == "intruder"
            ]

        waited(lambda: bool(refusals()), timeout=30, what="n1 to refuse the intruder")
        took = time.monotonic() - started
        with Connection(sock) as conn:
            assert {r["name"] for r in conn.call("nodes")} == {"intruder"}
        return took, refusals()
    finally:
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def test_garbage_at_the_quic_port_and_a_foreign_peer_are_refused_and_logged_storing_nothing() -> (
    None
):
    with named_lab("fh") as lab:
        lab.up(len(NODES))
        waited(lambda: all_see_all(lab, NODES), timeout=60, what="the mesh to form")
        waited(lambda: converged(lab, NODES), timeout=30, what="the same state everywhere")
        before, refused_before, dropped_before = held(lab), refused(lab), rcvbuf_errors(lab)

        sent, latencies, visible_s = flood(lab)
        dropped = rcvbuf_errors(lab) - dropped_before
        assert all_see_all(lab, NODES)  # nobody was suspected out of the mesh meanwhile
        took, refusals = intruder(lab)
        assert all("cluster" in e["reason"] for e in refusals), refusals

        waited(lambda: converged(lab, NODES), timeout=30, what="the same state everywhere")
        after = held(lab)
        for node in NODES:
            grown = {o: s - before[node].get(o, 0) for o, s in after[node].items()}
            assert {o: n for o, n in grown.items() if n} == {WRITER: 1}, (node, grown)
            book = lab.state_dir(node) / "cluster" / "known.creds"
            assert b"intruder" not in book.read_bytes()
            assert "intruder" not in {r["name"] for r in call(lab, node, "nodes")}
        by_kind = {k: n - refused_before.get(k, 0) for k, n in refused(lab).items()}
        handed = sent["total"] - dropped  # what the kernel gave the daemon
        assert handed >= sent["total"] // 2, (sent, dropped)  # most of the flood reached it
        assert handed <= sum(by_kind.values()) <= handed + 50, (sent, dropped, by_kind)

        def all_logged() -> bool:  # every refusal in the log, the held-back ones with counts
            logged = sum(e["count"] for e in log_events(lab, TARGET, "datagrams_refused"))
            return bool(logged == sum(refused(lab).values()))

        waited(all_logged, timeout=30, interval=0.2, what="every refusal in n1's log")
        assert not log_events(lab, TARGET, "transport_bug")
        assert not log_events(lab, TARGET, "core_failed")
        ms = [x * 1000 for x in latencies]
        report(
            "hostile",
            nodes=len(NODES),
            sent=sent["total"],
            shapes=sent["sent"],
            seconds=sent["seconds"],
            kernel_dropped=dropped,
            refused=dict(sorted(by_kind.items())),
            api_calls=len(ms),
            api_p50_ms=round(percentile(ms, 0.5), 1),
            api_max_ms=round(max(ms), 1),
            change_visible_s=round(visible_s, 2),
            intruder_refused_s=round(took, 2),
            intruder_refusals=len(refusals),
        )
