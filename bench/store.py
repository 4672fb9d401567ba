"""Benchmarks of the versioned store, each figure next to a reference measured in the same run.

Run ``python bench/store.py`` for a table, ``--json`` for one JSON object on stdout, ``--quick``
for small sizes (a smoke run: its numbers are not meaningful), ``--dir`` to put the stores on
another disk (durable commits cost what that disk's fsync costs). Temporary stores are removed.

Figures (the JSON keys) and their references:

- ``local_commit_ms_p50`` / ``_p99``: wall time of one durable ``Store.commit`` of a one-field
  edit of an existing Pod (``spec.containers.web.image`` as manager ``user``). Reference
  ``lmdb_commit_ms_p50`` / ``_p99``: one raw LMDB write transaction putting 300 bytes in a
  spare named database of the same environment (same file, same fsyncs), interleaved with the
  commits so both see the same disk.
- ``batch_apply_changes_per_s``: changes per second through ``Store.apply_remote`` (decode,
  chain and signature checks, clock bound, fold with ownership, history, durable commit) of
  changes from three origins over many Pods, delivered in time order in batches of about a
  thousand envelopes as gossip would, one batch right after the other (sustained throughput).
  Reference ``batch_apply_verify_each_changes_per_s``: one Ed25519 verification per change of
  the same envelopes (signature and body already extracted; a sample of 10,000), what checking
  every change would cost without the hash chain. ``batch_apply_per_verify`` is their ratio,
  which moves less between machines than either figure (though not in step: Ed25519 and the
  interpreter gain unequally from a faster CPU). The issue's 50,000 changes/s were set where a
  verification took about 0.13 ms, 6.5 times slower. Apply and reference alternate, a fresh
  receiver each round (3 rounds); each figure is the median of its rounds, the ratio the median
  of each round's ratio, so a machine whose speed drifts within minutes moves both alike.
- ``gossip_apply_changes_per_s``: the same batches through ``StoreLog.apply``, the daemon's
  path for what gossip brings (grouped by origin, each origin's run checked on its own, all in
  one transaction). Same kind of reference and ratio.
- ``gossip_paced_changes_per_s``: the same through ``StoreLog.apply`` with a 50 ms pause after
  each batch, as a daemon sees gossip arrive between its other work. No target: a CPU that
  idles or does other work between batches comes back to them slower (caches, clocks); the
  reference is the sustained ``gossip_apply_changes_per_s`` of the same run.
- ``catchup_apply_changes_per_s``: the same changes into a fresh store, cut the way a catch-up
  after time offline arrives: ``Store.missing()`` chunks of ``CATCHUP_CHUNK_BYTES`` (4 MiB,
  about 15,000 changes), each applied in one transaction. Same kind of reference and ratio.
- ``history_10k_ms``: ``Store.history(kind, name)`` of one Pod with 10,000 revisions (median of
  several calls). Reference ``history_raw_scan_ms``: a raw LMDB cursor walk over the same history
  index entries, without decoding them.
- ``bytes_per_change``: the receiver store's file high-water mark (LMDB ``last_pgno + 1`` pages
  times the page size, free pages included, as ``Store.stat()["used"]``) divided by the changes
  it holds, after the batch apply. ``live_bytes_per_change`` counts only pages in the B-trees
  (meta, main and named databases). Reference ``envelope_bytes_per_change``: the mean size of a
  change envelope on the wire.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

# Run as a script, this file's directory comes first on sys.path, where `import store` would
# find this very file instead of the store package: put the repository root there instead.
_HERE = FsPath(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if FsPath(p or ".").resolve() != _HERE]

import cbor2  # noqa: E402
import lmdb  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from rich.console import Console  # noqa: E402

from bench._report import Report, describe_machine, percentile, print_table  # noqa: E402
from bench._report import machine as base_machine  # noqa: E402
from edgenode._ownership import KIND_RULES  # noqa: E402
from gossip.logs import StoreLog  # noqa: E402
from store import (  # noqa: E402
    ChangeId,
    Hlc,
    KeyEntry,
    Op,
    Path,
    Rules,
    Store,
    _change,
    _fold,
    make_change,
)
from store._change import use_native  # noqa: E402
from store._fold import use_native_fold  # noqa: E402
from store.db import CATCHUP_CHUNK_BYTES  # noqa: E402

RULES: Rules = KIND_RULES  # the product's own ownership rules
ORIGINS = ("n1", "n2", "n3")
IMAGE = ("spec", "containers", "web", "image")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks everything for a smoke run."""

    commits: int = 2_000
    changes: int = 60_000
    pods: int = 1_000
    batch: int = 1_000
    revisions: int = 10_000
    history_calls: int = 7
    rounds: int = 3
    verify_sample: int = 10_000


