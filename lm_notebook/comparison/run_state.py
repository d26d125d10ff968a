"""A comparison's state, and how its rows settle: the base of compare's executor (:mod:`lm_notebook.comparison.run`).

:class:`RunState` holds the plan's rows (``specs``), every row's :class:`~lm_notebook.comparison.rows.Outcome` so far
(each settled once, written to the cache when answered), the streams in flight and the models' metadata as last
listed; the DataFrame is built from it at any moment, so an interrupt always returns the rows finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, Literal

import pandas as pd

from lm_notebook.client import AsyncChatStream
from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.errors import LMStudioConnectionError, LMStudioError
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.tools import Tool
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.comparison.cache import ResponseCache
from lm_notebook.comparison.collector import gc_paused
from lm_notebook.comparison.inputs import PromptInputs
from lm_notebook.comparison.progress import EventKind, ProgressCallback, ProgressReporter, SettledRow
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.comparison.rows import Outcome, build_frame
from lm_notebook.comparison.schedule import Concurrency, ModelBatch, RequestSpec
from lm_notebook.comparison.scoring import Scorer
from lm_notebook.comparison.structured import with_structured_columns
from lm_notebook.comparison.tool_rows import ActRowStream, counted, with_tool_columns
from lm_notebook.comparison.user_warnings import warn_at_user_line


class RunState:
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
        # the models' listing when it was sent ahead (start.py), for prepare() to await
        self.listing: asyncio.Task[dict[str, ModelInfo]] | None = None
        self._seen_loaded: dict[str, ModelInfo] = {}
        # models known to be up although the server does not report state (llama.cpp, vLLM): the caller saw them
        # answer (a benchmark's warm-up), so their first request need not run alone
        self.warm_models: set[str] = set()
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

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _put(self, event: tuple[EventKind, Any]) -> None:
        if self._events is not None:
            self._events.put_nowait(event)

    async def _refresh(self, model: str) -> ModelInfo | None:
        try:
            self.infos.update({m.id: m for m in await self.client.list_models()})
        except LMStudioError:
            pass
        info = self.infos.get(model)
        if info is not None and info.loaded:
            self._seen_loaded[model] = info  # the loaded context length, before a later load evicts it
        return info

    # --- rows settling -------------------------------------------------------------------------------------------
    def _answered(self, index: int) -> None:
        """Settle a row whose answer finished: from its task, or from a Stop that lands while its stream closes."""
        spec = self.specs[index]
        started_at, attempts, cold = self._begun[index]
        info = self._seen_loaded.get(spec.model) or self.infos.get(spec.model)
        self._finish(index, counted(Outcome.answered(
            self._results[index], model=spec.model, context_length=info.loaded_context_length if info else None,
            started_at=started_at, attempts=attempts, cold=cold,
        ), self._acts.get(index)))

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

    # --- progress and result -----------------------------------------------------------------------------------
    def _settled_row(self, index: int) -> SettledRow:
        outcome = self.outcomes[index]
        assert outcome is not None
        return SettledRow(index, self.specs[index].model, outcome.status, outcome.cached, outcome.cold)

    def _report_row(self, index: int) -> None:
        self._progress.row(self._settled_row(index))

    def _judging(self, model: str, judged: int, to_judge: int) -> None:
        self._progress.report(self._progress.event("judging", model=model, judged=judged, to_judge=to_judge))

    def _answers(self) -> pd.DataFrame:
        infos = {**self.infos, **self._seen_loaded}  # the loaded context length wins over a later listing
        with gc_paused():
            frame = build_frame(self.specs, self.outcomes, items=self.inputs.items,
                                input_columns=self.inputs.input_columns, infos=infos, system=self.system,
                                params=self.params, extra_params=self.extra_params)
        frame = with_structured_columns(frame, self.schema)
        return with_tool_columns(frame, self.outcomes) if self.tools else frame

    def frame(self) -> pd.DataFrame:
        """The tidy DataFrame: one row per (prompt, model, repeat), in that order (with the checks' columns)."""
        frame = self._answers()
        return self.scorer.apply(frame) if self.scorer is not None else frame
