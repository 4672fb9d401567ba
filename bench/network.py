"""Benchmark of pod networking across nodes, each figure beside the hosts' own in the same run.

Run ``python bench/network.py`` as root for a table, ``--json`` for one JSON object on stdout,
``--quick`` for a shorter run (fewer echoes, 1 s transfers: its numbers are noisier). It needs
``ping`` (iputils) and ``iperf3``, besides what a lab needs (runc, ip, nft, nsenter).

Setup, not timed: a lab of two nodes (`edgenode.lab`: a daemon in each node's network
namespace, the namespaces on one bridge), under a name of its own and removed afterwards, also
after an error or Ctrl-C; a busybox pod pinned to each node (``sleep``); the run waits until
each pod runs with its address and pod n1 reaches pod n2. Every measurement runs a standard
tool (``nsenter --net=…``) in the network namespace of the pod on n1, or of node n1 itself,
towards pod n2, or node n2's LAN address: the pods' figures cross the pods' veths and both
nodes' forwarding, the hosts' only the LAN (the bridge), so the ratio is what pod networking
adds on the same machine at the same time.

Figures (the JSON keys), targets and references:

- ``pod_rtt_us_p50`` (target ≤ 1.3 × ``host_rtt_us_p50``): the median round trip of
  ``ping -6 -n -i 0.2`` (ping's own shortest interval for an ordinary user, 150 echoes; 50 with
  ``--quick``), as ping reports each reply. The pods' and the hosts' pings run at once, a tenth
  of a second apart, so they see the machine alike.
- ``pod_rtt_busy_us_p50`` (no target; reference ``host_rtt_busy_us_p50``): the same with
  ``ping -A`` (the next echo as soon as the reply is in; 5000 echoes, 1000 with ``--quick``),
  one path after the other: the CPU never idles, so the figure is the path's processing
  alone, the share of pod networking (two forwarding hops and two veth crossings each way) at
  its largest.
- ``pod_tcp_mbps`` (target ≥ 0.8 × ``host_tcp_mbps``): one TCP stream of ``iperf3 -c`` for
  5 s (1 s with ``--quick``), as received by the ``iperf3 -s`` at the other end
  (``end.sum_received``), in Mbit/s; the median of 3 rounds, the pods' and the hosts'
  transfers taking turns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path as FsPath
from types import FrameType

_HERE = FsPath(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if FsPath(p or ".").resolve() != _HERE]

from bench._placementlab import _apply, _call, _wait  # noqa: E402
from bench._report import Report, emit, percentile  # noqa: E402
from edgenode._protocol import ApiError  # noqa: E402
from edgenode.lab import Lab  # noqa: E402

RTT_TARGET = 1.3
TCP_TARGET = 0.8
POD = """apiVersion: edgenode/v1
kind: Pod
metadata: {{name: {name}}}
spec:
  node: {node}
  containers:
    main: {{image: busybox, command: ["sh", "-c", "exec sleep 86400"]}}
"""
TIME = re.compile(r"time=([0-9.]+) ms")


class BenchError(RuntimeError):
    pass


def _address(lab: Lab, name: str) -> str | None:
    try:
        [doc] = _call(lab, "n1", "get", kind="pod", name=name)
    except ApiError:
        return None
    status = doc.get("status") or {}
    running = status.get("phase") == "Running"
    return (status.get("addresses") or {}).get("ipv6") if running else None


def _in(netns: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={netns}", "--", *argv]


def _rtts(out: str) -> list[float]:
    """Each reply's round trip in µs, sorted."""
    return sorted(float(m) * 1000 for m in TIME.findall(out))


def _ping(netns: str, dst: str, flags: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _in(netns, ["ping", "-6", "-n", *flags, dst]), stdout=subprocess.PIPE, text=True
    )


def _rtt_pair(
    pod: tuple[str, str], host: tuple[str, str], flags: Sequence[str], *, together: bool
) -> tuple[list[float], list[float]]:
    if together:
        p = _ping(*pod, flags)
        time.sleep(0.1)
        h = _ping(*host, flags)
        outs = [p.communicate(timeout=600)[0], h.communicate(timeout=600)[0]]
    else:
        outs = [_ping(*pod, flags).communicate(timeout=600)[0]]
        outs.append(_ping(*host, flags).communicate(timeout=600)[0])
    pod_rtts, host_rtts = _rtts(outs[0]), _rtts(outs[1])
    if not pod_rtts or not host_rtts:
        raise BenchError(
            f"ping {' '.join(flags)} got no replies (pods {len(pod_rtts)}, hosts {len(host_rtts)})"
        )
    return pod_rtts, host_rtts