QUICK = Sizes(
    commits=100,
    changes=3_000,
    pods=60,
    batch=500,
    revisions=1_000,
    history_calls=3,
    rounds=1,
    verify_sample=1_000,
)
PACE_S = 0.05
"""The pause after each batch of ``gossip_paced``."""


# --- helpers ---------------------------------------------------------------------------------


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def named_db(env: Any, name: bytes) -> Any:
    """A handle on one of the store's named databases (names from `store/db.py`)."""
    return env.open_db(name, create=False)


def live_pages(env: Any) -> int:
    """Pages in B-trees: two meta pages, the main database and every named database."""
    with env.begin() as txn:
        names = [bytes(k) for k, _ in txn.cursor()]  # the main database names the others
    stats: list[dict[str, int]] = [env.stat()]
    for name in names:
        db = named_db(env, name)
        with env.begin() as txn:
            stats.append(txn.stat(db))
    return 2 + sum(st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"] for st in stats)


def open_store(path: FsPath, node_id: str, key: Ed25519PrivateKey | None = None) -> Store:
    return Store(
        path,
        node_id=node_id,
        signing_key=key or Ed25519PrivateKey.generate(),
        rules=RULES,
        node_managers=[f"node:{node_id}", "placement", "user"],
    )


def pod_spec(name: str, image: str) -> list[Op]:
    """The ops creating a Pod like examples/pod-web.yaml."""
    web = ("spec", "containers", "web")
    return [
        Op("new", ()),
        Op("set", ("metadata", "labels", "app"), name),
        Op("set", ("metadata", "labels", "tier"), "frontend"),
        Op("set", ("spec", "restartPolicy"), "always"),
        Op("set", (*web, "image"), image),
        Op("set", (*web, "command"), ["httpd", "-f", "-p", "8080"]),
        Op("set", (*web, "env", "LOG_LEVEL"), "info"),
        Op("set", (*web, "ports", "http", "containerPort"), 8080),
        Op("set", (*web, "resources", "cpu"), "250m"),
        Op("set", (*web, "resources", "memory"), "64Mi"),
    ]


# --- the workload: changes as three origins would have made them -----------------------------


@dataclass(slots=True)
class _Pod:
    name: str
    exists: bool = False
    node: str | None = None
    writers: dict[Path, ChangeId] = field(default_factory=dict)
    fields: set[Path] = field(default_factory=set)


class Workload:
    """Signed, hash-chained changes from three origins, in time order.

    Each Pod is created by ``user`` (``new`` plus the fields of a small manifest), assigned by
    ``placement`` to one of the origins, whose node then reports ``status`` as ``node:<origin>``;
    ``user`` edits the spec (and now and then deletes a Pod, later re-created). Every change
    comes from the origin a real cluster would write it on, with ``seen`` naming the writer of
    each field it overwrites (so the fold records no false conflicts), and a timestamp later than
    every earlier change (the receiver keeps up with gossip).
    """

    def __init__(self, *, rng: random.Random, end_ms: int, changes: int) -> None:
        self.rng = rng
        self.keys = {o: Ed25519PrivateKey.generate() for o in ORIGINS}
        self.heads: dict[str, tuple[int, bytes]] = {o: (0, b"\0" * 32) for o in ORIGINS}
        self.wall = end_ms - 10 * changes - 1_000  # ~10 ms apart, the newest in the past
        self.counter = 0
        self.envelopes: list[bytes] = []

    def key_entries(self) -> list[KeyEntry]:
        return [
            KeyEntry(o, public_bytes(k), (f"node:{o}", "placement", "user"))
            for o, k in self.keys.items()
        ]

    def _hlc(self) -> Hlc:
        step = self.rng.randrange(0, 20)
        if step:
            self.wall += step
            self.counter = 0
        else:
            self.counter += 1
        return Hlc(self.wall, self.counter)

    def emit(self, origin: str, pod: _Pod, ops: list[Op], manager: str) -> None:
        touched: list[Path] = []
        for op in ops:
            if op.op == "del" and not op.path:
                touched.extend(sorted(pod.fields))
            touched.append(op.path)
        seen = [(p, pod.writers[p]) for p in dict.fromkeys(touched) if p in pod.writers]
        seq, prev = self.heads[origin]
        change = make_change(
            signer=self.keys[origin],
            origin=origin,
            seq=seq + 1,
            prev=prev,
            kind="Pod",
            name=pod.name,
            hlc=self._hlc(),
            author=origin,
            manager=manager,
            ops=ops,
            seen=seen,
        )
        self.heads[origin] = (seq + 1, change.digest)
        self.envelopes.append(change.envelope)
        for p in touched:
            pod.writers[p] = change.id
        for op in ops:
            if op.op == "set":
                pod.fields.add(op.path)
            elif op.op == "del":
                pod.fields.clear()
                pod.exists, pod.node = False, None
            elif op.op == "new":
                pod.exists = True

    def step(self, pod: _Pod, i: int) -> None:
        rng = self.rng
        anywhere = rng.choice(ORIGINS)
        if not pod.exists:
            self.emit(anywhere, pod, pod_spec(pod.name, f"busybox:{i}"), "user")
        elif pod.node is None:
            pod.node = rng.choice(ORIGINS)
            self.emit(anywhere, pod, [Op("set", ("assignment", "node"), pod.node)], "placement")
        else:
            r = rng.random()
            if r < 0.60:
                ops = [Op("set", ("status", "phase"), rng.choice(("running", "running", "ready")))]
                if rng.random() < 0.5:
                    ops.append(Op("set", ("status", "containers", "web", "restarts"), i % 7))
                if rng.random() < 0.3:
                    ops.append(Op("set", ("status", "observedAt"), self.wall))
                self.emit(pod.node, pod, ops, f"node:{pod.node}")
            elif r < 0.90:
                self.emit(anywhere, pod, [Op("set", IMAGE, f"busybox:1.{i}")], "user")
            elif r < 0.96:
                label = ("metadata", "labels", "rev")
                self.emit(anywhere, pod, [Op("set", label, str(i))], "user")
            elif r < 0.99:
                self.emit(anywhere, pod, [Op("set", ("assignment", "node"), pod.node)], "placement")
            else:
                self.emit(anywhere, pod, [Op("del", ())], "user")

    def generate(self, *, pods: int, changes: int) -> None:
        """`changes` changes over `pods` Pods, created at a steady pace among the edits."""
        every = max(1, changes // pods)
        live: list[_Pod] = []
        for i in range(changes):
            if len(live) < pods and i % every == 0:
                pod = _Pod(f"web-{len(live)}")
                live.append(pod)
            else:
                pod = self.rng.choice(live)
            self.step(pod, i)


# --- the figures -----------------------------------------------------------------------------


def bench_local_commit(root: FsPath, sizes: Sizes, report: Report) -> None:
    with open_store(root / "local", "bench") as store:
        store.commit("Pod", "web", pod_spec("web", "busybox"), manager="user")
        env = store._env
        spare = env.open_db(b"bench-raw")  # the store uses 6 of its 8 named databases
        values = [os.urandom(300) for _ in range(sizes.commits)]
        commit_ms: list[float] = []
        raw_ms: list[float] = []
        perf = time.perf_counter
        gc.collect()
        for i in range(sizes.commits):
            t0 = perf()
            store.commit("Pod", "web", [Op("set", IMAGE, f"busybox:{i}")], manager="user")
            t1 = perf()
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), values[i], db=spare)
            t2 = perf()
            commit_ms.append((t1 - t0) * 1e3)
            raw_ms.append((t2 - t1) * 1e3)
    commit_ms.sort()
    raw_ms.sort()
    p50 = percentile(commit_ms, 0.5)
    report.add(
        "local_commit_ms_p50",
        p50,
        "ms",
        target="≤ 2",
        met=p50 <= 2,
        reference=("lmdb_commit_ms_p50", percentile(raw_ms, 0.5)),
    )
    report.add(
        "local_commit_ms_p99",
        percentile(commit_ms, 0.99),
        "ms",
        reference=("lmdb_commit_ms_p99", percentile(raw_ms, 0.99)),
    )
    report.sizes["commits"] = sizes.commits


