"""Drawing workflows and their runs: the critical chain, text, Graphviz DOT and Mermaid.

Pure functions of a `RunRecord` (a run, finished or live) or of a `Workflow` (the graph alone).
`edgenode._workflow` re-exports them; this module imports it only for types, so either may be
imported first.
Every state has one mark and one colour, in `MARKS` and `COLOURS`; the text view lists steps in
topological order, the graph views draw an edge from each dependency to its dependent, user
steps dashed (DOT) or rounded (Mermaid), and the critical chain's edges thick.
`explain` answers "why is this not running?" in a sentence or two, from the latest run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, TypeGuard, cast

if TYPE_CHECKING:
    from edgenode._workflow import RunRecord, StepRecord, StepState, Workflow

MARKS: Mapping[StepState, str] = {
    "pending": "·",
    "running": "▸",
    "retrying": "↻",
    "succeeded": "✓",
    "failed": "✗",
    "timed-out": "⧖",
    "vetoed": "⊘",
    "skipped": "-",
    "cancelled": "⊗",
}
COLOURS: Mapping[StepState | None, tuple[str, str]] = {
    None: ("#ffffff", "#424242"),  # a workflow's step: no state
    "pending": ("#ffffff", "#9e9e9e"),
    "running": ("#bbdefb", "#1565c0"),
    "retrying": ("#fff9c4", "#f9a825"),
    "succeeded": ("#c8e6c9", "#2e7d32"),
    "failed": ("#ffcdd2", "#c62828"),
    "timed-out": ("#ffe0b2", "#e65100"),
    "vetoed": ("#f8bbd0", "#ad1457"),
    "skipped": ("#eeeeee", "#9e9e9e"),
    "cancelled": ("#eeeeee", "#616161"),
}
"""state -> (fill, stroke) colours of its node in DOT and Mermaid."""


def critical_chain(record: RunRecord) -> list[tuple[str, float, float]]:
    """The chain of steps that decided when the run ended, first step first, as
    ``(name, started, took)``: seconds from the run's start to the step's start, and the
    step's duration (like ``systemd-analyze critical-chain``'s ``@`` and ``+``).

    From the step that ended last, follow the dependency that ended last, back to a step that
    waited for none. Steps that never ran (or are still running) are not in it.
    """
    rank = {n: i for i, n in enumerate(record.steps)}
    ran: dict[str, tuple[float, float]] = {}
    for n, s in record.steps.items():
        if s.started_at is not None and s.ended_at is not None:
            ran[n] = (s.started_at, s.ended_at)
    if not ran:
        return []

    def last(names: Iterable[str]) -> str | None:
        candidates = [n for n in names if n in ran]
        return max(candidates, key=lambda n: (ran[n][1], rank[n])) if candidates else None

    chain: list[str] = []
    current = last(ran)
    while current is not None:
        chain.append(current)
        current = last(record.steps[current].after)
    return [(n, ran[n][0] - record.started_at, ran[n][1] - ran[n][0]) for n in reversed(chain)]


def format_duration(seconds: float) -> str:
    """``12ms``, ``1.24s``, ``2m05s``, ``1h02m``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(int(seconds) // 60, 60)
    return f"{hours}h{rest:02d}m"


def _took(step: StepRecord, now: float | None) -> float | None:
    if step.started_at is None:
        return None
    end = step.ended_at if step.ended_at is not None else now
    return None if end is None else end - step.started_at


def _step_line(step: StepRecord, now: float | None) -> str:
    took = _took(step, now)
    dur = format_duration(took) if took is not None else None
    notes: list[str] = []
    if step.attempts > 1 or (step.state in ("running", "retrying") and step.max_attempts > 1):
        notes.append(f"attempt {step.attempts} of {step.max_attempts}")
    if step.state in ("failed", "timed-out") and step.on_failure == "continue":
        notes.append("on_failure=continue")
    if step.user:
        notes.append("user step")
    text = f"{MARKS[step.state]} {step.name}"
    if step.state == "succeeded":
        text += f" {dur}"
    elif step.state in ("failed", "timed-out", "vetoed"):
        text += f": {step.error}"
        notes[:0] = [dur] if dur else []
    elif step.state == "running":
        text += " running" + (f" {dur}" if dur else "")
    elif step.state == "retrying":
        text += f" retrying after: {step.error}"
    elif step.state in ("skipped", "cancelled"):
        text += f" {step.state}: {step.error}"
    return text + (f" ({', '.join(notes)})" if notes else "")


def _headline(record: RunRecord, now: float | None) -> str:
    head = " ".join(p for p in (record.workflow, record.target, "run", record.run_id) if p)
    end = record.ended_at if record.ended_at is not None else now
    took = format_duration(end - record.started_at) if end is not None else None
    if record.outcome == "running":
        failing = f", failing at {record.failed_step}: {record.error}" if record.failed_step else ""
        return f"{head}: running" + (f" for {took}" if took else "") + failing
    if record.outcome == "succeeded":
        return f"{head}: succeeded in {took}"
    if record.outcome == "cancelled":
        return f"{head}: cancelled after {took}: {record.error}"
    return f"{head}: failed after {took} at {record.failed_step}: {record.error}"


def to_text(record: RunRecord, *, now: float | None = None) -> str:
    """The run as lines: a headline, each step with its mark, duration and error, the merged
    annotations and the critical chain. `now` gives running steps their duration so far."""
    lines = [_headline(record, now)]
    lines += [f"  {_step_line(s, now)}" for s in record.steps.values()]
    if record.annotations:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(record.annotations.items()))
        lines.append(f"annotations: {pairs}")
    chain = critical_chain(record)
    if chain:
        lines.append("critical chain:")
        lines += [
            f"  {name} @{format_duration(at)} +{format_duration(took)}" for name, at, took in chain
        ]
    return "\n".join(lines) + "\n"