def _tcp_mbps(client_ns: str, server_ns: str, dst: str, seconds: float, port: int) -> float:
    server = subprocess.Popen(
        _in(server_ns, ["iperf3", "-s", "-1", "-p", str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            out = subprocess.run(
                _in(client_ns, ["iperf3", "-c", dst, "-p", str(port), "-t", f"{seconds:g}", "-J"]),
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            with contextlib.suppress(ValueError, KeyError, TypeError):
                received = json.loads(out.stdout)["end"]["sum_received"]
                return float(received["bits_per_second"]) / 1e6
            time.sleep(0.1)  # the server is not listening yet (iperf3 says so in its JSON)
        raise BenchError(f"iperf3 to {dst} failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    finally:
        server.kill()
        server.wait()


def _pod_netns(lab: Lab, node: str, pod: str) -> str:
    record = json.loads((lab.state_dir(node) / "pods" / pod / "pod.json").read_text())
    return str(record["netns"])


def measure(report: Report, *, quick: bool) -> None:
    for tool in ("ping", "iperf3", "nsenter"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (make install installs it)")
    lab = Lab(f"bnet{os.getpid() % 10000}")
    lab.down()
    try:
        lab.up(2)
        for name, node in (("pa", "n1"), ("pb", "n2")):
            _apply(lab, "n1", POD.format(name=name, node=node))
        _wait(lambda: _address(lab, "pa") and _address(lab, "pb"), 120, "both pods' addresses")
        target = _address(lab, "pb")
        assert target is not None
        pod_a, pod_b = _pod_netns(lab, "n1", "pa"), _pod_netns(lab, "n2", "pb")
        host_a, host_b = f"/run/netns/{lab.netns('n1')}", f"/run/netns/{lab.netns('n2')}"
        host_dst = lab.address("n2")[0]

        def reaches() -> bool:
            argv = _in(pod_a, ["ping", "-6", "-n", "-c", "1", "-W", "1", target])
            done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
            return done.returncode == 0

        _wait(reaches, 60, "pod pa to reach pod pb")

        echoes = 50 if quick else 150
        pod_rtt, host_rtt = _rtt_pair(
            (pod_a, target), (host_a, host_dst), ["-i", "0.2", "-c", str(echoes)], together=True
        )
        pod_p50, host_p50 = percentile(pod_rtt, 0.5), percentile(host_rtt, 0.5)
        report.add(
            "pod_rtt_us_p50",
            pod_p50,
            "µs",
            target=f"≤ {RTT_TARGET} × host",
            met=pod_p50 <= RTT_TARGET * host_p50,
            reference=("host_rtt_us_p50", host_p50),
        )
        busy = 1000 if quick else 5000
        pod_busy, host_busy = _rtt_pair(
            (pod_a, target), (host_a, host_dst), ["-A", "-c", str(busy)], together=False
        )
        report.add(
            "pod_rtt_busy_us_p50",
            percentile(pod_busy, 0.5),
            "µs",
            reference=("host_rtt_busy_us_p50", percentile(host_busy, 0.5)),
        )
        seconds, rounds = (1.0, 3) if quick else (5.0, 3)
        pods, hosts = [], []
        for i in range(rounds):
            hosts.append(_tcp_mbps(host_a, host_b, host_dst, seconds, 5201 + 2 * i))
            pods.append(_tcp_mbps(pod_a, pod_b, target, seconds, 5202 + 2 * i))
        pod_tcp, host_tcp = statistics.median(pods), statistics.median(hosts)
        report.add(
            "pod_tcp_mbps",
            pod_tcp,
            "Mbit/s",
            target=f"≥ {TCP_TARGET} × host",
            met=pod_tcp >= TCP_TARGET * host_tcp,
            reference=("host_tcp_mbps", host_tcp),
        )
        report.values["pod_rtt_ratio"] = pod_p50 / host_p50
        report.values["pod_tcp_ratio"] = pod_tcp / host_tcp
        report.sizes.update(echoes=echoes, busy_echoes=busy, tcp_rounds=rounds)
    finally:
        lab.down()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer echoes, 1 s transfers")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/network.py needs root (network namespaces, a lab)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # the lab goes, as after Ctrl-C
    t0 = time.perf_counter()
    report = Report()
    try:
        measure(report, quick=args.quick)
    except RuntimeError as exc:  # BenchError, a lab that did not come up, a timeout
        print(f"bench/network.py: {exc}", file=sys.stderr)
        return 1
    notes = [
        "paths: pod on n1 -> pod on n2 (veth, n1 forwards, LAN bridge, n2 forwards, veth); "
        "hosts: node n1 -> node n2 over the same LAN bridge",
        "rtt: ping -6 -i 0.2, both paths at once; busy: ping -A, one after the other; "
        "tcp: iperf3, one stream, median of rounds",
    ]
    emit(
        report,
        title="edgenode pod networking",
        elapsed=time.perf_counter() - t0,
        quick=args.quick,
        as_json=args.json,
        notes=notes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
