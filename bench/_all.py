"""`bench/run`: every benchmark of the project, one after another, in one combined table.

Each benchmark runs as a process of its own with ``--json`` (so one cannot disturb the next
through what it leaves in memory), and its ``figures`` (name, value, unit, target, whether met,
the reference measured in the same run) go into one table: the benchmark, the figure beside
its target, and its ratio to the reference. ``--json`` prints one object instead: per
benchmark its whole JSON output, plus the machine and which ones failed. A benchmark that
fails (exit status, or output that is not its JSON) is named with the end of its error output,
the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench._report import describe_machine, fmt, machine

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...] = ()


BENCHES: tuple[Bench, ...] = (
    Bench("store", "store.py"),
    Bench("gossip", "gossip.py"),
    Bench("membership", "membership.py"),
    Bench("membership-lossy", "membership.py", ("--lossy",)),
    Bench("placement", "placement.py"),
    Bench("sandbox", "sandbox.py"),
    Bench("network", "network.py"),
    Bench("daemon", "daemon.py"),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    bench: Bench
    output: dict[str, Any] | None
    error: str | None
    seconds: float


Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def _subprocess(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def run_one(bench: Bench, *, quick: bool, timeout: float, runner: Runner = _subprocess) -> Outcome:
    """`bench` with ``--json`` (and ``--quick``); its JSON, or why there is none."""
    argv = [sys.executable, str(HERE / bench.script), "--json", *bench.args]
    if quick:
        argv.append("--quick")
    t0 = time.perf_counter()
    try:
        done = runner(argv, timeout)
    except subprocess.TimeoutExpired:
        return Outcome(bench, None, f"did not finish within {timeout:.0f} s", timeout)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        return Outcome(bench, None, f"exit status {done.returncode}: {tail}", seconds)
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        return Outcome(bench, None, f"its output is not one JSON object ({exc})", seconds)
    if not isinstance(output, dict) or not isinstance(output.get("figures"), list):
        return Outcome(bench, None, "its JSON has no list of figures", seconds)
    return Outcome(bench, output, None, seconds)


def rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    """The combined table's rows: benchmark, figure, value, unit, target, met, reference,
    value ÷ reference; a failed benchmark is one row saying why."""
    out: list[list[str]] = []
    for o in outcomes:
        if o.output is None:
            out.append([o.bench.name, "FAILED", "—", "", "", "NO", o.error or "", "—"])
            continue
        quick = bool(o.output.get("quick"))
        for f in o.output["figures"]:
            met = f.get("met")
            judged = "—" if met is None or quick else ("yes" if met else "NO")
            ref, ratio = "—", "—"
            ref_value = f.get("reference_value")
            if f.get("reference") is not None and ref_value is not None:
                ref = f"{f['reference']} = {fmt(ref_value)}"
                if ref_value > 0:
                    ratio = f"{f['value'] / ref_value:.2f}×"
            value = fmt(f["value"])
            out.append([o.bench.name, f["name"], value, f["unit"], f["target"], judged, ref, ratio])
    return out


def missed(outcomes: Sequence[Outcome]) -> list[str]:
    """`bench:figure` of each judged figure that missed its target (none in a quick run)."""
    return [
        f"{o.bench.name}:{f['name']}"
        for o in outcomes
        if o.output is not None and not o.output.get("quick")
        for f in o.output["figures"]
        if f.get("met") is False
    ]


def print_combined(outcomes: Sequence[Outcome], *, quick: bool, elapsed: float) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    title = "edgenode benchmarks" + (" (--quick: too small to judge the targets)" if quick else "")
    table = Table(title=title, title_justify="left")
    for column, right in (
        ("benchmark", False),
        ("figure", False),
        ("value", True),
        ("unit", False),
        ("target", True),
        ("met", False),
        ("reference, same run", False),
        ("value ÷ ref", True),
    ):
        table.add_column(column, justify="right" if right else "left", no_wrap=not right)
    for row in rows(outcomes):
        met = row[5]
        row[5] = {"yes": "[green]yes[/]", "NO": "[red]NO[/]"}.get(met, met)
        table.add_row(*row)
    console.print(table)
    took = ", ".join(f"{o.bench.name} {o.seconds:.0f} s" for o in outcomes)
    console.print(f"machine: {describe_machine(machine())}", highlight=False)
    console.print(f"took {elapsed:.0f} s: {took}", highlight=False)
    for name in missed(outcomes):
        console.print(f"[red]missed its target:[/] {name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark; one combined table.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="every benchmark's smoke run")
    parser.add_argument(
        "--only", help="comma-separated benchmarks: " + ", ".join(b.name for b in BENCHES)
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds each benchmark may take (1800)"
    )
    args = parser.parse_args(argv)
    chosen = list(BENCHES)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        known = {b.name: b for b in BENCHES}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            parser.error(
                f"--only: no benchmark named {', '.join(unknown)}; choose from {', '.join(known)}"
            )
        chosen = [known[w] for w in wanted]
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    console = Console(stderr=True)
    for bench in chosen:
        if not args.json:
            console.print(f"running {bench.name}…", highlight=False)
        outcomes.append(run_one(bench, quick=args.quick, timeout=args.timeout))
    elapsed = time.perf_counter() - t0
    failed = [o.bench.name for o in outcomes if o.output is None]
    if args.json:
        combined: dict[str, Any] = {o.bench.name: o.output for o in outcomes if o.output}
        combined.update(
            machine=machine(),
            failed={o.bench.name: o.error for o in outcomes if o.output is None},
            missed=missed(outcomes),
            quick=args.quick,
            seconds=elapsed,
        )
        print(json.dumps(combined))
    else:
        print_combined(outcomes, quick=args.quick, elapsed=elapsed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
