"""The executor behind ``compare``: one asyncio loop running the plan model by model, with retries and a breaker.

:class:`ComparisonRun` holds one comparison's state: the plan (from :mod:`lm_notebook.comparison.schedule`), every
row's :class:`~lm_notebook.comparison.rows.Outcome` so far, and the streams in flight, so an interrupt can always return
the rows finished and mark the rest ``cancelled``. What is settled before anything is sent (unknown models, cache hits)
is :mod:`lm_notebook.comparison.preflight`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
import pandas as pd

from lm_notebook.client import AsyncChatStream
from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.errors import LMStudioAPIError, LMStudioConnectionError, LMStudioError
from lm_notebook.client.native_types import StreamProgress
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.tools import Tool
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.comparison.cache import ResponseCache
from lm_notebook.comparison.inputs import PromptInputs
from lm_notebook.comparison.interrupt import cancel_and_wait
from lm_notebook.comparison.preflight import cache_hits, model_infos, refused_rows
from lm_notebook.comparison.progress import EventKind, ProgressCallback, ProgressReporter
from lm_notebook.comparison.retry import ModelBreaker, RetryPolicy, worth_retrying
from lm_notebook.comparison.rows import Outcome, build_frame
from lm_notebook.comparison.schedule import Concurrency, ModelBatch, RequestSpec, resolve_slots, schedule
from lm_notebook.comparison.scoring import Scorer
from lm_notebook.comparison.structured import with_structured_columns
from lm_notebook.comparison.tool_rows import ActRowStream, counted, open_row, tools_key, with_tool_columns
from lm_notebook.comparison.user_warnings import warn_at_user_line

# The longest an interrupt waits for the requests in flight to stop. A cancelled request ends at its next await; this
# only bounds one that does not, so that Stop still returns the rows. Read at call time (a test may lift it).
STOP_WAIT_SECONDS: float | None = 5.0
# How often the progress hears how long a model has been loading for its first request (read at call time).
LOADING_TICK_SECONDS = 1.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class _BatchState:
    batch: ModelBatch
    pending: deque[RequestSpec]
    breaker: ModelBreaker
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    cold_next: bool = False
    loading_since: float | None = None  # loop time the first request to a model known not to be loaded was sent


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
        tools: Sequence[Tool] = (),
    ) -> None:
        self.specs = specs
        self.tools = tuple(tools)  # each request an act (tool_rows.py)
        self._acts: dict[int, ActRowStream] = {}  # row index → its finished act
        self.inputs = inputs
        self.messages = messages
        self.schema: AnswerSchema | None = None  # compare(schema=...): the answers are checked as the frame is built
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
        # how the run was stopped: a KeyboardInterrupt (in a progress callback, a second Ctrl-C), or a cancellation
        self.stopped_by: Literal["keyboard", "cancel"] | None = None
        self.server_down: LMStudioConnectionError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live: dict[int, AsyncChatStream | ActRowStream] = {}  # row index → its stream in flight
        self._begun: dict[int, tuple[str, int, bool]] = {}  # row index → (started_at, attempts, cold)
        self._results: dict[int, ChatResult] = {}  # row index → its finished answer, before its stream is closed
        self._events: asyncio.Queue[tuple[EventKind, Any] | None] | None = None
        self._progress = ProgressReporter(progress, [spec.model for spec in specs])
        self._closed = False
        self.scorer: Scorer | None = None  # the checks, scored after the candidates (comparison/scoring.py)

    # --- setup -------------------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Read the models' metadata, settle what is already known (unknown models, cache hits), make the plan."""
        self.infos = await model_infos(self.client)
        for index, outcome in refused_rows(self.specs, self.infos, self.client.base_url).items():
            self.outcomes[index] = outcome
        if self.cache is not None and self.cache.accepts(self.send):
            keyed = {**self.send, **tools_key(self.tools)}
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

    def _judging(self, model: str, judged: int, to_judge: int) -> None:
        self._progress.report(self._progress.event("judging", model=model, judged=judged, to_judge=to_judge))

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

    async def _run_batch(self, batch: ModelBatch, pending: deque[RequestSpec] | None = None) -> None:
        """``pending``: the rows to take from (default the batch's own); several servers may share one deque
        (:mod:`lm_notebook.comparison.endpoint_run`)."""
        if pending is None:
            pending = deque(s for s in batch.requests if self.outcomes[s.index] is None)
        state = _BatchState(batch, pending, ModelBreaker(batch.model))
        if not state.pending:
            return
        # State now, not at the start: an earlier batch's JIT load may have evicted this model.
        fresh = await self._refresh(batch.model)
        loaded = fresh is not None and fresh.loaded
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

    def _give_up(self, state: _BatchState) -> None:
        """The breaker tripped with rows left: they fail unsent (another server may take them instead)."""
        failure = state.breaker.failure
        assert failure is not None
        self._fail_rest(list(state.pending), failure, state.breaker.failure_note)
        state.pending.clear()

    async def _tick_loading(self, state: _BatchState) -> None:
        """While a model loads for its first request: a "loading" event every LOADING_TICK_SECONDS."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(LOADING_TICK_SECONDS)
            since = state.loading_since
            if since is None:
                return
            self._put(("loading", {"model": state.batch.model, "elapsed_s": loop.time() - since}))

    def _report_load(self, state: _BatchState, progress: StreamProgress) -> None:
        """LM Studio 0.4 reports the load's progress (native route): a "loading" event with its fraction."""
        since = state.loading_since
        if progress.stage != "model_load" or since is None or progress.done:
            return
        elapsed = asyncio.get_running_loop().time() - since
        self._put(("loading", {"model": state.batch.model, "elapsed_s": elapsed, "fraction": progress.fraction}))

    def _warm(self, state: _BatchState) -> None:
        """The model answered: open its other slots, and end its loading (said at once, before its first row)."""
        if state.warm.is_set():
            return
        state.warm.set()
        since, state.loading_since = state.loading_since, None
        if since is not None:
            elapsed = asyncio.get_running_loop().time() - since
            self._put(("loaded", {"model": state.batch.model, "elapsed_s": elapsed}))

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
                stream = open_row(self.client, messages, spec.model, self.send, self.tools)
                self._live[spec.index] = stream
                try:
                    async for part in stream.iter_parts():
                        detail = getattr(part, "detail", None)  # an act's parts have none
                        if isinstance(detail, StreamProgress):  # the server's load / prompt progress
                            self._report_load(state, detail)
                        else:
                            self._warm(state)
                    result = await stream.result()
                    self._results[spec.index] = result  # finished: a Stop from here on keeps it (see interrupt)
                except LMStudioError as err:
                    partial = err.partial
                    if (
                        self._worth_retrying(err)
                        and attempts < self.retry.attempts
                        and not self.interrupted
                        and state.breaker.failure is None
                    ):
                        self._live.pop(spec.index, None)
                        await stream.aclose()
                        retry_after = err.retry_after if isinstance(err, LMStudioAPIError) else None
                        await asyncio.sleep(self.retry.delay(attempts, retry_after))
                        continue
                    outcome = counted(Outcome.from_error(err, started_at=started_at, attempts=attempts, cold=cold),
                                      stream, err)
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
                self._warm(state)
                if not (result.content or result.reasoning or result.tool_calls):
                    await self._refresh(spec.model)  # the context it is loaded with, for the empty answer's message
                if isinstance(stream, ActRowStream):
                    self._acts[spec.index] = stream  # its tool counts, for the row
                self._answered(spec.index)
                return
        except asyncio.CancelledError:
            if spec.index in self._results:
                self._answered(spec.index)
            elif self.outcomes[spec.index] is None:
                self.outcomes[spec.index] = Outcome.cancelled(
                    partial, started_at=started_at, attempts=attempts, cold=cold
                )
            raise

    def _answered(self, index: int) -> None:
        """Settle a row whose answer finished: from its task, or from a Stop that lands while its stream closes."""
        spec = self.specs[index]
        started_at, attempts, cold = self._begun[index]
        info = self._seen_loaded.get(spec.model) or self.infos.get(spec.model)
        self._finish(index, counted(Outcome.answered(
            self._results[index], model=spec.model, context_length=info.loaded_context_length if info else None,
            started_at=started_at, attempts=attempts, cold=cold,
        ), self._acts.get(index)))

    def _worth_retrying(self, err: LMStudioError) -> bool:
        """Whether to send the row again to this server (with several servers, a refused connection goes elsewhere)."""
        return worth_retrying(err)

    def _finish(self, index: int, outcome: Outcome) -> None:
        if self.outcomes[index] is not None:
            return
        self.outcomes[index] = outcome
        key = self.keys[index]
        if outcome.status == "ok" and key is not None and self.cache is not None:
            try:
                self.cache.put(key, outcome.record(), model=self.specs[index].model)
            except Exception as exc:  # a full disk must not cost the answer
                warn_at_user_line(f"compare(): could not write the cache ({exc}); answers are still returned.")
        self._put(("row", index))

    def _fail_rest(self, specs: Sequence[RequestSpec], err: LMStudioError, note: str | None) -> None:
        message = f"not sent: {note}; last error: {err.message}" if note else err.message
        for spec in specs:
            if self.outcomes[spec.index] is None:
                self._finish(
                    spec.index, Outcome.from_error(err, started_at=None, attempts=0, cold=False, message=message)
                )

    def _put(self, event: tuple[EventKind, Any]) -> None:
        if self._events is not None:
            self._events.put_nowait(event)

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

    # --- progress and result -----------------------------------------------------------------------------------
    def _report_row(self, index: int) -> None:
        outcome = self.outcomes[index]
        assert outcome is not None
        self._progress.row(
            index=index, model=self.specs[index].model, status=outcome.status, cached=outcome.cached, cold=outcome.cold
        )

    def _answers(self) -> pd.DataFrame:
        infos = {**self.infos, **self._seen_loaded}  # the loaded context length wins over a later listing
        frame = build_frame(self.specs, self.outcomes, items=self.inputs.items,
                            input_columns=self.inputs.input_columns, infos=infos, system=self.system,
                            params=self.params, extra_params=self.extra_params)
        frame = with_structured_columns(frame, self.schema)
        return with_tool_columns(frame, self.outcomes) if self.tools else frame

    def frame(self) -> pd.DataFrame:
        """The tidy DataFrame: one row per (prompt, model, repeat), in that order (with the checks' columns)."""
        frame = self._answers()
        return self.scorer.apply(frame) if self.scorer is not None else frame
