"""What happens to a pod when its node is lost: `spec.onNodeLoss`.

Theory of operation. Membership (SWIM) declares a node dead; from that moment each pod the node
ran follows its own policy:

- `policy: reschedule` (the default): once the node has been dead for `lostAfter`, placement
  starts a replacement on a live eligible node. When the lost node comes back while the
  replacement runs there are two copies; `onReturn` says which one stays:
  `keep-replacement` (the default) stops the original, `keep-original` stops the replacement.
- `policy: best-effort`: the pod never moves. It stays bound to its node and runs again when
  the node comes back; `lostAfter` and `onReturn` mean nothing for it and are refused.

A node cut off from the mesh keeps running its pods whatever the policy: only the rest of the
mesh decides to replace them, and `onReturn` settles the duplicates once the views agree.

Defaults, and why:

- `policy: reschedule`: most workloads are services that should keep running somewhere;
  pods tied to one node's hardware or data say `best-effort`. A pod pinned with `spec.node`
  cannot run anywhere else, so without `onNodeLoss` it is best-effort, and an explicit
  `reschedule` with `node` is refused.
- `lostAfter: 30s` (range 0s to 720h): a node that reboots or loses its uplink for a few
  seconds is already declared dead by membership (a few seconds); waiting 30 s more keeps such
  blips from starting replacements that would be stopped again moments later, and still
  replaces a really lost node within a minute. Raise it for workloads whose start is costly
  or whose nodes flap; `0s` replaces as soon as the node is declared dead.
- `onReturn: keep-replacement`: the replacement is already running and serving; stopping it
  to resume the original would interrupt the workload a second time. `keep-original` suits
  pods whose node holds their data or devices.

An `onNodeLoss` that says `reschedule` (or says no policy) gets `lostAfter` and `onReturn`
filled in, so the stored document shows the values in force; a `best-effort` one stays
`{policy: best-effort}`. `node_loss_rule(spec)` is the rule in force for any pod spec, with
`lostAfter` in seconds. Pure: no I/O, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal

from pydantic import BeforeValidator, Field, model_validator

from edgenode.objects._duration import DURATION_EXAMPLES, duration_seconds, duration_within
from edgenode.objects._fields import Expect, StrictModel

if TYPE_CHECKING:
    from edgenode.objects._pod import PodSpec

NodeLossPolicy = Literal["reschedule", "best-effort"]
OnReturn = Literal["keep-replacement", "keep-original"]

DEFAULT_POLICY: Final[NodeLossPolicy] = "reschedule"
DEFAULT_LOST_AFTER: Final = "30s"
"""How long a `reschedule` pod's node must stay dead before the pod is replaced."""
DEFAULT_ON_RETURN: Final[OnReturn] = "keep-replacement"
MAX_LOST_AFTER_S: Final = 720 * 3600
"""The longest `lostAfter`, in seconds (720h, 30 days)."""


def _lost_after(value: object) -> str:
    return duration_within(
        value, low_s=0, high_s=MAX_LOST_AFTER_S, field="lostAfter", longest="720h (30 days)"
    )


LostAfter = Annotated[
    str,
    BeforeValidator(_lost_after),
    Expect(f"a duration from 0s to 720h, such as {DURATION_EXAMPLES}"),
]


class OnNodeLoss(StrictModel):
    """`spec.onNodeLoss` of a pod (or of a version's pod template): see the module's doc."""

    noun: ClassVar[str] = "a node-loss policy"

    policy: NodeLossPolicy = DEFAULT_POLICY
    lost_after: LostAfter | None = Field(default=None, alias="lostAfter")
    """`reschedule` only: how long the node must stay dead before the pod is replaced."""
    on_return: OnReturn | None = Field(default=None, alias="onReturn")
    """`reschedule` only: which copy stays when the lost node comes back."""

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """A `reschedule` policy gets the default `lostAfter` and `onReturn` it leaves out."""
        if not isinstance(data, dict) or data.get("policy", DEFAULT_POLICY) != "reschedule":
            return data
        given = {k: v for k, v in data.items() if v is not None}
        return {"lostAfter": DEFAULT_LOST_AFTER, "onReturn": DEFAULT_ON_RETURN, **given}


@dataclass(frozen=True)
class NodeLossRule:
    """The node-loss rule in force for one pod spec.

    `lost_after_s` (seconds, 0 to 720h) and `on_return` are None for `best-effort`, which
    never starts a replacement. `pinned`: the spec names its node (`spec.node`).
    """

    policy: NodeLossPolicy
    lost_after_s: int | None
    on_return: OnReturn | None
    pinned: bool = False


def node_loss_rule(spec: PodSpec) -> NodeLossRule:
    """The rule in force for `spec`: its `onNodeLoss`, else the defaults (best-effort if the
    spec pins its node)."""
    pinned = spec.node is not None
    given = spec.on_node_loss
    if given is None:
        if pinned:
            return NodeLossRule("best-effort", None, None, pinned=True)
        given = OnNodeLoss()
    if given.policy == "best-effort":
        return NodeLossRule("best-effort", None, None, pinned=pinned)
    return NodeLossRule(
        "reschedule",
        duration_seconds(given.lost_after or DEFAULT_LOST_AFTER),
        given.on_return or DEFAULT_ON_RETURN,
        pinned=pinned,
    )
