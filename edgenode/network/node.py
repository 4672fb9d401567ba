"""The network of one node: its /64 claim, its pods' addresses and links.

Theory of operation. `NodeNetwork` holds what the node decided and keeps it on disk under
``<state>/network/``: ``prefix.json`` (its claim: the /64, the counter that hashed to it, when it
was first claimed, in which cluster /48) and ``leases.json`` (each pod's address lease,
`edgenode.network.leases`). The daemon publishes the claim in its Node status
(``status.network``) and in its membership metadata; `settle` compares it with every other
node's claim (`_addressing.resolve`) and moves it when another node holds it, after which the
daemon attaches every pod again: a pod keeps its lease index, only the prefix changes.

`attach` gives a pod its lease (the one it has, or a new one) and makes its link
(`edgenode.network.podlinks`); `detach` deletes the link and frees the lease. Pods without a
network namespace of their own (host-network) and gVisor pods (loopback only) get none
(`_addressing.no_address_reason`). Calls are synchronous (a few netlink requests); the daemon
runs them in worker threads, one at a time per node (a lock), so two attaches never race for
the same IPv4 address.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from edgenode.network import egress, peerroutes, podlinks
from edgenode.network._addressing import (
    Claim,
    cluster_network,
    link_name,
    no_address_reason,
    node_prefix,
    pod_ipv4,
    pod_ipv6,
    resolve,
)
from edgenode.network._leases import Lease
from edgenode.network._routes import PeerNet, changes, wanted, withdrawn
from edgenode.network.leases import LeaseTable
from edgenode.network.podlinks import IPv4TakenError, PodLink
from gossip._credentials import ula_prefix
from sandbox._spec import PodDef
from sandbox.pods import Sandbox
from sandbox.tables import JsonTable

log = structlog.get_logger("edgenode.network")

ROUTES_SETTLE_S = 30.0
"""For this long after the daemon starts, routes of peers membership has not heard of yet
stay; only those of peers declared dead go."""
ROUTES_RESYNC_S = 10.0
"""With membership unchanged, the kernel's routes are compared again after this long (a
route someone removed comes back)."""


def _check_claim(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("expected an object")
    if raw and not (
        isinstance(raw.get("cluster"), str)
        and isinstance(raw.get("prefix"), str)
        and isinstance(raw.get("counter"), int)
        and isinstance(raw.get("claimedAt"), int | float)
    ):
        raise ValueError('expected "cluster", "prefix" (strings), "counter", "claimedAt" (numbers)')
    return raw


def claims_of(nodes: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """The /64 claims in Node objects' ``status.network``; malformed ones are left out."""
    out = []
    for doc in nodes:
        net = (doc.get("status") or {}).get("network") or {}
        name = (doc.get("metadata") or {}).get("name")
        prefix, counter, since = net.get("podPrefix"), net.get("counter"), net.get("claimedAt")
        if (
            isinstance(name, str)
            and isinstance(prefix, str)
            and isinstance(counter, int)
            and isinstance(since, int | float)
        ):
            out.append(Claim(name, prefix, counter, float(since)))
    return out


