"""The node's mesh: membership, dissemination, discovery and the QUIC transport, wired together.

Theory of operation. `Mesh` is the thin asyncio shell around two pure cores (STYLE.md §1):
`Membership` (who is alive) and `Dissemination` (the store's changes). Each core sits in a
`CoreRunner`, which feeds it one input at a time with the loop's clock and then *pumps* it: the
messages it wants sent go to the `Transport` (membership as unreliable datagrams, dissemination
as reliable frames), its events are dispatched, and its timer is re-armed with ``call_at``.
Everything runs on the daemon's event loop, so a core is never touched from two places at once.

- **Who to talk to.** `Discovery` sights candidate peers (mDNS, IPv6 neighbours, seeds). A
  sighting with a node id is an address for that node; one without (a neighbour, a seed) is
  dialled to learn who answers. Either way the node is then asked to join the membership. Every
  member gossips its contact (addresses and port) in its membership metadata, so a node heard
  of through gossip can be dialled too.
- **What flows.** Local commits (seen through a store watch) are published to the
  dissemination core, which pushes them at once and reconciles version vectors with one peer at
  a time; remote changes go through `StoreLog`, so the store checks every signature, owner and
  clock bound before anything is kept. Live members are the dissemination core's peers.
- **What the operator sees.** `nodes()` reports each member's state, addresses, when it was
  last heard from and how many changes it lacks that this node holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from edgenode import _ask
from edgenode._nodefacts import Contact, CountingLog, behind, fitting_contact
from edgenode.network._addressing import LINK_PREFIX
from edgenode.network.peerroutes import link_locals, local_addresses
from gossip._membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    Membership,
    MembershipConfig,
    MemberSuspected,
    MessageRejected,
)
from gossip._membership_wire import MemberState, NodeId
from gossip.transport import PeerDown, PeerUp
from store import Store

log = structlog.get_logger("edgenode.mesh")

DEFAULT_PORT = 7946
MEMBERSHIP = "membership"
DISSEMINATION = "dissemination"
ASK = "ask"
ASK_TIMEOUT_S = 10.0
"""How long a node waits for a peer's answer to a forwarded read verb."""
MAX_ANSWER_ITEMS = 10_000
"""A streamed answer (log lines) is cut to its last this many items before it travels."""