def explain(record: RunRecord, *, now: float | None = None) -> str:
    """Why the target is (not) where the run wanted it, pointing at the failing step."""
    head = f"{record.target or record.workflow}: {record.workflow} run {record.run_id}"
    steps = record.steps
    if record.outcome == "cancelled":
        return f"{head} was cancelled: {record.error}."
    if record.failed_step is not None:
        step = steps[record.failed_step]
        kind = "user step" if step.user else "step"
        tries = f" after {step.attempts} attempts" if step.attempts > 1 else ""
        verb = "fails" if record.outcome == "running" else "failed"
        text = f"{head} {verb} at {kind} {step.name}{tries}: {step.error}."
        blocked = [s.name for s in steps.values() if s.state == "skipped"]
        if blocked:
            text += f" Not run because of it: {', '.join(blocked)}."
        return text
    if record.outcome == "running":
        busy = []
        for s in steps.values():
            if s.state == "running":
                took = _took(s, now)
                busy.append(s.name + (f" ({format_duration(took)})" if took is not None else ""))
            elif s.state == "retrying":
                busy.append(f"{s.name} (retrying after: {s.error})")
        return f"{head} is running: waiting for {', '.join(busy) or 'the next step'}."
    text = f"{head} succeeded"
    tolerated = [s for s in steps.values() if s.state in ("failed", "timed-out")]
    if tolerated:
        text += ", though " + "; ".join(f"{s.name} failed: {s.error}" for s in tolerated)
    return text + "."


# --- graphs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    name: str
    after: tuple[str, ...]
    state: StepState | None
    label: tuple[str, ...]
    """Lines of the node's label."""
    user: bool


def _nodes(subject: RunRecord | Workflow) -> tuple[str, list[_Node], set[tuple[str, str]]]:
    """(graph name, nodes, critical edges) of a run or a workflow."""
    if _is_record(subject):
        nodes = []
        for s in subject.steps.values():
            took = _took(s, None)
            detail = format_duration(took) if took is not None else s.state
            if s.error and s.state in ("skipped", "cancelled"):
                detail = f"{s.state}: {_shorten(s.error)}"
            elif s.error and s.state != "retrying":
                detail = f"{detail}: {_shorten(s.error)}"
            label = (f"{MARKS[s.state]} {s.name}", detail)
            nodes.append(_Node(s.name, s.after, s.state, label, s.user))
        names = [name for name, _, _ in critical_chain(subject)]
        return subject.workflow, nodes, set(pairwise(names))
    workflow = cast("Workflow", subject)
    plain = [
        _Node(s.name, s.after, None, (s.name,), s.user is not None) for s in workflow.steps.values()
    ]
    return workflow.name, plain, set()


def _is_record(subject: RunRecord | Workflow) -> TypeGuard[RunRecord]:
    """A run's record, not a workflow (told apart by shape: this module imports neither)."""
    return hasattr(subject, "run_id")


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(subject: RunRecord | Workflow) -> str:
    """Graphviz DOT of a run (states as colours, the critical chain bold) or of a workflow."""
    name, nodes, critical = _nodes(subject)
    lines = [
        f"digraph {_dot_quote(name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="sans-serif"];',
    ]
    for n in nodes:
        fill, stroke = COLOURS[n.state]
        style = ', style="rounded,filled,dashed"' if n.user else ""
        label = _dot_quote("\n".join(n.label))
        lines.append(
            f'  {_dot_quote(n.name)} [label={label}, fillcolor="{fill}", color="{stroke}"{style}];'
        )
    for n in nodes:
        for dep in n.after:
            bold = " [penwidth=2.5]" if (dep, n.name) in critical else ""
            lines.append(f"  {_dot_quote(dep)} -> {_dot_quote(n.name)}{bold};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_ids(names: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if base.lower() in ("end", "graph", "subgraph", "flowchart"):
            base += "_"
        candidate, n = base, 2
        while candidate in ids.values():
            candidate, n = f"{base}_{n}", n + 1
        ids[name] = candidate
    return ids


def _mermaid_text(text: str) -> str:
    for raw, entity in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(raw, entity)
    return text


def to_mermaid(subject: RunRecord | Workflow) -> str:
    """A Mermaid flowchart of a run (states as classes, the critical chain thick) or of a
    workflow."""
    _, nodes, critical = _nodes(subject)
    ids = _mermaid_ids([n.name for n in nodes])
    lines = ["flowchart LR"]
    for n in nodes:
        label = _mermaid_text("<br/>".join(n.label)).replace("#lt;br/#gt;", "<br/>")
        opening, closing = ("([", "])") if n.user else ("[", "]")
        lines.append(f'  {ids[n.name]}{opening}"{label}"{closing}')
    for n in nodes:
        for dep in n.after:
            arrow = "==>" if (dep, n.name) in critical else "-->"
            lines.append(f"  {ids[dep]} {arrow} {ids[n.name]}")
    states = [s for s in COLOURS if s is not None and any(n.state == s for n in nodes)]
    for state in states:
        fill, stroke = COLOURS[state]
        cls = state.replace("-", "_")
        lines.append(f"  classDef {cls} fill:{fill},stroke:{stroke}")
        members = ",".join(ids[n.name] for n in nodes if n.state == state)
        lines.append(f"  class {members} {cls}")
    return "\n".join(lines) + "\n"