class NodeNetwork:
    """The network of the node named `node` (see the module docstring). `key` names the node's
    state directory in shared places (`sandbox.pods.node_key`); `cluster_ula` is the cluster's
    /48."""

    def __init__(
        self, state_dir: Path, node: str, *, key: str, cluster_ula: str, now: float
    ) -> None:
        self.node = node
        self.key = key
        self.cluster = cluster_network(cluster_ula)
        self.dir = state_dir / "network"
        self.leases = LeaseTable(self.dir / "leases.json")
        self._claim_file = JsonTable[dict[str, Any]](
            self.dir / "prefix.json", what="node prefix claim", check=_check_claim, empty=dict
        )
        self._lock = threading.Lock()
        self.claim = self._load_claim(now)
        self._started: float | None = None
        self._routes_seen: object = None
        self._routes_due = 0.0

    def _load_claim(self, now: float) -> Claim:
        def load(raw: dict[str, Any]) -> tuple[dict[str, Any], Claim]:
            if raw.get("cluster") == str(self.cluster) and raw.get("prefix") == node_prefix(
                self.cluster, self.node, raw["counter"]
            ):
                return raw, Claim(self.node, raw["prefix"], raw["counter"], raw["claimedAt"])
            claim = Claim(self.node, node_prefix(self.cluster, self.node, 0), 0, now)
            return self._claim_json(claim), claim

        return self._claim_file.change(load)

    def _claim_json(self, claim: Claim) -> dict[str, Any]:
        return {
            "cluster": str(self.cluster),
            "prefix": claim.prefix,
            "counter": claim.counter,
            "claimedAt": claim.claimed_at,
        }

    @property
    def prefix(self) -> str:
        return self.claim.prefix

    def status(self) -> dict[str, Any]:
        """What the Node status says of the node's network (``status.network``)."""
        return {
            "podPrefix": self.claim.prefix,
            "counter": self.claim.counter,
            "claimedAt": self.claim.claimed_at,
        }

    def start(self) -> None:
        """Make this network namespace route for the pods and masquerade their IPv4."""
        podlinks.enable_forwarding()
        self._started = time.monotonic()
        try:
            egress.apply()
        except egress.EgressError as exc:
            log.warning("ipv4_egress_unavailable", reason=str(exc))

    def sync_routes(self, peers: Sequence[PeerNet], holders: Mapping[str, str]) -> None:
        """Make the routes to other nodes' /64s what membership says (`_routes`): each live
        peer's via its link-local address, none to a dead one."""
        now = time.monotonic()
        settling = self._started is None or now - self._started < ROUTES_SETTLE_S
        seen = (tuple(sorted(peers, key=repr)), tuple(sorted(holders.items())), self.prefix)
        if seen == self._routes_seen and now < self._routes_due and not settling:
            return  # nothing changed since a sync that found every next hop
        chosen = wanted(peers, cluster=self.cluster, own_prefix=self.prefix, holders=holders)
        installed = peerroutes.current()
        desired = peerroutes.resolve(chosen)
        for prefix in chosen.keys() - desired.keys():
            if prefix in installed:  # its next hop is not in sight now: keep the last one
                desired[prefix] = installed[prefix]
        put, remove = changes(desired, installed, dead=withdrawn(peers), settling=settling)
        if put or remove:
            peerroutes.sync(put, remove)
        complete = chosen.keys() <= desired.keys()
        self._routes_seen = seen if complete else None
        self._routes_due = now + ROUTES_RESYNC_S

    # -- the /64 -------------------------------------------------------------------------

    def settle(self, others: Iterable[Claim], *, now: float) -> bool:
        """Compare this node's claim with `others`; True if it moved (the caller publishes the
        new claim and attaches every pod again)."""
        moved = resolve(self.cluster, self.claim, others, now=now)
        if moved is None:
            return False
        self._claim_file.change(lambda _raw: (self._claim_json(moved), None))
        log.warning(
            "pod_prefix_moved",
            node=self.node,
            lost=self.claim.prefix,
            to=moved.prefix,
            reason="another node's earlier claim holds the prefix",
        )
        self.claim = moved
        return True

    # -- pods ----------------------------------------------------------------------------

    def link_name(self, pod: str) -> str:
        return link_name(self.key, pod)

    def _link(self, pod: str, lease: Lease) -> PodLink:
        return PodLink(
            pod, self.link_name(pod), pod_ipv6(self.claim.prefix, lease.index), pod_ipv4(lease.ipv4)
        )

    def _foreign(self) -> set[int]:
        return podlinks.foreign_ipv4({self.link_name(p) for p in self.leases.leases()})

    def attach(self, pod: PodDef, ns_path: str | None) -> dict[str, str] | None:
        """Give `pod` (whose network namespace is at `ns_path`) its addresses and link; its
        addresses, or None if it gets none."""
        if ns_path is None or no_address_reason(pod.relaxations, pod.runtime_class):
            return None
        with self._lock:
            # An IPv4 address another node's pod holds in this namespace (two nodes of one
            # machine) is found when its route is refused, and the lease moves.
            lease = self.leases.allocate(pod.name)
            try:
                podlinks.attach(self._link(pod.name, lease), ns_path)
            except IPv4TakenError as exc:
                log.info("pod_ipv4_moved", pod=pod.name, reason=str(exc))
                lease = self.leases.move_ipv4(pod.name, foreign=self._foreign())
                podlinks.attach(self._link(pod.name, lease), ns_path)
        return self.addresses(pod.name)

    def detach(self, pod: str) -> None:
        """Delete `pod`'s link and free its lease (nothing if it has none)."""
        with self._lock:
            podlinks.detach(self.link_name(pod))
            self.leases.release(pod)

    def addresses(self, pod: str) -> dict[str, str] | None:
        """`pod`'s addresses (``ipv6``, ``ipv4``), None if it has no lease."""
        lease = self.leases.get(pod)
        if lease is None:
            return None
        link = self._link(pod, lease)
        return {"ipv6": link.ipv6, "ipv4": link.ipv4}

    def forget(self, keep: Iterable[str]) -> list[str]:
        """Free the leases of pods not in `keep` (deleted while the daemon was down); their
        names."""
        kept = set(keep)
        gone = [p for p in self.leases.leases() if p not in kept]
        for pod in gone:
            self.detach(pod)
        return gone

    def attach_all(self, sandbox: Sandbox) -> None:
        """Attach every pod of `sandbox` again (after the daemon starts, or when the /64
        moved), and free the leases of pods that are gone; a pod that fails is logged and tried
        again by its next workflow."""
        pods = sandbox.pods()
        for name in pods:
            try:
                self.attach(sandbox.definition(name), sandbox.state(name).netns)
            except Exception as exc:  # one pod's trouble must not keep the others unattached
                log.warning("pod_attach_failed", pod=name, error=str(exc))
        gone = self.forget(pods)
        if gone:
            log.info("pod_leases_freed", pods=gone, reason="the pods are gone")


def cluster_ula(state_dir: Path, node: str, key: str) -> str:
    """The cluster's /48 from the node's cluster description; a node of no cluster derives
    one of its own from its name and `key` (its state directory's), so two such nodes on one
    machine never share one."""
    from gossip.identity import IdentityError, load_cluster  # noqa: PLC0415

    try:
        return load_cluster(state_dir).ula
    except IdentityError:
        return ula_prefix(f"node {node} {key}")
