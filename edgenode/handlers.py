"""The local API's verbs, served by the daemon (see `edgenode.client` for the other side).

Each verb takes plain JSON arguments and returns plain JSON; errors are `ApiError`s with the
CLI's exit code. Reads and writes of the store run in worker threads. Manifests arrive as text
and are validated here, so the CLI process never imports the object model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import yaml

from edgenode import local
from edgenode._confirm import parse_confirmations, unconfirmed
from edgenode._protocol import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNCONFIRMED,
    ApiError,
)
from edgenode.daemon import Refusal
from edgenode.objects import (
    FieldProblem,
    Manifest,
    ManifestError,
    duplicate_problems,
    load_manifests_text,
    parse_document,
)
from sandbox._image import ImageNotFoundError
from sandbox.images import ImageStoreError
from sandbox.pods import SandboxError
from store import LocalStoreError, NotFoundError, Op, OwnershipError, StoreError

if TYPE_CHECKING:
    from edgenode.daemon import Daemon

log = structlog.get_logger("edgenode.api")
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def _ref(ref: str) -> tuple[str, str]:
    try:
        return local.resolve_ref(ref)
    except local.LocalError as exc:
        raise ApiError(str(exc), EXIT_INVALID) from None


def _problems(problems: list[FieldProblem]) -> ApiError:
    lines = [p.render() for p in problems]
    count = len(problems)
    lines.append(f"{count} problem{'s' if count != 1 else ''} found; nothing was applied.")
    return ApiError("\n".join(lines), EXIT_INVALID)


class Handlers:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.store = daemon.store
        self.verbs: dict[str, Handler] = {
            "ping": self.ping,
            "apply": self.apply,
            "get": self.get,
            "describe": self.describe,
            "delete": self.delete,
            "set": self.set,
            "replace": self.replace,
            "history": self.history,
            "diff": self.diff,
            "rollback": self.rollback,
            "restart": self.restart,
            "logs": self.logs,
            "workflow": self.workflow,
            "why": self.why,
            "image.import": self.image_import,
            "image.pull": self.image_pull,
            "image.ls": self.image_ls,
            "image.rm": self.image_rm,
        }
        from edgenode.rollouts import Rollouts  # noqa: PLC0415 - the rollout verbs' module

        rollouts = Rollouts(daemon, self._user)
        for verb, run in (
            ("rollout.start", rollouts.start),
            ("rollout.pause", rollouts.pause),
            ("rollout.resume", rollouts.resume),
            ("rollout.abort", rollouts.abort),
            ("rollout.status", rollouts.status),
        ):
            self.verbs[verb] = _in_thread(run)

    async def dispatch(self, verb: str, args: dict[str, Any]) -> Any:
        handler = self.verbs.get(verb)
        if handler is None:
            raise ApiError(
                f"unknown verb {verb!r}; this daemon serves {', '.join(sorted(self.verbs))}",
                EXIT_INVALID,
            )
        try:
            return await handler(args)
        except ApiError:
            raise
        except OwnershipError as exc:
            raise ApiError(str(exc), EXIT_REFUSED) from None
        except NotFoundError as exc:
            raise ApiError(str(exc), EXIT_NOT_FOUND) from None
        except (LocalStoreError, ManifestError) as exc:
            raise ApiError(str(exc), EXIT_INVALID) from None
        except ImageNotFoundError as exc:
            raise ApiError(str(exc), EXIT_NOT_FOUND) from None
        except local.StateDirError as exc:  # the local operator's credential (`_user`)
            raise ApiError(str(exc), EXIT_FAILED) from None
        except (ImageStoreError, SandboxError, StoreError) as exc:
            raise ApiError(str(exc), EXIT_FAILED) from None

    # -- objects ------------------------------------------------------------------------------

    def _user(self) -> dict[str, Any]:
        """Who authors a ``user`` write: the node's local operator in a cluster (read and
        checked at each write, so a renewed credential takes effect), else the node."""
        author = local.user_author(self.d.state_dir)
        return {"author": author.name, "author_key": author.key} if author else {}

    async def ping(self, args: dict[str, Any]) -> Any:
        from edgenode import __version__  # noqa: PLC0415

        return {"node": self.d.name, "version": __version__}

    def _manifests(self, files: list[dict[str, str]]) -> list[Manifest]:
        manifests: list[Manifest] = []
        problems: list[FieldProblem] = []
        for f in files:
            try:
                found = load_manifests_text(f["text"], source=f["name"])
            except ManifestError as exc:
                problems.extend(exc.problems)
                continue
            if not found:
                problems.append(
                    FieldProblem.whole(
                        f["name"],
                        expected="at least one object",
                        actual="no YAML documents with content",
                        hint="Nothing was applied; check that this is the file you meant.",
                    )
                )
            manifests.extend(found)
        problems.extend(duplicate_problems(manifests))
        if problems:
            raise _problems(problems)
        return manifests

    async def apply(self, args: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self._apply, args)

    def _apply(self, args: dict[str, Any]) -> Any:
        confirmed, bad = parse_confirmations(tuple(args.get("confirm") or ()))
        if bad:
            raise ApiError("\n".join(bad) + "\nnothing was applied.", EXIT_INVALID)
        manifests = self._manifests(args["files"])
        planned = local.plan(self.store, manifests)
        refused = local.creation_refusals(planned)
        if refused:
            raise ApiError("\n".join(refused), EXIT_INVALID)
        missing = unconfirmed((p.insecure for p in planned), confirmed)
        if missing:
            message = "\n".join(u.render() for u in missing)
            for u in missing:
                self.d.state.refusals[u.ref] = Refusal(message)
            raise ApiError(
                message
                + f"\n{len(missing)} insecure setting{'s' if len(missing) != 1 else ''} not "
                "confirmed; nothing was applied.",
                EXIT_UNCONFIRMED,
            )
        out = []
        author = local.user_author(self.d.state_dir)
        for outcome in local.write(self.store, planned, author=author):
            self.d.state.refusals.pop(outcome.ref, None)
            out.append(
                {
                    "ref": outcome.ref,
                    "result": outcome.result,
                    "revision": outcome.revision,
                    "insecure": list(outcome.added),
                }
            )
        self.d.wake()
        return out

    def _get_doc(self, kind: str, name: str) -> dict[str, Any]:
        doc = self.store.get(kind, name)
        if doc is None:
            names = [o["metadata"]["name"] for o in self.store.list_objects(kind)]
            raise ApiError(
                f"{kind}/{name} does not exist on this node; "
                + (f"{kind} objects here: {', '.join(names[:20])}" if names else f"no {kind} here"),
                EXIT_NOT_FOUND,
            )
        return _public(kind, doc)

    async def get(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["kind"] + ("/" + args["name"] if args.get("name") else "/x"))
        if args.get("name"):
            return [await asyncio.to_thread(self._get_doc, kind, name)]
        docs = await asyncio.to_thread(self.store.list_objects, kind)
        return [_public(kind, d) for d in docs]

    async def describe(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])

        def render() -> str:
            try:
                described = local.describe(self.store, kind, name, state_dir=self.d.state_dir)
            except local.UnknownObjectError as exc:
                raise ApiError(str(exc), EXIT_NOT_FOUND) from None
            return "\n".join(local.describe_lines(described))

        return await asyncio.to_thread(render)

    def _not_a_deployments_pod(self, kind: str, name: str) -> None:
        owner = local.deployment_owner(self._get_doc(kind, name)) if kind == "Pod" else None
        if owner is not None:
            raise ApiError(local.owned_pod_refusal(f"{kind}/{name}", owner), EXIT_REFUSED)

    async def delete(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])
        await asyncio.to_thread(self._not_a_deployments_pod, kind, name)
        committed = await asyncio.to_thread(lambda: self.store.delete(kind, name, **self._user()))
        self.d.wake()
        return {"ref": f"{kind}/{name}", "revision": committed.revision}

    async def set(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])

        def work() -> Any:
            doc = self._get_doc(kind, name)
            ops = []
            for assignment in args["assignments"]:
                path_text, sep, value_text = assignment.partition("=")
                if not sep or not path_text:
                    raise ApiError(
                        f"{assignment!r}: expected PATH=VALUE (e.g. spec.containers.web.image="
                        "busybox:1.36), got no '='",
                        EXIT_INVALID,
                    )
                path = split_path(path_text)
                if path[0] not in ("spec", "metadata", "status", "assignment"):
                    raise ApiError(
                        f"{path_text}: expected a path under spec or metadata (e.g. "
                        f"spec.containers.web.image), got {path[0]!r}; nothing was changed",
                        EXIT_INVALID,
                    )
                value = yaml.safe_load(value_text) if value_text else ""
                _put(doc, path, value)
                ops.append(Op("set", path, value))
            if any(op.path[0] not in ("spec", "metadata") for op in ops):
                # Not the user's fields: the store refuses, naming their owner.
                self.store.commit(kind, name, ops, manager="user", **self._user())
            return self._replace_checked(kind, name, doc, args)

        return await asyncio.to_thread(work)

    async def replace(self, args: dict[str, Any]) -> Any:
        """The whole object as edited (`edit`): one change, checked like `apply`."""
        kind, name = _ref(args["ref"])
        return await asyncio.to_thread(
            self._replace_checked, kind, name, dict(args["document"]), args
        )

    def _replace_checked(
        self, kind: str, name: str, doc: dict[str, Any], args: Mapping[str, Any]
    ) -> Any:
        doc = {k: v for k, v in doc.items() if k in ("kind", "apiVersion", "metadata", "spec")}
        doc["kind"] = kind
        doc.setdefault("metadata", {})["name"] = name
        doc["metadata"].pop("revision", None)
        text = yaml.safe_dump(doc, sort_keys=False)
        return self._apply(
            {"files": [{"name": f"{kind}/{name}", "text": text}], "confirm": args.get("confirm")}
        )

    async def history(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])
        await asyncio.to_thread(self._get_doc, kind, name)
        revs = await asyncio.to_thread(self.store.history, kind, name)
        return [
            {
                "revision": r.revision,
                "change": str(r.change),
                "author": r.author,
                "manager": r.manager,
                "time": r.time_ms / 1000,
                "fields": list(r.fields),
                "created": r.created,
                "deleted": r.deleted,
                "conflicts": list(r.conflicts),
                "overwritten": list(r.overwritten),
            }
            for r in revs
        ]

    async def diff(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])
        await asyncio.to_thread(self._get_doc, kind, name)
        diffs = await asyncio.to_thread(self.store.diff, kind, name, int(args["a"]), args.get("b"))
        return [
            {"path": d.path, "change": d.change, "before": d.before, "after": d.after}
            for d in diffs
        ]

    async def rollback(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])
        await asyncio.to_thread(self._not_a_deployments_pod, kind, name)
        revision = int(args["revision"])
        rolled = await asyncio.to_thread(
            lambda: self.store.rollback(kind, name, revision, **self._user())
        )
        self.d.wake()
        return {
            "ref": f"{kind}/{name}",
            "revision": rolled.committed.revision if rolled.committed else None,
            "skipped": rolled.skipped,
        }

    # -- pods ----------------------------------------------------------------------------------

    def _pod(self, ref: str) -> str:
        kind, name = _ref(ref)
        if kind != "Pod":
            raise ApiError(f"{ref}: expected a pod (pod/NAME), got a {kind}", EXIT_INVALID)
        return name

    async def restart(self, args: dict[str, Any]) -> Any:
        name = self._pod(args["ref"])
        desired = await asyncio.to_thread(self.d._desired)
        if name not in desired:
            raise ApiError(f"pod {name} does not run on this node", EXIT_NOT_FOUND)
        containers = tuple(args.get("containers") or desired[name].pod.containers)
        record = await self.d.run_now(
            name, self.d.flows.restart(desired[name], containers, due=False)
        )
        return {"run_id": record.run_id, "outcome": record.outcome, "error": record.error}

    async def _elsewhere(self, verb: str, kind: str, name: str, args: dict[str, Any]) -> Any:
        """The answer of the node a pod is assigned to, for a verb that reads what only that
        node holds; None when this node answers itself (the pod is here, or unassigned)."""
        mesh = self.d.mesh
        if kind != "Pod" or args.get("forwarded") or mesh is None or not mesh.started:
            return None
        doc = await asyncio.to_thread(self.store.get, "Pod", name)
        node = ((doc or {}).get("assignment") or {}).get("node")
        if node is None or node == self.d.name:
            return None
        state, since = mesh.members().get(node, ("unknown", 0.0))
        if state not in ("alive", "suspect"):
            if verb == "why":
                return None  # this node's placement explains a pod whose node is lost
            seen = f"{state} since {time.strftime('%H:%M:%S', time.localtime(since))}"
            raise ApiError(
                f"pod {name} is assigned to node {node}, which this node's membership holds "
                f"{seen if since else state}: only that node has its {verb}; ask again once "
                f"it is back (edgenode nodes), or edgenode why pod/{name}",
                EXIT_FAILED,
            )
        if verb == "logs" and args.get("follow"):
            raise ApiError(
                f"pod {name} runs on node {node}: follow its logs there (or --node {node} in a "
                "lab); without -f any node shows them",
                EXIT_INVALID,
            )
        return await mesh.ask(node, verb, args)

    async def logs(self, args: dict[str, Any]) -> Any:
        name = self._pod(args["ref"])
        remote = await self._elsewhere("logs", "Pod", name, args)
        if remote is not None:
            return _items(remote)
        if name not in self.d.sandbox.pods():
            raise ApiError(f"pod {name} has no containers on this node (yet)", EXIT_NOT_FOUND)
        definition = self.d.sandbox.definition(name)
        container = args.get("container")
        if container is None:
            if len(definition.containers) != 1:
                raise ApiError(
                    f"pod {name} has containers {', '.join(sorted(definition.containers))}; "
                    "name one: edgenode logs pod/NAME CONTAINER",
                    EXIT_INVALID,
                )
            container = next(iter(definition.containers))
        lines = self.d.sandbox.logs(
            name, container, tail=args.get("tail"), follow=bool(args.get("follow"))
        )
        timestamps = bool(args.get("timestamps"))

        async def items() -> AsyncIterator[Any]:
            it = iter(lines)
            while True:
                line = await asyncio.to_thread(next, it, None)
                if line is None:
                    return
                yield line.render(timestamps=timestamps)

        return items()

    async def workflow(self, args: dict[str, Any]) -> Any:
        kind, name = _ref(args["ref"])
        remote = await self._elsewhere("workflow", kind, name, args)
        if remote is not None:
            return remote
        return await asyncio.to_thread(
            self.d.flows.render, f"{kind}/{name}", args.get("format", "text"), args.get("run_id")
        )

    async def why(self, args: dict[str, Any]) -> Any:
        from edgenode.why import explain  # noqa: PLC0415

        kind, name = _ref(args["ref"])
        remote = await self._elsewhere("why", kind, name, args)
        if remote is not None:
            return remote
        return await asyncio.to_thread(explain, self.d, kind, name)

    # -- images -------------------------------------------------------------------------------

    async def image_import(self, args: dict[str, Any]) -> Any:
        image = await asyncio.to_thread(
            self.d.images.import_file, Path(args["path"]), args.get("name")
        )
        return image.to_json()

    async def image_pull(self, args: dict[str, Any]) -> Any:
        image = await asyncio.to_thread(self.d.images.pull, args["reference"])
        return image.to_json()

    async def image_ls(self, args: dict[str, Any]) -> Any:
        return [i.to_json() for i in await asyncio.to_thread(self.d.images.list)]

    async def image_rm(self, args: dict[str, Any]) -> Any:
        image = await asyncio.to_thread(self.d.images.remove, args["reference"])
        return image.to_json()


def _in_thread(run: Callable[[dict[str, Any]], Any]) -> Handler:
    """A verb whose work (store reads and writes) runs in a worker thread."""

    async def handler(args: dict[str, Any]) -> Any:
        return await asyncio.to_thread(run, args)

    return handler


async def _items(values: Any) -> AsyncIterator[Any]:
    """A relayed list of streamed items, streamed again."""
    for value in values if isinstance(values, list) else [values]:
        yield value


def _public(kind: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """An object as `-o json` shows it: kind, metadata (with revision), spec, status."""
    out = {"kind": kind, **{k: v for k, v in doc.items() if k != "kind"}}
    out.setdefault("status", {})
    return out


def split_path(text: str) -> tuple[str, ...]:
    """``spec.containers.web.image`` -> its parts; ``\\.`` is a dot inside a part (label keys:
    ``metadata.labels.example\\.com/disk``)."""
    parts = [p.replace("\0", ".") for p in text.replace("\\.", "\0").split(".")]
    return tuple(parts)


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


__all__ = ["Handlers", "parse_document"]