class Verifier:
    """The reference of the apply figures: one Ed25519 verification per change of the same
    envelopes (signature and body extracted beforehand, not timed), what checking every change
    would cost without the hash chain. A rate is a rate: an even sample of `sample` envelopes
    is verified, all of them if there are fewer."""

    def __init__(
        self, envelopes: Sequence[bytes], keys: dict[str, Ed25519PublicKey], sample: int
    ) -> None:
        step = max(1, len(envelopes) // sample)
        self.work: list[tuple[Ed25519PublicKey, bytes, bytes]] = []
        for env in envelopes[::step]:
            body, sig, _ = cbor2.loads(env)
            self.work.append((keys[cbor2.loads(body)[1]], sig, body))

    def rate(self) -> float:
        """Verifications per second, one after the other."""
        gc.collect()
        t0 = time.perf_counter()
        for key, sig, body in self.work:
            key.verify(sig, body)
        return len(self.work) / (time.perf_counter() - t0)


def apply_rate(
    apply: Callable[[Sequence[bytes]], int],
    chunks: Sequence[Sequence[bytes]],
    *,
    pause: float = 0.0,
) -> float:
    """Changes per second of `apply` (which says how many changes were new: every change must
    be) over `chunks`, one after the other, sleeping `pause` seconds (not timed) after each."""
    applied = total = 0
    elapsed = 0.0
    gc.collect()
    for chunk in chunks:
        t0 = time.perf_counter()
        applied += apply(chunk)
        elapsed += time.perf_counter() - t0
        total += len(chunk)
        if pause:
            time.sleep(pause)
    if applied != total:
        raise RuntimeError(f"applied {applied} of {total} changes")
    return total / elapsed


def in_batches(envelopes: Sequence[bytes], batch: int) -> list[Sequence[bytes]]:
    return [envelopes[i : i + batch] for i in range(0, len(envelopes), batch)]


def catchup_chunks(envelopes: Sequence[bytes]) -> list[list[bytes]]:
    """The envelopes cut the way `Store.missing()` cuts a catch-up: CATCHUP_CHUNK_BYTES each."""
    chunks: list[list[bytes]] = [[]]
    size = 0
    for env in envelopes:
        if chunks[-1] and size + len(env) > CATCHUP_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(env)
        size += len(env)
    return chunks


class _Credentials:
    """The credential book of a `StoreLog` whose keys are registered beforehand."""

    def add_all(self, blobs: Sequence[bytes]) -> list[str]:
        return []


def gossip_apply(store: Store) -> Callable[[Sequence[bytes]], int]:
    """Apply as the daemon applies what gossip brings: `StoreLog.apply` of each batch."""
    log = StoreLog(store, _Credentials())  # type: ignore[arg-type]

    def apply(chunk: Sequence[bytes]) -> int:
        result = log.apply(chunk, [])
        if result.refused:
            raise RuntimeError(f"refused: {result.refused[0].reason}")
        return result.applied

    return apply


def check_accepted(store: Store, names: Sequence[str]) -> None:
    """The workload is meant to be accepted as written: no refusal, no false conflict."""
    for name in names:
        for rev in store.history("Pod", name):
            if rev.refused or rev.conflicts:
                raise RuntimeError(f"Pod/{name} revision {rev.revision}: {rev.to_json()}")


RATIO_TARGET = 6.5
"""The apply target as a ratio to the reference: the issue's 50,000 changes/s were set where
one Ed25519 verification took about 0.13 ms (about 7,700 verifications/s)."""


@dataclass(frozen=True, slots=True)
class Mode:
    """One way the same changes reach a receiver: how they are applied, cut and paced."""

    name: str
    apply: Callable[[Store], Callable[[Sequence[bytes]], int]]
    chunks: Sequence[Sequence[bytes]]
    pause: float = 0.0


@dataclass(slots=True)
class Rounds:
    """Each round's apply rate and the reference measured right after it."""

    rates: list[float] = field(default_factory=list)
    references: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def reference(self) -> float:
        return statistics.median(self.references)

    @property
    def ratio(self) -> float:
        return statistics.median(r / v for r, v in zip(self.rates, self.references, strict=True))


def remote_apply(store: Store) -> Callable[[Sequence[bytes]], int]:
    return lambda chunk: len(store.apply_remote(chunk).applied)


def bench_batch_apply(root: FsPath, sizes: Sizes, report: Report, rng: random.Random) -> None:
    work = Workload(rng=rng, end_ms=now_ms(), changes=sizes.changes)
    work.generate(pods=sizes.pods, changes=sizes.changes)
    envelopes = work.envelopes
    n = len(envelopes)
    verifier = Verifier(
        envelopes, {o: k.public_key() for o, k in work.keys.items()}, sizes.verify_sample
    )
    batches, chunks = in_batches(envelopes, sizes.batch), catchup_chunks(envelopes)
    modes = (
        Mode("batch_apply", remote_apply, batches),
        Mode("gossip_apply", gossip_apply, batches),
        Mode("catchup_apply", remote_apply, chunks),
        Mode("gossip_paced", gossip_apply, batches, PACE_S),
    )
    measured = {mode.name: Rounds() for mode in modes}
    digests: set[str] = set()
    for r in range(sizes.rounds):
        for mode in modes:
            with open_store(root / f"{mode.name}-{r}", mode.name) as store:
                for entry in work.key_entries():
                    store.register_key(entry)
                measured[mode.name].rates.append(
                    apply_rate(mode.apply(store), mode.chunks, pause=mode.pause)
                )
                measured[mode.name].references.append(verifier.rate())
                held = sum(store.version_vector().get(o, 0) for o in ORIGINS)
                if held != n:
                    raise RuntimeError(f"{mode.name}: the receiver holds {held} of {n} changes")
                digests.add(store.state_digest())
                if r == 0 and mode.name == "batch_apply":
                    check_accepted(store, [f"web-{i}" for i in range(0, sizes.pods, 20)])
                    info, st = store._env.info(), store._env.stat()
                    used = (info["last_pgno"] + 1) * st["psize"]
                    live = live_pages(store._env) * st["psize"]
            shutil.rmtree(root / f"{mode.name}-{r}")
    if len(digests) != 1:
        raise RuntimeError(f"the receivers folded {len(digests)} different states, not one")
    for name in ("batch_apply", "gossip_apply", "catchup_apply"):
        m = measured[name]
        report.add(
            f"{name}_changes_per_s",
            m.rate,
            "changes/s",
            target="≥ 50,000",
            met=m.rate >= 50_000,
            reference=(f"{name}_verify_each_changes_per_s", m.reference),
        )
        report.add(
            f"{name}_per_verify",
            m.ratio,
            "×",
            target=f"≥ {RATIO_TARGET}",
            met=m.ratio >= RATIO_TARGET,
        )
    report.add(
        "gossip_paced_changes_per_s",
        measured["gossip_paced"].rate,
        "changes/s",
        reference=("gossip_apply_changes_per_s", measured["gossip_apply"].rate),
    )
    report.values["verify_each_changes_per_s"] = report.values[
        "batch_apply_verify_each_changes_per_s"
    ]
    wire = sum(map(len, envelopes)) / n
    report.add("bytes_per_change", used / n, "bytes", reference=("envelope_bytes_per_change", wire))
    report.add(
        "live_bytes_per_change", live / n, "bytes", reference=("envelope_bytes_per_change", wire)
    )
    report.add("envelope_bytes_per_change", wire, "bytes")
    report.sizes.update(
        changes=n,
        pods=sizes.pods,
        batch=sizes.batch,
        catchup_chunks=len(chunks),
        origins=len(ORIGINS),
        rounds=sizes.rounds,
        verified=len(verifier.work),
    )


def bench_history(root: FsPath, sizes: Sizes, report: Report, rng: random.Random) -> None:
    work = Workload(rng=rng, end_ms=now_ms(), changes=sizes.revisions)
    pod = _Pod("big")
    while len(work.envelopes) < sizes.revisions:
        work.step(pod, len(work.envelopes))
    envelopes = work.envelopes
    with open_store(root / "history", "rx") as store:
        for entry in work.key_entries():
            store.register_key(entry)
        apply_rate(remote_apply(store), in_batches(envelopes, sizes.batch))
        check_accepted(store, ["big"])
        env = store._env
        history_db = named_db(env, b"history")
        prefix = b"Pod\0big\0"  # history keys: kind \0 name \0 hlc origin \0 seq

        def raw_scan() -> int:
            n = 0
            with env.begin() as txn:
                cur = txn.cursor(db=history_db)
                if cur.set_range(prefix):
                    for key, _value in cur:  # both read, neither decoded
                        if not key.startswith(prefix):
                            break
                        n += 1
            return n

        def history() -> int:
            return len(store.history("Pod", "big"))

        api_ms = median_ms(history, sizes.history_calls, expect=len(envelopes))
        raw_ms = median_ms(raw_scan, sizes.history_calls, expect=len(envelopes))
    report.add(
        "history_10k_ms",
        api_ms,
        "ms",
        target="≤ 50",
        met=api_ms <= 50,
        reference=("history_raw_scan_ms", raw_ms),
    )
    report.sizes["revisions"] = len(envelopes)


def median_ms(fn: Callable[[], int], calls: int, *, expect: int) -> float:
    times: list[float] = []
    gc.collect()
    for _ in range(calls):
        t0 = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t0)
        if got != expect:
            raise RuntimeError(f"expected {expect} history entries, got {got}")
    return statistics.median(times) * 1e3


