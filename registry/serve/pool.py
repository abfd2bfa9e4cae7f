"""The models one serving process holds, and the hot-swap of ``TASK:ALIAS`` on promotion.

One :class:`~registry.backbone.Backbone` per base model is loaded once; every adapter version
and fusion served over that base is loaded *beside* the others on it (fusions under their own
layer names, so two fusions over the same members coexist). A forward pass activates one
entity's setup, so all forwards and all loads run under one lock (:attr:`ModelPool.lock`).

Hot-swap: :meth:`ModelPool.refresh` (called every ``poll_interval`` seconds by the watcher
thread) reads the aliases; when ``TASK:ALIAS`` points somewhere new it loads the new entity
beside the old one from its artifact, whose files are re-hashed against the recorded sha256
on the way (:meth:`Registry.artifact_path`), and only then replaces the task's entry in one
dict assignment. Requests already queued keep the :class:`Served` they resolved, so every
answer comes from exactly one version. A failed load leaves the old entry in place and is
reported by ``/v1/models``, ``/health`` and the swap counter.

Unloading: the entity a swap replaced is *retired*. One poll interval later (time for the
requests already queued for it to be answered) the next refresh removes its fusion layer, head
and any member adapters that nothing still loaded uses, so memory stays flat over any number of
promotions. A request that still holds a retired entity after that finds it reloaded, verified,
by :meth:`ModelPool.predict`: it is never answered by a half-removed model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import entities as E
from ..data import Example
from ..errors import NotFound, RegistryError
from .config import ServeConfig

if TYPE_CHECKING:
    from ..backbone import Backbone
    from ..loader import Loaded
    from ..store import Registry

log = logging.getLogger("registry.serve")


@dataclass(frozen=True)
class Served:
    """One loaded adapter version or fusion, ready to answer."""

    entity: E.Entity
    task: E.Task
    loaded: Loaded
    loaded_at: float
    load_seconds: float

    @property
    def uid(self) -> str:
        """Return the entity's unambiguous id (``a3``, ``f2``)."""
        return self.entity.uid

    def describe(self) -> dict[str, Any]:
        """Return what a response says about the model that answered."""
        return {
            "ref": self.entity.ref,
            "id": self.entity.uid,
            "kind": self.entity.kind,
            "task": self.task.name,
            "sha256": self.entity.artifact_sha256,
        }


