"""The executor behind ``compare``: one asyncio loop running the plan model by model, with retries and a breaker.

:class:`ComparisonRun` is one comparison from its plan to its DataFrame: it settles what is known before sending
(:mod:`lm_notebook.comparison.preflight`: unknown models, cache hits), makes the plan
(:mod:`lm_notebook.comparison.schedule`), runs it model by model — a model not loaded probed with one request, its
other slots opened at its first token — and stops on an interrupt with the rows finished kept and the rest
``cancelled``. Its parts: the state and how rows settle (:mod:`~lm_notebook.comparison.run_state`), sending one row
with its retries (:mod:`~lm_notebook.comparison.row_attempts`), one model's turn
(:mod:`~lm_notebook.comparison.model_batch`).
"""

from __future__ import annotations

import asyncio
from collections import deque

import pandas as pd

from lm_notebook.comparison.collector import gc_paused
from lm_notebook.comparison.interrupt import cancel_and_wait
from lm_notebook.comparison.model_batch import BatchState
from lm_notebook.comparison.preflight import cache_hits, model_infos, refused_rows
from lm_notebook.comparison.retry import ModelBreaker
from lm_notebook.comparison.row_attempts import RowSender
from lm_notebook.comparison.rows import Outcome
from lm_notebook.comparison.schedule import ModelBatch, RequestSpec, resolve_slots, schedule
from lm_notebook.comparison.tool_rows import tools_key

# The longest an interrupt waits for the requests in flight to stop. A cancelled request ends at its next await; this
# only bounds one that does not, so that Stop still returns the rows. Read at call time (a test may lift it).
STOP_WAIT_SECONDS: float | None = 5.0
# How often the progress hears how long a model has been loading for its first request (read at call time).
LOADING_TICK_SECONDS = 1.0


