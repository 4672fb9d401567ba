"""What every benchmark shares: figures next to their same-run references, and their output.

A benchmark adds each figure to a `Report` with its unit, its target (if it has one) and the
reference measured in the same run; `print_table` shows them as a rich table, and the report's
`values` are the figures of the ``--json`` output. `machine` gives the facts every table and
JSON object carries; a benchmark adds its own (library and runtime versions).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = "—"
    met: bool | None = None
    reference: str | None = None
    reference_value: float | None = None


@dataclass(slots=True)
class Report:
    figures: list[Figure] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: str = "—",
        met: bool | None = None,
        reference: tuple[str, float] | None = None,
    ) -> None:
        """A figure; its reference (name, value) goes in the JSON too."""
        self.values[name] = value
        ref_name, ref_value = reference if reference is not None else (None, None)
        self.figures.append(Figure(name, value, unit, target, met, ref_name, ref_value))
        if reference is not None:
            self.values[reference[0]] = reference[1]

    def rows(self) -> list[dict[str, Any]]:
        """Each figure with its unit, target, whether met and its reference: the ``figures``
        of every benchmark's JSON, which `bench/run` combines into one table."""
        return [
            {
                "name": f.name,
                "value": f.value,
                "unit": f.unit,
                "target": f.target,
                "met": f.met,
                "reference": f.reference,
                "reference_value": f.reference_value,
            }
            for f in self.figures
        ]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def machine() -> dict[str, Any]:
    """CPUs, CPU model, Python and platform: the facts every benchmark reports."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count() or 0,
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def describe_machine(facts: dict[str, Any]) -> str:
    """The generic facts of `machine` as one phrase, for a table's footer."""
    return (
        f"{facts['cpus']} CPUs ({facts['cpu']}), {facts['implementation']} {facts['python']}, "
        f"{facts['platform']}"
    )


def print_table(
    title: str, report: Report, footer_lines: Iterable[str], *, judged: bool = True
) -> None:
    """The figures as a table (figure, value, unit, target, met, reference, value ÷ ref), then
    `footer_lines` (machine facts, sizes). `judged=False` (a smoke run) leaves "met" empty."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=130)  # piped or captured: do not squeeze the names
    table = Table(title=title, title_justify="left")
    table.add_column("figure", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("target", justify="right")
    table.add_column("met", justify="center")
    table.add_column("reference, same run", no_wrap=True)
    table.add_column("value ÷ ref", justify="right")
    for f in report.figures:
        met = "—" if f.met is None or not judged else ("[green]yes[/]" if f.met else "[red]NO[/]")
        ref, ratio = "—", "—"
        if f.reference is not None and f.reference_value is not None:
            ref = f"{f.reference} = {fmt(f.reference_value)}"
            if f.reference_value > 0:
                ratio = f"{f.value / f.reference_value:.2f}×"
        table.add_row(f.name, fmt(f.value), f.unit, f.target, met, ref, ratio)
    console.print(table)
    for line in footer_lines:
        console.print(line, highlight=False)


def emit(
    report: Report,
    *,
    title: str,
    elapsed: float,
    quick: bool,
    as_json: bool,
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> None:
    """A simulation-style benchmark's output: one JSON object (the figures, `extra`, the
    machine, sizes, whether quick, seconds), or the table with `notes`, the machine and sizes
    in its footer."""
    facts = machine()
    if as_json:
        out: dict[str, Any] = dict(report.values)
        out.update(extra or {})
        out.update(machine=facts, sizes=report.sizes, quick=quick, seconds=elapsed)
        out["figures"] = report.rows()
        print(json.dumps(out))
        return
    sizes = ", ".join(f"{k}={v:,}" for k, v in report.sizes.items())
    footer = [
        *notes,
        f"machine: {describe_machine(facts)}",
        f"sizes: {sizes}; took {elapsed:.1f} s",
    ]
    print_table(title + (" (--quick)" if quick else ""), report, footer, judged=not quick)
