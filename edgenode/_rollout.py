"""A rollout of a PinnedDeployment, as data: from the counts there are to the next explicit edit.

Theory of operation. A rollout (`spec.rollout`: `to`, `step`, `waitReady`, `paused`, `start`)
moves every replica of a PinnedDeployment to version `to`, `step` replicas at a time, by edits of
the versions' `replicas` that anyone can read in history. `total` is the number of replicas the
rollout began with (the sum of `start`); the rollout ends when `to` has `total` replicas and no
other version has any. Each step has two edits, so the deployment never runs fewer than `total`
replicas:

1. **surge**: `to` gets `min(step, total - to)` more replicas (its new pods start);
2. **drain**, once every replica of `to` runs (with `waitReady`, is ready): the other versions
   lose as many replicas as the deployment has above `total`, the version with the most first
   (ties by name), so the rest shrink evenly.

`next_step(counts, rollout, available)` says which it is now, as a `Step` (STYLE.md §2: the
decision is data; the daemon writes it). The states, as a table (`TRANSITIONS`, h11's way)::

    paused      -> (nothing: wait until resumed)
    surged      -> drain  once `to`'s replicas are available, else wait
    balanced    -> surge  while `to` has fewer than total
    done        -> complete (the writer removes spec.rollout and records the outcome)

"Available" is what the pods report: a pod of `to` counts once its status says it runs (and,
with `waitReady`, that it is ready). A user's edit of the counts during a rollout is taken as
it is: the next step starts from the counts there are. Abort is not a step: `rollout abort`
writes `start` back itself. Pure: no I/O, no clocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

StepKind = Literal["surge", "drain", "wait", "paused", "complete"]
State = Literal["paused", "surged", "balanced", "done"]

TRANSITIONS: Final[Mapping[State, tuple[StepKind, str]]] = {
    "paused": ("paused", "nothing until the rollout is resumed"),
    "surged": ("drain", "once the new replicas are available; until then: wait"),
    "balanced": ("surge", "step more replicas of the target version"),
    "done": ("complete", "the target version has every replica"),
}
"""Each state of a rollout and the step it leads to (what `edgenode rollout status` names)."""


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """`spec.rollout` as plain values."""

    to: str
    step: int = 1
    wait_ready: bool = False
    paused: bool = False
    start: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.start.values())


@dataclass(frozen=True, slots=True)
class Step:
    """What to do now: `counts` are every version's replicas after the edit (None: no edit)."""

    kind: StepKind
    state: State
    counts: Mapping[str, int] | None
    message: str


def rollout_spec(raw: Mapping[str, Any]) -> RolloutSpec:
    """A stored `spec.rollout` (validated when written) as a `RolloutSpec`."""
    return RolloutSpec(
        to=str(raw["to"]),
        step=int(raw.get("step", 1)),
        wait_ready=bool(raw.get("waitReady", False)),
        paused=bool(raw.get("paused", False)),
        start={str(k): int(v) for k, v in (raw.get("start") or {}).items()},
    )


def state_of(counts: Mapping[str, int], rollout: RolloutSpec) -> State:
    others = sum(n for v, n in counts.items() if v != rollout.to)
    if counts.get(rollout.to, 0) >= rollout.total and others == 0:
        return "done"
    if rollout.paused:
        return "paused"
    if counts.get(rollout.to, 0) + others > rollout.total:
        return "surged"
    return "balanced"


def next_step(counts: Mapping[str, int], rollout: RolloutSpec, available: int) -> Step:
    """The step a rollout takes from `counts` (each version's replicas) when `available` of the
    target version's replicas are available (running, or ready with `waitReady`)."""
    to, total = rollout.to, rollout.total
    have = counts.get(to, 0)
    state = state_of(counts, rollout)
    if state == "done":
        return Step("complete", state, None, f"every one of {total} replicas runs {to}")
    if state == "paused":
        return Step("paused", state, None, f"paused with {have} of {total} replicas on {to}")
    if state == "balanced":
        more = min(rollout.step, total - have)
        if more <= 0:  # the others hold replicas the total has no room for: drain them
            return _drain(counts, rollout, state)
        after = {**counts, to: have + more}
        return Step(
            "surge", state, after, f"{to}: {have} -> {have + more} replicas (step of {more})"
        )
    want = "ready" if rollout.wait_ready else "running"
    if available < have:
        return Step(
            "wait",
            state,
            None,
            f"waiting for {to}: {available} of {have} replicas {want}",
        )
    return _drain(counts, rollout, state)


def _drain(counts: Mapping[str, int], rollout: RolloutSpec, state: State) -> Step:
    to = rollout.to
    surplus = sum(counts.values()) - rollout.total
    after = dict(counts)
    cut: dict[str, int] = {}
    while surplus > 0:
        others = [(n, v) for v, n in after.items() if v != to and n > 0]
        if not others:
            break
        # The version with the most replicas loses one (ties: the first name).
        _, version = min(others, key=lambda item: (-item[0], item[1]))
        after[version] -= 1
        cut[version] = cut.get(version, 0) + 1
        surplus -= 1
    said = ", ".join(f"{v}: {counts[v]} -> {after[v]}" for v in sorted(cut))
    return Step("drain", state, after, said or "nothing to drain")


def begin(counts: Mapping[str, int], *, to: str, step: int, wait_ready: bool) -> dict[str, Any]:
    """The `spec.rollout` document that starts a rollout from `counts` to version `to`."""
    return {
        "to": to,
        "step": step,
        "waitReady": wait_ready,
        "paused": False,
        "start": dict(sorted(counts.items())),
    }