class ComparisonRun(RowSender):
    """One comparison: prepared (:meth:`prepare`), then run to its DataFrame (:meth:`execute`); stoppable any time."""

    # --- setup -------------------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Read the models' metadata, settle what is already known (unknown models, cache hits), make the plan."""
        listing, self.listing = self.listing, None
        self.infos = await (listing if listing is not None else model_infos(self.client))
        for index, outcome in refused_rows(self.specs, self.infos, self.client.base_url).items():
            self.outcomes[index] = outcome
        if self.cache is not None and self.cache.accepts(self.send):
            keyed = {**self.send, **tools_key(self.tools)}
            with gc_paused():
                self.keys, hits = cache_hits(self.specs, self.messages, keyed, self.infos, self.cache, self.outcomes)
            for index, outcome in hits.items():
                self.outcomes[index] = outcome
        todo = [s for s in self.specs if self.outcomes[s.index] is None]
        loaded = [i.id for i in self.infos.values() if i.loaded]
        parallel = {i.id: i.parallel for i in self.infos.values()}
        self.batches = schedule(todo, loaded=loaded, concurrency=self.concurrency, parallel=parallel)

    # --- running -----------------------------------------------------------------------------------------------
    async def execute(self) -> pd.DataFrame:
        """Run the plan; return the DataFrame (also when interrupted or cancelled)."""
        self.loop = asyncio.get_running_loop()
        self.main_task = asyncio.current_task()
        self._events = asyncio.Queue()
        try:
            self._progress.report(self._progress.event("start"))
            # rows settled before running (cache hits and unknown models), told at once
            if self._progress.listening:  # progress=False: no row made for nobody (a cached re-run's 1,000)
                self._progress.rows([self._settled_row(i) for i, done in enumerate(self.outcomes) if done is not None])
            scheduler = self._spawn(self._run_batches())
            while True:
                event = await self._events.get()
                if event is None:
                    break
                kind, payload = event
                if kind == "row":
                    self._report_row(payload)
                else:
                    self._progress.report(self._progress.event(kind, **payload))
            await scheduler
            if self.scorer is not None:  # judges and embeddings: after every candidate, before the client closes
                await self.scorer.score(self._answers(), self.client, self.cache, self.infos, self._judging)
            self._progress.report(self._progress.event("end"))
        except (asyncio.CancelledError, KeyboardInterrupt) as exc:
            self.stopped_by = "keyboard" if isinstance(exc, KeyboardInterrupt) else "cancel"
            self.interrupt()
            await self._drain()
        finally:
            await self._close()
        return self.frame()

    async def _run_batches(self) -> None:
        try:
            for batch in self.batches:
                if self.interrupted:
                    break
                if self.server_down is not None:
                    self._fail_rest(batch.requests, self.server_down, "LM Studio stopped answering")
                    continue
                await self._run_batch(batch)
        finally:
            if self._events is not None:
                self._events.put_nowait(None)

    async def _run_batch(self, batch: ModelBatch, pending: deque[RequestSpec] | None = None) -> None:
        """``pending``: the rows to take from (default the batch's own); several servers may share one deque
        (:mod:`lm_notebook.comparison.endpoint_run`)."""
        if pending is None:
            pending = deque(s for s in batch.requests if self.outcomes[s.index] is None)
        state = BatchState(batch, pending, ModelBreaker(batch.model), self._put)
        if not state.pending:
            return
        # State now, not at the start: an earlier batch's JIT load may have evicted this model.
        fresh = await self._refresh(batch.model)
        loaded = (fresh is not None and fresh.loaded) or (
            batch.model in self.warm_models and (fresh is None or fresh.state is None))
        known_cold = fresh is not None and fresh.state is not None and not fresh.loaded
        state.cold_next = known_cold
        self._put(("model", {"model": batch.model, "cold": known_cold}))
        slots = batch.slots
        if loaded and not batch.slots_known and fresh is not None:
            slots, _ = resolve_slots(self.concurrency, fresh.parallel)
        ticker = None
        if known_cold:
            state.loading_since = asyncio.get_running_loop().time()
            ticker = self._spawn(self._tick_loading(state))
        workers = [self._spawn(self._worker(state))]
        if not loaded:
            # The first request carries the load; the other slots open once its first token shows the model is up.
            waiter = self._spawn(state.warm.wait())
            await asyncio.wait({workers[0], waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            state.loading_since = None  # over, with a first token or with the first request's end (an error)
            if ticker is not None:
                ticker.cancel()
            fresh = await self._refresh(batch.model)
            if not batch.slots_known:
                slots, _ = resolve_slots(self.concurrency, fresh.parallel if fresh else None)
        workers += [self._spawn(self._worker(state)) for _ in range(max(slots - 1, 0)) if state.pending]
        await asyncio.wait(workers)
        if state.breaker.failure is not None and state.pending:
            self._give_up(state)

    def _give_up(self, state: BatchState) -> None:
        """The breaker tripped with rows left: they fail unsent (another server may take them instead)."""
        failure = state.breaker.failure
        assert failure is not None
        self._fail_rest(list(state.pending), failure, state.breaker.failure_note)
        state.pending.clear()

    async def _tick_loading(self, state: BatchState) -> None:
        """While a model loads for its first request: a "loading" event every LOADING_TICK_SECONDS."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(LOADING_TICK_SECONDS)
            since = state.loading_since
            if since is None:
                return
            self._put(("loading", {"model": state.batch.model, "elapsed_s": loop.time() - since}))

    # --- interrupt -------------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop now: rows in flight keep their partial text, rows not run are marked cancelled. Idempotent."""
        self.interrupted = True
        for spec in self.specs:
            if self.outcomes[spec.index] is None and spec.index in self._results:
                self._answered(spec.index)  # its answer finished: it stays finished
            elif self.outcomes[spec.index] is None:
                stream = self._live.get(spec.index)
                started_at, attempts, cold = self._begun.get(spec.index, (None, 0, False))
                self.outcomes[spec.index] = Outcome.cancelled(
                    stream.partial() if stream is not None else None, started_at=started_at, attempts=attempts,
                    cold=cold,
                )
        current = asyncio.current_task() if self.loop is not None and self.loop.is_running() else None
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _drain(self) -> None:
        await cancel_and_wait([t for t in self._tasks if t is not asyncio.current_task()], STOP_WAIT_SECONDS)
        for stream in list(self._live.values()):
            try:
                await stream.aclose()
            except Exception:
                pass
        self._live.clear()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.listing is not None:  # sent ahead, never awaited (the start failed)
            self.listing.cancel()
        self._progress.close()
        if self.owns_client:
            try:
                await self.client.aclose()
            except Exception:
                pass
        if self.owns_cache and self.cache is not None:
            self.cache.close()

    def recover(self) -> pd.DataFrame:
        """After a KeyboardInterrupt escaped the event loop (a second Ctrl-C): finish cleanly, return the rows."""
        self.stopped_by = self.stopped_by or "keyboard"
        self.interrupt()
        loop, main = self.loop, self.main_task
        if loop is not None and not loop.is_closed() and main is not None and not main.done():
            main.cancel()
            try:
                frame: pd.DataFrame = loop.run_until_complete(main)
                return frame
            except BaseException:  # a second interrupt: return what we have
                pass
        return self.frame()
