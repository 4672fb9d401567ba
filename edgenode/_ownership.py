"""Who owns which fields of each kind.

The owner of a field is the rule with the longest matching prefix (see `store._ownership`):

- ``user`` (operators) owns what people write: an object's existence, ``metadata`` and ``spec``.
- ``placement`` owns a pod's ``assignment`` (which node runs it) and a PinnedDeployment's status.
- ``node:<id>`` owns the status of what runs on it: a pod's ``status`` belongs to the node in its
  ``assignment.node``; a Node object and its status belong to that node.
"""

from __future__ import annotations

from store._ownership import OwnerRule, Rules

KIND_RULES: Rules = {
    "Pod": (
        OwnerRule((), "user"),
        OwnerRule(("metadata",), "user"),
        OwnerRule(("spec",), "user"),
        OwnerRule(("assignment",), "placement"),
        OwnerRule(("status",), "node:{assignment.node}"),
    ),
    "PinnedDeployment": (
        OwnerRule((), "user"),
        OwnerRule(("metadata",), "user"),
        OwnerRule(("spec",), "user"),
        OwnerRule(("status",), "placement"),
    ),
    "Node": (
        OwnerRule((), "node:{name}"),
        OwnerRule(("metadata",), "user"),
        OwnerRule(("spec",), "user"),
        OwnerRule(("status",), "node:{name}"),
    ),
}
