"""The executor behind ``compare``: one asyncio loop running the plan model by model, with retries and a breaker.

:class:`ComparisonRun` holds one comparison's state: the plan (from :mod:`lm_notebook.comparison.schedule`), every
row's :class:`~lm_notebook.comparison.rows.Outcome` so far, and the streams in flight, so an interrupt can always return
the rows finished and mark the rest ``cancelled``. What is settled before anything is sent (unknown models, cache hits)
is :mod:`lm_notebook.comparison.preflight`.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import pandas as pd

from lm_notebook.client import AsyncChatStream
from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.errors import LMStudioAPIError, LMStudioConnectionError, LMStudioError
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.comparison.cache import ResponseCache
from lm_notebook.comparison.inputs import PromptInputs
from lm_notebook.comparison.preflight import model_infos, refused_rows, request_key
from lm_notebook.comparison.progress import ProgressCallback, ProgressReporter
from lm_notebook.comparison.retry import ModelBreaker, RetryPolicy, worth_retrying
from lm_notebook.comparison.rows import Outcome, build_frame
from lm_notebook.comparison.schedule import Concurrency, ModelBatch, RequestSpec, resolve_slots, schedule

# The longest an interrupt waits for the requests in flight to stop. A cancelled request ends at its next await; this
# only bounds one that does not, so that Stop still returns the rows. Read at call time (a test may lift it).
STOP_WAIT_SECONDS: float | None = 5.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class _BatchState:
    batch: ModelBatch
    pending: deque[RequestSpec]
    breaker: ModelBreaker
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    cold_next: bool = False


class ComparisonRun:
    """One comparison's state: the plan, every row's outcome so far, the streams in flight."""

    def __init__(
        self,
        *,
        specs: list[RequestSpec],
        inputs: PromptInputs,
        messages: list[list[dict[str, Any]]],
        params: dict[str, Any],
        extra_params: dict[str, Any],
        system: str | None,
        client: AsyncLMStudioClient,
        owns_client: bool,
        cache: ResponseCache | None,
        owns_cache: bool,
        concurrency: Concurrency,
        retry: RetryPolicy,
        progress: bool | ProgressCallback,
    ) -> None:
        self.specs = specs
        self.inputs = inputs
        self.messages = messages
        self.params = params  # every parameter as given (None kept) — recorded in the rows
        self.send = {k: v for k, v in params.items() if v is not None}
        self.extra_params = extra_params
        self.system = system
        self.client = client
        self.owns_client = owns_client
        self.cache = cache
        self.owns_cache = owns_cache
        self.concurrency = concurrency
        self.retry = retry
        self.infos: dict[str, ModelInfo] = {}
        self._seen_loaded: dict[str, ModelInfo] = {}
        self.outcomes: list[Outcome | None] = [None] * len(specs)
        self.keys: list[str | None] = [None] * len(specs)
        self.batches: list[ModelBatch] = []
        self.interrupted = False
        self.server_down: LMStudioConnectionError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live: dict[int, AsyncChatStream] = {}  # row index → its stream in flight
        self._begun: dict[int, tuple[str, int, bool]] = {}  # row index → (started_at, attempts, cold)
        self._events: asyncio.Queue[tuple[str, Any] | None] | None = None
        totals: dict[str, int] = {}
        for spec in specs:
            totals[spec.model] = totals.get(spec.model, 0) + 1
        self._progress = ProgressReporter(progress, totals)
        self._closed = False

    # --- setup -------------------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Read the models' metadata, settle what is already known (unknown models, cache hits), make the plan."""
        self.infos = await model_infos(self.client)
        for index, outcome in refused_rows(self.specs, self.infos, self.client.base_url).items():
            self.outcomes[index] = outcome
        if self.cache is not None and self.cache.accepts(self.send):
            for spec in self.specs:
                key = request_key(spec, self.messages[spec.prompt_index], self.send, self.infos.get(spec.model))
                self.keys[spec.index] = key
                record = self.cache.get(key) if self.outcomes[spec.index] is None else None
                if record is not None:
                    self.outcomes[spec.index] = Outcome.from_record(record)
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
            for spec in self.specs:  # rows settled before running: cache hits and unknown models
                if self.outcomes[spec.index] is not None:
                    self._report_row(spec.index)
            scheduler = self._spawn(self._run_batches())
            while True:
                event = await self._events.get()
                if event is None:
                    break
                kind, payload = event
                if kind == "row":
                    self._report_row(payload)
                else:
                    model, cold = payload
                    self._progress.report(self._progress.event("model", model=model, cold=cold))
            await scheduler
            self._progress.report(self._progress.event("end"))
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.interrupt()
            await self._drain()
        finally:
            await self._close()
        return self.frame()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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

    async def _run_batch(self, batch: ModelBatch) -> None:
        pending = deque(s for s in batch.requests if self.outcomes[s.index] is None)
        state = _BatchState(batch, pending, ModelBreaker(batch.model))
        if not state.pending:
            return
        # State now, not at the start: an earlier batch's JIT load may have evicted this model.
        fresh = await self._refresh(batch.model)
        loaded = fresh is not None and fresh.loaded
        known_cold = fresh is not None and fresh.state is not None and not fresh.loaded
        state.cold_next = known_cold
        self._put(("model", (batch.model, known_cold)))
        slots = batch.slots
        if loaded and not batch.slots_known and fresh is not None:
            slots, _ = resolve_slots(self.concurrency, fresh.parallel)
        workers = [self._spawn(self._worker(state))]
        if not loaded:
            # The first request carries the load; the other slots open once its first token shows the model is up.
            waiter = self._spawn(state.warm.wait())
            await asyncio.wait({workers[0], waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            fresh = await self._refresh(batch.model)
            if not batch.slots_known:
                slots, _ = resolve_slots(self.concurrency, fresh.parallel if fresh else None)
        workers += [self._spawn(self._worker(state)) for _ in range(max(slots - 1, 0)) if state.pending]
        await asyncio.wait(workers)
        if state.breaker.failure is not None and state.pending:
            self._fail_rest(list(state.pending), state.breaker.failure, state.breaker.failure_note)
            state.pending.clear()

    async def _refresh(self, model: str) -> ModelInfo | None:
        try:
            self.infos.update({m.id: m for m in await self.client.list_models()})
        except LMStudioError:
            pass
        info = self.infos.get(model)
        if info is not None and info.loaded:
            self._seen_loaded[model] = info  # the loaded context length, before a later load evicts it
        return info

    async def _worker(self, state: _BatchState) -> None:
        while state.pending and state.breaker.failure is None and not self.interrupted and self.server_down is None:
            spec = state.pending.popleft()
            cold, state.cold_next = state.cold_next, False
            await self._run_one(spec, state, cold)

    async def _run_one(self, spec: RequestSpec, state: _BatchState, cold: bool) -> None:
        messages = self.messages[spec.prompt_index]
        attempts = 0
        partial: ChatResult | None = None
        started_at = _now()
        try:
            while True:
                attempts += 1
                started_at = _now()
                self._begun[spec.index] = (started_at, attempts, cold)
                stream = self.client.stream_chat(messages, model=spec.model, **self.send)
                self._live[spec.index] = stream
                try:
                    async for _part in stream.iter_parts():
                        if not state.warm.is_set():
                            state.warm.set()
                    result = await stream.result()
                except LMStudioError as err:
                    partial = err.partial
                    if (
                        worth_retrying(err)
                        and attempts < self.retry.attempts
                        and not self.interrupted
                        and state.breaker.failure is None
                    ):
                        self._live.pop(spec.index, None)
                        await stream.aclose()
                        retry_after = err.retry_after if isinstance(err, LMStudioAPIError) else None
                        await asyncio.sleep(self.retry.delay(attempts, retry_after))
                        continue
                    outcome = Outcome.from_error(err, started_at=started_at, attempts=attempts, cold=cold)
                    if isinstance(err, LMStudioConnectionError) and isinstance(
                        err.__cause__, (httpx.ConnectError, httpx.ConnectTimeout)
                    ):
                        self.server_down = err
                    # no warm.set(): until one answer starts, the model is probed one request at a time
                    state.breaker.note(err)
                    self._finish(spec.index, outcome)
                    return
                except Exception as err:  # a bug must cost one row, not the run
                    self._finish(
                        spec.index, Outcome.from_error(err, started_at=started_at, attempts=attempts, cold=cold)
                    )
                    return
                finally:
                    if self._live.get(spec.index) is stream:
                        partial = stream.partial() if partial is None else partial
                        del self._live[spec.index]
                        await stream.aclose()
                state.breaker.note(None)
                state.warm.set()
                self._finish(
                    spec.index, Outcome.from_result(result, started_at=started_at, attempts=attempts, cold=cold)
                )
                return
        except asyncio.CancelledError:
            if self.outcomes[spec.index] is None:
                self.outcomes[spec.index] = Outcome.cancelled(
                    partial, started_at=started_at, attempts=attempts, cold=cold
                )
            raise

    def _finish(self, index: int, outcome: Outcome) -> None:
        if self.outcomes[index] is not None:
            return
        self.outcomes[index] = outcome
        key = self.keys[index]
        if outcome.status == "ok" and key is not None and self.cache is not None:
            try:
                self.cache.put(key, outcome.record(), model=self.specs[index].model)
            except Exception as exc:  # a full disk must not cost the answer
                warnings.warn(f"compare(): could not write the cache ({exc}); answers are still returned.",
                              stacklevel=2)
        self._put(("row", index))

    def _fail_rest(self, specs: Sequence[RequestSpec], err: LMStudioError, note: str | None) -> None:
        message = f"not sent: {note}; last error: {err.message}" if note else err.message
        for spec in specs:
            if self.outcomes[spec.index] is None:
                self._finish(
                    spec.index, Outcome.from_error(err, started_at=None, attempts=0, cold=False, message=message)
                )

    def _put(self, event: tuple[str, Any]) -> None:
        if self._events is not None:
            self._events.put_nowait(event)

    # --- interrupt -------------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop now: rows in flight keep their partial text, rows not run are marked cancelled. Idempotent."""
        self.interrupted = True
        for index, stream in list(self._live.items()):
            if self.outcomes[index] is None:
                started_at, attempts, cold = self._begun.get(index, (None, 0, False))
                self.outcomes[index] = Outcome.cancelled(
                    stream.partial(), started_at=started_at, attempts=attempts, cold=cold
                )
        for spec in self.specs:
            if self.outcomes[spec.index] is None:
                started_at, attempts, cold = self._begun.get(spec.index, (None, 0, False))
                self.outcomes[spec.index] = Outcome.cancelled(
                    None, started_at=started_at, attempts=attempts, cold=cold
                )
        current = asyncio.current_task() if self.loop is not None and self.loop.is_running() else None
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _drain(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_SECONDS)
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" noise
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
        self._progress.close()
        if self.owns_client:
            try:
                await self.client.aclose()
            except Exception:
                pass
        if self.owns_cache and self.cache is not None:
            self.cache.close()

    def recover(self) -> pd.DataFrame:
        """After a KeyboardInterrupt escaped the event loop (``compare`` in a notebook): finish cleanly, return rows."""
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

    # --- progress and result -----------------------------------------------------------------------------------
    def _report_row(self, index: int) -> None:
        outcome = self.outcomes[index]
        assert outcome is not None
        self._progress.row(
            index=index, model=self.specs[index].model, status=outcome.status, cached=outcome.cached, cold=outcome.cold
        )

    def frame(self) -> pd.DataFrame:
        """The tidy DataFrame: one row per (prompt, model, repeat), in that order."""
        return build_frame(
            self.specs,
            self.outcomes,
            items=self.inputs.items,
            input_columns=self.inputs.input_columns,
            infos={**self.infos, **self._seen_loaded},  # the loaded context length wins over a later listing
            system=self.system,
            params=self.params,
            extra_params=self.extra_params,
        )