@dataclass
class SwapEvent:
    """One attempt to follow an alias to a new target."""

    task: str
    alias: str
    old: str | None
    new: str
    ok: bool
    at: float
    seconds: float
    error: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the event as JSON-ready data."""
        return {
            "task": self.task,
            "alias": self.alias,
            "from": self.old,
            "to": self.new,
            "ok": self.ok,
            "at": _iso(self.at),
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "hint": self.hint,
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class ModelPool:
    """Backbones per base model, entities loaded on them, and each task's served entity."""

    registry: Registry
    config: ServeConfig
    on_swap: Callable[[SwapEvent], None] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    device: str = "cpu"
    _backbones: dict[int, Backbone] = field(default_factory=dict)
    _loaded: dict[str, Served] = field(default_factory=dict)
    _serving: dict[str, Served] = field(default_factory=dict)
    _failed: dict[str, tuple[str, SwapEvent]] = field(default_factory=dict)
    _retired: dict[str, float] = field(default_factory=dict)
    unloads: int = 0
    events: deque[SwapEvent] = field(default_factory=lambda: deque(maxlen=100))
    last_poll: float | None = None
    poll_error: str | None = None
    started: bool = False

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        """Pick the device and threads, then load every task's alias (when preloading)."""
        import torch

        from ..runtime import pick_device

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.device = pick_device(self.config.device)
        if self.config.precision == "fp16" and not self.device.startswith("cuda"):
            from ..errors import InvalidInput

            raise InvalidInput(
                "fp16 inference needs a GPU.", hint="Use --precision bf16 or fp32 on a CPU."
            )
        if self.config.preload:
            self.refresh()
        self.started = True

    # ------------------------------------------------------------------ loading
    def load(self, entity: E.Entity) -> Served:
        """Return ``entity`` loaded (once per process) beside everything else, verified."""
        from ..loader import load_backbone_for, load_entity

        cached = self._loaded.get(entity.uid)
        if cached is not None:
            return cached
        with self.lock:
            cached = self._loaded.get(entity.uid)
            if cached is not None:
                return cached
            started = time.perf_counter()
            backbone = self._backbones.get(entity.base_model_id)
            if backbone is None:
                backbone = load_backbone_for(self.registry, entity, self.device)
                self._backbones[entity.base_model_id] = backbone
            # load_entity re-hashes every artifact it reads against the sha256 in its row.
            loaded = load_entity(self.registry, entity, self.device, backbone=backbone, named=True)
            task = self.registry.get_task_by_id(entity.task_id)
            served = Served(entity, task, loaded, time.time(), time.perf_counter() - started)
            self._loaded[entity.uid] = served
            return served

    def resolve(self, ref: str) -> Served:
        """Return the entity a REF names, loading it on first use."""
        return self.load(self.registry.resolve(ref))

    def for_task(self, task: str) -> Served:
        """Return what answers for ``task`` now (its alias target)."""
        served = self._serving.get(task)
        if served is None:
            known = ", ".join(sorted(self._serving)) or "none"
            raise NotFound(
                f"Task {task!r} is not served: it has no {self.config.alias!r} alias "
                f"(served tasks: {known}).",
                hint=f"Promote a model: adapter-registry alias {task} {self.config.alias} REF, "
                "or send a ref instead of a task.",
            )
        return served

    def loaded(self) -> list[Served]:
        """Return everything loaded in this process (served or asked for by REF), by id."""
        return sorted(self._loaded.values(), key=lambda s: s.uid)

    def serving(self) -> dict[str, Served]:
        """Return a snapshot of task → served entity."""
        return dict(self._serving)

    def failures(self) -> dict[str, dict[str, Any]]:
        """Return the swaps that failed and still stand (the alias still points there)."""
        return {task: event.to_dict() for task, (_, event) in self._failed.items()}

    def memory(self) -> dict[str, int]:
        """Return parameter bytes: the base models, and everything loaded beside them."""
        total = base = 0
        for backbone in self._backbones.values():
            all_bytes, base_bytes = backbone.parameter_bytes()
            total += all_bytes
            base += base_bytes
        return {"parameter_bytes": total, "base_bytes": base, "extra_bytes": total - base}

    def _unload_retired(self) -> list[str]:
        """Unload retired entities older than one poll interval; return their refs."""
        due = time.time() - self.config.poll_interval
        done: list[str] = []
        with self.lock:
            serving = {s.uid for s in self._serving.values()}
            for uid, retired_at in list(self._retired.items()):
                if uid in serving:  # promoted back before it was unloaded
                    del self._retired[uid]
                    continue
                if retired_at > due:
                    continue
                del self._retired[uid]
                served = self._loaded.pop(uid, None)
                if served is not None:
                    self._unload(served)
                    done.append(served.entity.ref)
        return done

    def _unload(self, served: Served) -> None:
        """Remove ``served``'s modules that no other loaded entity uses (under the lock)."""
        loaded = served.loaded
        used_adapters: set[str] = set()
        used_heads: set[str] = set()
        for other in self._loaded.values():
            if other.loaded.backbone is loaded.backbone:
                setup = other.loaded.setup
                used_adapters.update([setup] if isinstance(setup, str) else setup)
                used_heads.add(other.loaded.head)
        members = [loaded.setup] if isinstance(loaded.setup, str) else list(loaded.setup)
        gone = [m for m in members if m not in used_adapters]
        # an adapter version's head is loaded under the adapter's own name (loader.attach_adapter)
        heads = [h for h in [loaded.head, *gone] if h not in used_heads and h not in used_adapters]
        loaded.backbone.unload(gone, fusion=loaded.fusion_name, heads=heads)
        self.unloads += 1
        log.info("unloaded %s (retired)", served.entity.ref)

    # ------------------------------------------------------------------ hot-swap
    def refresh(self) -> list[SwapEvent]:
        """Follow every ``TASK:ALIAS`` to its current target; return the swaps attempted."""
        try:
            aliases = [a for a in self.registry.aliases() if a.alias == self.config.alias]
        except RegistryError as err:
            self.poll_error = err.message
            log.warning("reading the aliases failed: %s", err.message)
            return []
        except Exception as err:  # a database hiccup must not kill the watcher
            self.poll_error = f"{type(err).__name__}: {err}"
            log.warning("reading the aliases failed: %s", self.poll_error)
            return []
        self.poll_error = None
        self.last_poll = time.time()
        events = []
        self._unload_retired()
        for alias in aliases:
            target = f"{alias.target_kind[0]}{alias.target_id}"
            current = self._serving.get(alias.task)
            if current is not None and current.uid == target:
                self._failed.pop(alias.task, None)
                continue
            failed = self._failed.get(alias.task)
            if failed is not None and failed[0] == target:
                continue  # already tried and reported; retried when the alias moves again
            events.append(self._swap(alias, target, current))
        return events

    def _swap(self, alias: E.Alias, target: str, current: Served | None) -> SwapEvent:
        started = time.perf_counter()
        old = current.entity.ref if current else None
        try:
            entity = self.registry.get_entity(alias.target_kind, alias.target_id)
            served = self.load(entity)
        except Exception as err:
            message = err.message if isinstance(err, RegistryError) else f"{err}"
            hint = err.hint if isinstance(err, RegistryError) else None
            event = SwapEvent(
                alias.task,
                alias.alias,
                old,
                alias.target_ref,
                False,
                time.time(),
                time.perf_counter() - started,
                message,
                hint or "Run: adapter-registry verify",
            )
            self._failed[alias.task] = (target, event)
            log.error(
                "%s:%s → %s failed to load; still serving %s: %s",
                alias.task,
                alias.alias,
                alias.target_ref,
                old,
                message,
            )
        else:
            self._serving[alias.task] = served  # the switch: one dict assignment
            self._failed.pop(alias.task, None)
            self._retired.pop(served.uid, None)
            if current is not None and current.uid not in {s.uid for s in self._serving.values()}:
                self._retired[current.uid] = time.time()
            event = SwapEvent(
                alias.task,
                alias.alias,
                old,
                served.entity.ref,
                True,
                time.time(),
                time.perf_counter() - started,
            )
            log.info("%s:%s now %s (was %s)", alias.task, alias.alias, served.entity.ref, old)
        self.events.append(event)
        if self.on_swap is not None:
            self.on_swap(event)
        return event

    # ------------------------------------------------------------------ inference
    def predict(self, served: Served, examples: list[Example]) -> list[dict[str, Any]]:
        """Run one batch through ``served`` (one setup, one version) and return predictions."""
        import contextlib

        import torch

        from ..inference import predict_examples

        precision = self.config.precision
        with self.lock:
            if self._loaded.get(served.uid) is not served:
                # retired and unloaded while this request waited: reload it, verified
                served = self.load(served.entity)
            served.loaded.activate()
            if precision == "fp32":
                autocast: Any = contextlib.nullcontext()
            else:
                dtype = torch.bfloat16 if precision == "bf16" else torch.float16
                autocast = torch.autocast(self.device.split(":")[0], dtype=dtype)
            # inference_mode skips autograd's bookkeeping that no_grad still does.
            with torch.inference_mode(), autocast:
                return predict_examples(
                    served.loaded,
                    examples,
                    batch_size=self.config.max_batch,
                    max_length=self.config.max_length,
                )


class Watcher(threading.Thread):
    """Calls :meth:`ModelPool.refresh` every ``poll_interval`` seconds until stopped."""

    def __init__(self, pool: ModelPool) -> None:
        super().__init__(name="alias-watcher", daemon=True)
        self.pool = pool
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.pool.config.poll_interval):
            try:
                self.pool.refresh()
            except Exception:  # pragma: no cover - refresh reports its own errors
                log.exception("alias refresh failed")

    def stop(self) -> None:
        """Ask the thread to end after its current refresh."""
        self.stopped.set()
