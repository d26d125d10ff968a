"""LM Studio's model scheduling: just-in-time loading, auto-evict, parallel slots per loaded model, idle ``ttl``.

The async methods run on the server's event loop; the counters and the loaded set are guarded by a lock so tests
can read them from their own thread at any time. Load times and ttl timers run on the server's
:class:`~lm_notebook.testing.clock.Clock`, so a test with a :class:`~lm_notebook.testing.clock.ManualClock` decides
when they are over.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

from lm_notebook.testing.catalogue import LoadedView, ModelSpec
from lm_notebook.testing.clock import Clock, LoopClock, TimerHandle
from lm_notebook.testing.recording import ChangeSignal

# LM Studio unloads a JIT-loaded model after 60 idle minutes unless the request says otherwise.
DEFAULT_JIT_TTL = 3600.0


class LoadFailed(Exception):
    """The model could not be loaded (a ``load_failure`` fault)."""


@dataclass(frozen=True)
class ModelCounters:
    loads: int = 0
    unloads: int = 0  # explicit unloads (API or server.unload_model)
    evictions: int = 0  # unloaded by auto-evict to make room for another JIT load
    expirations: int = 0  # unloaded because its ttl ran out
    requests: int = 0  # generation requests served (or tried)
    max_active: int = 0  # most predictions running at once
    max_queued: int = 0  # most requests waiting for a slot at once
    abandoned: int = 0  # answers whose client left before their end (a Stop, an interrupt, a break, a timeout)
    joins: int = 0  # requests that came while it loaded and waited for that load


@dataclass(frozen=True)
class Counters:
    """A snapshot: totals and ``per_model`` (model id → :class:`ModelCounters`)."""

    loads: int
    unloads: int
    evictions: int
    expirations: int
    requests: int
    max_active: int
    per_model: dict[str, ModelCounters]
    abandoned: int = 0

    def model(self, model_id: str) -> ModelCounters:
        return self.per_model.get(model_id, ModelCounters())


@dataclass(eq=False)
class Instance:
    """A loaded (or loading) model."""

    model_id: str
    context_length: int
    parallel: int
    jit: bool
    ttl: float | None
    state: Literal["loaded", "loading"] = "loaded"
    ready: asyncio.Future[None] | None = None
    slots: asyncio.Semaphore = field(init=False)
    active: int = 0
    waiting: int = 0
    idle_timer: TimerHandle | None = None
    load_started: float | None = None  # on the server's clock: when its load began (requests joining it report it)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.parallel)

    def view(self) -> LoadedView:
        return LoadedView(self.context_length, self.parallel, self.state,
                          self.load_started if self.state == "loading" else None)


class Scheduler:
    """Which models are loaded, and who waits for what."""

    def __init__(
        self,
        models: Callable[[], dict[str, ModelSpec]],
        *,
        jit_loading: bool = True,
        auto_evict: bool = True,
        jit_ttl: float | None = DEFAULT_JIT_TTL,
        clock: Clock | None = None,
        signal: ChangeSignal | None = None,
    ) -> None:
        self._models = models
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.signal = signal if signal is not None else ChangeSignal()
        self.jit_loading = jit_loading
        self.auto_evict = auto_evict
        self.jit_ttl = jit_ttl
        self._lock = threading.Lock()
        self._instances: dict[str, Instance] = {}
        self._counters: dict[str, ModelCounters] = {}
        for spec in models().values():
            if spec.loaded:
                self._instances[spec.id] = Instance(spec.id, spec.context_length, spec.parallel, jit=False, ttl=None)

    # --- reading (any thread) ---------------------------------------------------------------------------------
    def view(self, model_id: str) -> LoadedView | None:
        with self._lock:
            inst = self._instances.get(model_id)
            return inst.view() if inst else None

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return [i.model_id for i in self._instances.values() if i.state == "loaded"]

    def counters(self) -> Counters:
        with self._lock:
            per = dict(self._counters)
        return Counters(
            loads=sum(c.loads for c in per.values()),
            unloads=sum(c.unloads for c in per.values()),
            evictions=sum(c.evictions for c in per.values()),
            expirations=sum(c.expirations for c in per.values()),
            requests=sum(c.requests for c in per.values()),
            max_active=max((c.max_active for c in per.values()), default=0),
            per_model=per,
            abandoned=sum(c.abandoned for c in per.values()),
        )

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()

    def count_abandoned(self, model_id: str) -> None:
        """An answer of this model's ended early because its client went away."""
        with self._lock:
            self._count(model_id, abandoned=1)

    def _count(self, model_id: str, **changes: int) -> None:
        # caller holds the lock
        current = self._counters.get(model_id, ModelCounters())
        self._counters[model_id] = replace(current, **{k: getattr(current, k) + v for k, v in changes.items()})
        self.signal.notify()

    def _peak(self, model_id: str, *, active: int, queued: int) -> None:
        current = self._counters.get(model_id, ModelCounters())
        self._counters[model_id] = replace(
            current, max_active=max(current.max_active, active), max_queued=max(current.max_queued, queued)
        )
        self.signal.notify()

    # --- loading (event loop) ---------------------------------------------------------------------------------
    async def ensure_loaded(
        self, spec: ModelSpec, *, jit: bool, context_length: int | None = None, ttl: float | None = None,
        fail: bool = False,
    ) -> tuple[Instance, float]:
        """The model's instance, loading it first when needed; also the load's seconds (0 if loaded; for a load
        already under way, the whole load's, as its loader hears them, not this wait's)."""
        with self._lock:
            inst = self._instances.get(spec.id)
            if inst is None:
                if jit and self.auto_evict:
                    self._evict_jit_models(keep=spec.id)
                loop = asyncio.get_running_loop()
                inst = Instance(
                    spec.id, context_length or spec.context_length, spec.parallel, jit=jit,
                    ttl=ttl if ttl is not None else (self.jit_ttl if jit else None),
                    state="loading", ready=loop.create_future(), load_started=self.clock.now(),
                )
                self._instances[spec.id] = inst
                self.signal.notify()  # "loading" is visible now
                loader = True
            else:
                loader = False
                if ttl is not None and inst.jit:  # a request's ttl only governs models loaded just in time
                    inst.ttl = ttl
        if not loader:
            if inst.ready is not None and not inst.ready.done():
                started = inst.load_started if inst.load_started is not None else self.clock.now()
                with self._lock:
                    self._count(spec.id, joins=1)
                await asyncio.shield(inst.ready)
                return inst, self.clock.now() - started
            return inst, 0.0
        assert inst.ready is not None
        started = self.clock.now()
        try:
            if spec.load_time > 0:
                await self.clock.sleep(spec.load_time)
            if fail:
                raise LoadFailed(spec.id)
        except BaseException as exc:
            with self._lock:
                if self._instances.get(spec.id) is inst:
                    del self._instances[spec.id]
            self.signal.notify()
            inst.ready.set_exception(exc if isinstance(exc, LoadFailed) else LoadFailed(spec.id))
            inst.ready.exception()  # mark retrieved: a load nobody else waited for must not warn
            raise
        with self._lock:
            inst.state = "loaded"
            self._count(spec.id, loads=1)
        inst.ready.set_result(None)
        self._arm_idle_timer(inst)
        return inst, self.clock.now() - started

    def load_now(self, spec: ModelSpec, *, context_length: int | None = None, ttl: float | None = None) -> None:
        """Mark a model loaded at once (before the server starts, or for set-up in tests)."""
        with self._lock:
            if spec.id not in self._instances:
                self._instances[spec.id] = Instance(
                    spec.id, context_length or spec.context_length, spec.parallel, jit=False, ttl=ttl
                )
                self._count(spec.id, loads=1)

    def unload(self, model_id: str) -> bool:
        with self._lock:
            inst = self._instances.get(model_id)
            if inst is None or inst.state != "loaded":
                return False
            self._drop(inst)
            self._count(model_id, unloads=1)
            return True

    def unload_all(self) -> list[str]:
        return [m for m in self.loaded_ids() if self.unload(m)]

    def cancel_timers(self) -> None:
        """Call off every idle ttl timer (the server is stopping: nothing must stay pending on its clock)."""
        with self._lock:
            for inst in self._instances.values():
                if inst.idle_timer is not None:
                    inst.idle_timer.cancel()
                    inst.idle_timer = None

    def _evict_jit_models(self, *, keep: str) -> None:
        # caller holds the lock; a model still loading is left alone (its requesters are already waiting on it)
        for inst in list(self._instances.values()):
            if inst.jit and inst.model_id != keep and inst.state == "loaded":
                self._drop(inst)
                self._count(inst.model_id, evictions=1)

    def _drop(self, inst: Instance) -> None:
        if inst.idle_timer is not None:
            inst.idle_timer.cancel()
            inst.idle_timer = None
        del self._instances[inst.model_id]

    # --- slots and ttl (event loop) ---------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, inst: Instance) -> AsyncIterator[None]:
        """Hold one of the instance's parallel prediction slots (waiting in line when all are busy)."""
        with self._lock:
            self._count(inst.model_id, requests=1)
            inst.waiting += 1
            self._peak(inst.model_id, active=inst.active, queued=inst.waiting + inst.active - inst.parallel)
            if inst.idle_timer is not None:
                inst.idle_timer.cancel()
                inst.idle_timer = None
        acquired = False
        try:
            await inst.slots.acquire()
            acquired = True
        finally:
            with self._lock:
                inst.waiting -= 1
                if acquired:
                    inst.active += 1
                    self._peak(inst.model_id, active=inst.active, queued=0)
            if not acquired:
                self._arm_idle_timer(inst)
        try:
            yield
        finally:
            inst.slots.release()
            with self._lock:
                inst.active -= 1
            self._arm_idle_timer(inst)

    def _arm_idle_timer(self, inst: Instance) -> None:
        if inst.ttl is None or inst.active or inst.waiting:
            return
        if inst.idle_timer is not None:
            inst.idle_timer.cancel()
        inst.idle_timer = self.clock.call_later(inst.ttl, lambda: self._expire(inst))

    def _expire(self, inst: Instance) -> None:
        with self._lock:
            if self._instances.get(inst.model_id) is inst and not inst.active and not inst.waiting:
                inst.idle_timer = None
                del self._instances[inst.model_id]
                self._count(inst.model_id, expirations=1)