class _Core(Protocol):
    def handle_timer(self, *, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def messages_to_send(self, *, now: float) -> list[tuple[NodeId, bytes]]: ...
    def next_event(self) -> object | None: ...


class CoreRunner:
    """Owns one core on the loop: feed, then pump (send, dispatch events, re-arm the timer)."""

    def __init__(
        self,
        core: _Core,
        *,
        send: Callable[[NodeId, bytes], None],
        on_event: Callable[[object], None],
        clock: Callable[[], float],
        send_reliably: Callable[[NodeId, bytes], None] | None = None,
    ) -> None:
        self.core = core
        self._send = send
        self._send_reliably = send_reliably
        self._reliable = getattr(core, "reliable_messages_to_send", None)
        self._on_event = on_event
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def feed(self, step: Callable[[float], None]) -> None:
        """Run one input (`step(now)`) and pump; a bug in the core is logged, not raised."""
        try:
            step(self._clock())
        except Exception:
            log.exception("core_failed", core=type(self.core).__name__)
        self.pump()

    def pump(self) -> None:
        now = self._clock()
        for peer, data in self.core.messages_to_send(now=now):
            self._send(peer, data)
        if self._reliable is not None:
            # Messages the core wants delivered whatever the loss (membership's fallback
            # probes): the transport's reliable stream retransmits them.
            for peer, data in self._reliable(now=now):
                (self._send_reliably or self._send)(peer, data)
        while (event := self.core.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("event_dispatch_failed", event=type(event).__name__)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.core.get_timer()
        if deadline is not None:
            delay = max(0.0, deadline - now)
            self._timer = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.feed(lambda now: self.core.handle_timer(now=now))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(slots=True)
class PeerRecord:
    """What this node knows of another node, for `edgenode nodes`."""

    state: str = "unknown"
    addresses: tuple[str, ...] = ()
    port: int = 0
    last_seen: float | None = None
    """Wall-clock seconds when a message last arrived from it."""
    since: float = 0.0
    """Wall-clock seconds when this node came to believe `state`."""
    via: set[str] = field(default_factory=set)
    pod_prefix: str | None = None
    """Its pods' /64 and its link-local next hops to them, from its contact."""
    link_local: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeshConfig:
    port: int = DEFAULT_PORT
    """The UDP port of this node's QUIC endpoint; 1..65535."""
    seeds: tuple[str, ...] = ()
    """Static peer addresses ("host:port", "[v6]:port") for sites joined over a WAN."""
    mdns: bool = True
    """Announce and browse `_edgenode._udp.local.` on the LAN."""
    neighbor_discovery: bool = True
    """Dial IPv6 neighbours found on the LAN."""
    interfaces: tuple[str, ...] = ()
    """Interfaces for discovery; empty: every up interface but loopback."""
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    clock_offset_s: float = 0.0
    """Seconds added to the wall clock peers' credentials are judged by (`edgenode up
    --clock-offset`); 0 but in tests of clock drift and long absences."""


Runner = Callable[[Sequence[Any]], None]


class Mesh:
    """The running mesh of one node; start it inside the daemon's loop."""

    def __init__(self, store: Store, state_dir: Path, config: MeshConfig) -> None:
        self.store = store
        self.state_dir = state_dir
        self.config = config
        self.me = NodeId(store.node_id)
        self.peers: dict[NodeId, PeerRecord] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dialling: set[tuple[str, int]] = set()
        self._seed_of: dict[NodeId, str] = {}
        self._published: int = 0
        self._clock = time.monotonic
        self._asks: dict[int, asyncio.Future[Any]] = {}
        self._next_ask = 0
        self.answer: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None
        """Runs a local read verb for a peer (the daemon's API dispatcher)."""
        self.membership_listeners: list[Callable[[], None]] = []
        """Called on the loop after every membership event (the daemon's placement wakes)."""
        self._rng = random.Random()
        self.started = False
        self.pod_prefix: str | None = None
        """This node's pods' /64, advertised with its contact (set before `start`)."""

    # -- start and stop -----------------------------------------------------------------------

    async def start(self) -> None:
        from gossip._dissemination import Dissemination, DisseminationConfig  # noqa: PLC0415
        from gossip.discovery import Discovery, DiscoveryConfig  # noqa: PLC0415
        from gossip.identity import load_cluster  # noqa: PLC0415
        from gossip.logs import CredentialBook, StoreLog  # noqa: PLC0415
        from gossip.transport import NodeIdentity, Transport, TransportConfig  # noqa: PLC0415

        self.identity = NodeIdentity.load(self.state_dir)
        self.cluster = load_cluster(self.state_dir)
        offset = self.config.clock_offset_s
        self.book = CredentialBook(
            self.state_dir / "cluster" / "known.creds",
            store=self.store,
            root_public=self.cluster.root_public,
            clock=lambda: int(time.time() + offset),
        )
        # Peers learn our node's and our operator's keys from us, with the changes they sign.
        for cred in ("node.cred", "operator.cred"):
            path = self.state_dir / "cluster" / cred
            if path.is_file():
                reason = self.book.add(path.read_bytes())
                if reason is not None:
                    log.warning("own_credential_refused", file=str(path), reason=reason)
        self.log_ = CountingLog(StoreLog(self.store, self.book))
        self.transport = Transport(
            self.identity,
            TransportConfig(),
            on_message=self._on_message,
            on_peer=self._on_peer,
            clock=lambda: time.time() + offset,
        )
        port = await self.transport.start("::", self.config.port)
        self.contact = fitting_contact(
            await asyncio.to_thread(local_addresses),
            port,
            pod_prefix=self.pod_prefix,
            link_local=await asyncio.to_thread(link_locals),
        )
        self.membership = Membership(
            me=self.me,
            config=self.config.membership,
            rng=random.Random(self._rng.random()),
            meta=self.contact.encode(),
        )
        self.dissemination = Dissemination(
            me=self.me,
            log=self.log_,
            config=DisseminationConfig(),
            rng=random.Random(self._rng.random()),
        )
        self._m = CoreRunner(
            self.membership,
            send=lambda peer, data: self._send(peer, MEMBERSHIP, data, reliable=False),
            send_reliably=lambda peer, data: self._send(peer, MEMBERSHIP, data, reliable=True),
            on_event=self._membership_event,
            clock=self._clock,
        )
        self._d = CoreRunner(
            self.dissemination,
            send=lambda peer, data: self._send(peer, DISSEMINATION, data, reliable=True),
            on_event=self._dissemination_event,
            clock=self._clock,
        )
        self._published = self.store.version_vector().get(self.me, 0)
        self._m.pump()
        self._d.pump()
        self.discovery = Discovery(
            cluster=self.cluster.id,
            node_id=self.me,
            port=port,
            config=DiscoveryConfig(
                mdns=self.config.mdns,
                neighbor_discovery=self.config.neighbor_discovery,
                interfaces=self.config.interfaces,
                skip_prefixes=(LINK_PREFIX,),
            ),
            seeds=self.config.seeds,
            on_sighting=self._on_sighting,
        )
        self._spawn(self._watch_local(), "mesh-publish")
        await self.discovery.start()
        self.started = True
        log.info("mesh_started", node=self.me, cluster=self.cluster.id, port=port)

    def set_pod_prefix(self, prefix: str) -> None:
        """Advertise `prefix` as this node's pods' /64 from now on (its claim moved)."""
        self.pod_prefix = prefix
        if self.started:
            self.contact = dataclasses.replace(self.contact, pod_prefix=prefix)
            meta = self.contact.encode()
            self._m.feed(lambda now: self.membership.set_meta(meta, now=now))

    async def close(self) -> None:
        if not self.started:
            return
        self.started = False
        with contextlib.suppress(Exception):
            self._m.feed(lambda now: self.membership.leave(now=now))
            await asyncio.sleep(0.05)  # let the goodbye leave before the connections close
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._m.close()
        self._d.close()
        await self.discovery.close()
        await self.transport.close()

    # -- inputs -------------------------------------------------------------------------------

    def _send(self, peer: NodeId, channel: str, data: bytes, *, reliable: bool) -> None:
        if not self.transport.send(peer, channel, data, reliable=reliable):
            log.debug("send_dropped", peer=peer, channel=channel, size=len(data))

    def _on_message(self, channel: str, sender: NodeId, data: bytes) -> None:
        record = self.peers.setdefault(sender, PeerRecord())
        record.last_seen = time.time()
        if channel == MEMBERSHIP:
            self._m.feed(lambda now: self.membership.receive(data, sender, now=now))
        elif channel == DISSEMINATION:
            self._d.feed(lambda now: self.dissemination.receive(data, sender, now=now))
        elif channel == ASK:
            self._on_ask(sender, data)
        else:
            log.warning("unknown_channel", peer=sender, channel=channel)

    def _on_peer(self, event: PeerUp | PeerDown) -> None:
        node = event.node
        if node == self.me:
            return
        record = self.peers.setdefault(node, PeerRecord())
        if isinstance(event, PeerUp):
            record.last_seen = time.time()
            log.info("peer_up", peer=node, address=event.address[0], inbound=event.inbound)
            if node not in self.membership.members():
                self._m.feed(lambda now: self.membership.join([node], now=now))
            return
        log.info("peer_down", peer=node, reason=event.reason)
        seed = self._seed_of.get(node)
        if seed is not None:
            self.discovery.seed_disconnected(seed)

    def _on_sighting(self, sighting: Any) -> None:
        if sighting.node_id == self.me:
            return
        if sighting.node_id is not None:
            record = self.peers.setdefault(NodeId(sighting.node_id), PeerRecord())
            record.via.add(sighting.source)
            self.transport.set_address(NodeId(sighting.node_id), sighting.host, sighting.port)
            if sighting.node_id not in self.membership.members():
                node = NodeId(sighting.node_id)
                self._m.feed(lambda now: self.membership.join([node], now=now))
            return
        target = (sighting.host, sighting.port)
        if target in self._dialling:
            return
        self._dialling.add(target)
        self._spawn(self._dial(sighting), "mesh-dial")

    async def _dial(self, sighting: Any) -> None:
        from gossip.transport import TransportError  # noqa: PLC0415

        target = (sighting.host, sighting.port)
        try:
            node = await self.transport.dial(sighting.host, sighting.port)
        except TransportError as exc:
            log.info("dial_failed", address=sighting.host, port=sighting.port, error=str(exc))
            return
        finally:
            self._dialling.discard(target)
        if node == self.me:
            return
        self.peers.setdefault(node, PeerRecord()).via.add(sighting.source)
        self.transport.set_address(node, sighting.host, sighting.port)
        if sighting.source == "seed":
            self._seed_of[node] = sighting.endpoint
            self.discovery.seed_connected(sighting.endpoint)
        if node not in self.membership.members():
            self._m.feed(lambda now: self.membership.join([node], now=now))

    async def _watch_local(self) -> None:
        async for event in self.store.watch():
            if getattr(event, "local", False) or type(event).__name__ == "WatchOverflowed":
                self.publish_local()

    def publish_local(self) -> None:
        """Publish this node's changes the dissemination core has not been given yet."""
        vv = self.store.version_vector()
        head = vv.get(self.me, 0)
        if head <= self._published:
            return
        # What a peer holding everything but our changes after `_published` misses: ours,
        # and (rarely) a peer's that arrived since `vv` was read, which does no harm.
        missing = self.store.missing({**vv, self.me: self._published}, max_bytes=4 << 20)
        mine = missing.changes
        self._published = head if missing.complete else self._published + len(mine)
        if mine:
            self._d.feed(lambda now: self.dissemination.publish(mine, now=now))

    # -- asking other nodes ---------------------------------------------------------------------

    async def ask(self, node: NodeId, verb: str, args: dict[str, Any]) -> Any:
        """Run read verb `verb` on `node` and return its result; `ApiError` with the peer's
        message (or why it could not be asked)."""
        from edgenode._protocol import EXIT_FAILED, ApiError  # noqa: PLC0415

        self._next_ask = self._next_ask + 1 if self._next_ask < _ask.MAX_ID else 1
        rid = self._next_ask
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._asks[rid] = future
        try:
            message = _ask.encode(_ask.Request(rid, verb, {**args, "forwarded": True}))
            if not self.transport.send(node, ASK, message, reliable=True):
                raise ApiError(f"cannot ask node {node}: it is not reachable now", EXIT_FAILED)
            return await asyncio.wait_for(future, ASK_TIMEOUT_S)
        except TimeoutError:
            raise ApiError(
                f"node {node} did not answer {verb} within {ASK_TIMEOUT_S:.0f} s; ask it "
                f"directly (on {node}, or --node {node} in a lab)",
                EXIT_FAILED,
            ) from None
        finally:
            self._asks.pop(rid, None)

    def _on_ask(self, sender: NodeId, data: bytes) -> None:
        from edgenode._protocol import ApiError  # noqa: PLC0415

        message = _ask.decode(data)
        if isinstance(message, _ask.Rejected):
            log.info("ask_rejected", peer=sender, reason=message.reason)
        elif isinstance(message, _ask.Request):
            self._spawn(self._answer(sender, message), "mesh-answer")
        else:
            future = self._asks.get(message.id)
            if future is None or future.done():
                return  # a late answer to a request that timed out
            if message.ok:
                future.set_result(message.result)
            else:
                text, code = message.result
                future.set_exception(ApiError(f"{sender}: {text}", code))

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` as a task the mesh cancels on close; a finished one is dropped at once
        (dials and answers come and go for as long as the node runs)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, sender: NodeId, request: _ask.Request) -> None:
        from edgenode._protocol import EXIT_FAILED, EXIT_INVALID, ApiError  # noqa: PLC0415

        answer: _ask.Answer
        try:
            if request.verb not in _ask.ANSWERED or self.answer is None:
                raise ApiError(f"{request.verb} is not answered for peers", EXIT_INVALID)
            result = await self.answer(request.verb, request.args)
            if isinstance(result, AsyncIterator):
                items = [item async for item in result]
                result = items[-MAX_ANSWER_ITEMS:]
            answer = _ask.Answer(request.id, True, result)
            if len(_ask.encode(answer)) > self.transport.config.max_frame_bytes - 64:
                raise ApiError(
                    f"the answer to {request.verb} is too large to relay; ask {self.me} "
                    "directly (or with --tail)",
                    EXIT_FAILED,
                )
        except ApiError as exc:
            answer = _ask.Answer(request.id, False, (exc.message, exc.exit))
        except Exception as exc:
            log.exception("ask_answer_failed", peer=sender, verb=request.verb)
            answer = _ask.Answer(request.id, False, (f"{self.me} failed: {exc!r}", EXIT_FAILED))
        self.transport.send(sender, ASK, _ask.encode(answer), reliable=True)

    # -- events -------------------------------------------------------------------------------

    def _membership_event(self, event: object) -> None:
        if isinstance(event, MessageRejected):
            log.info("membership_message_rejected", **_fields(event))
            return
        node = getattr(event, "node", None)
        if node is None:
            return
        record = self.peers.setdefault(node, PeerRecord())
        member = self.membership.members().get(node)
        if member is not None:
            state = member.state.name.lower()
            if state != record.state:
                record.state, record.since = state, time.time()
            contact = Contact.decode(getattr(member, "meta", b"") or b"")
            if contact is not None:
                record.addresses, record.port = contact.addresses, contact.port
                record.pod_prefix, record.link_local = contact.pod_prefix, contact.link_local
                for address in contact.addresses:
                    self.transport.set_address(node, address, contact.port)
        if isinstance(
            event, MemberJoined | MemberAlive | MemberSuspected | MemberDead | MemberLeft
        ):
            log.info("member_" + type(event).__name__.removeprefix("Member").lower(), node=node)
        if isinstance(event, MemberDead | MemberLeft):
            # A crashed daemon's connection would stay until QUIC's idle timeout and turn
            # away its restarted daemon's connections meanwhile.
            self.transport.expect_restart(node)
        self._update_peers()
        for listener in self.membership_listeners:
            listener()

    def _update_peers(self) -> None:
        live = [
            n
            for n, m in self.membership.members().items()
            if n != self.me and m.state in (MemberState.ALIVE, MemberState.SUSPECT)
        ]
        self._d.feed(lambda _now: self.dissemination.set_peers(live))

    def _dissemination_event(self, event: object) -> None:
        name = type(event).__name__
        if name in ("ChangesRefused", "MessageRejected"):
            log.warning("dissemination_" + _snake(name), **_fields(event))
        elif name == "ChangesApplied":
            log.debug("changes_applied", **_fields(event))

    # -- reports ------------------------------------------------------------------------------

    def state(self, *, digest: bool = False) -> dict[str, Any]:
        """This node's replication state: its version vector, optionally the digest of its
        objects, and the transport's counters."""
        out: dict[str, Any] = {
            "node": self.me,
            "versionVector": self.store.version_vector(),
            "transport": _stats(self.transport),
            "dissemination": dataclasses.asdict(self.dissemination.stats),
            "applied": {"changes": self.log_.applied, "bytes": self.log_.applied_bytes},
        }
        if digest:
            out["stateDigest"] = state_digest(self.store)
        return out

    def members(self) -> dict[str, tuple[str, float]]:
        """Each other member's state (alive, suspect, dead, left) and since when (wall-clock
        seconds) as this node believes it: the membership view placement decides on."""
        return {
            node: (record.state, record.since)
            for node, record in self.peers.items()
            if node != self.me and record.state != "unknown"
        }

    def nodes(self) -> list[dict[str, Any]]:
        """One row per node this one knows (itself first), for `edgenode nodes`."""
        mine = self.store.version_vector()
        rows = [
            {
                "name": self.me,
                "state": "alive (this node)",
                "addresses": list(self.contact.addresses),
                "port": self.contact.port,
                "lastSeen": time.time(),
                "behind": 0,
            }
        ]
        vectors = self.dissemination.peer_vectors
        for node in sorted(set(self.membership.members()) | set(self.peers)):
            if node == self.me:
                continue
            member = self.membership.members().get(node)
            record = self.peers.get(node, PeerRecord())
            rows.append(
                {
                    "name": node,
                    "state": member.state.name.lower() if member else "unknown",
                    "addresses": list(record.addresses),
                    "port": record.port,
                    "lastSeen": record.last_seen,
                    "behind": behind(mine, vectors.get(node)),
                }
            )
        return rows


def state_digest(store: Store) -> str:
    """A digest of every object's folded state (the same on every node holding the same
    changes), for checking convergence: `Store.state_digest`."""
    return store.state_digest()


def _stats(transport: Any) -> dict[str, Any]:
    stats = getattr(transport, "stats", None)
    if stats is None:
        return {}
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return dict(stats) if isinstance(stats, dict) else {}


def _fields(event: object) -> dict[str, Any]:
    slots: Iterable[str] = getattr(event, "__slots__", ()) or getattr(event, "__dict__", {})
    return {k: str(getattr(event, k)) for k in slots if not k.startswith("_")}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