# --- output ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        **base_machine(),
        "lmdb": ".".join(map(str, lmdb.version())),
        "py_lmdb": lmdb.__version__,
        "change_decoder": "C (store/_cchange.c)" if _change._native else "Python (reference)",
        "fold": "C (store/_cchange.c)" if _fold._native_fold else "Python (reference)",
    }


def show(report: Report, facts: dict[str, Any], where: str, elapsed: float, *, quick: bool) -> None:
    title = "edgenode store benchmark"
    if quick:
        title += " (--quick: sizes too small to judge the targets)"
    sizes = ", ".join(f"{k}={v:,}" for k, v in report.sizes.items())
    footer = [
        f"machine: {describe_machine(facts)}, LMDB {facts['lmdb']} (py-lmdb "
        f"{facts['py_lmdb']}); changes decoded in {facts['change_decoder']}, folded in "
        f"{facts['fold']}; stores under {where}",
        f"sizes: {sizes}; took {elapsed:.1f} s",
    ]
    print_table(title, report, footer, judged=not quick)


def run(sizes: Sizes, where: str | None, seed: int) -> tuple[Report, str]:
    rng = random.Random(seed)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="edgenode-bench-", dir=where) as tmp:
        root = FsPath(tmp)
        bench_local_commit(root, sizes, report)
        bench_batch_apply(root, sizes, report, rng)
        bench_history(root, sizes, report, rng)
        return report, str(root.parent)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--dir", help="where to create the temporary stores (default: $TMPDIR)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument(
        "--python-only",
        action="store_true",
        help="decode and fold changes with the Python reference alone, not store/_cchange.c",
    )
    args = parser.parse_args(argv)
    use_native(not args.python_only)
    use_native_fold(not args.python_only)
    sizes = QUICK if args.quick else Sizes()
    t0 = time.perf_counter()
    if not args.json:
        with Console(stderr=True).status("running the store benchmark…"):
            report, where = run(sizes, args.dir, args.seed)
    else:
        report, where = run(sizes, args.dir, args.seed)
    elapsed = time.perf_counter() - t0
    facts = machine()
    if args.json:
        out: dict[str, Any] = dict(report.values)
        out.update(machine=facts, sizes=report.sizes, quick=args.quick, seconds=elapsed)
        out["figures"] = report.rows()
        print(json.dumps(out))
    else:
        show(report, facts, where, elapsed, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
