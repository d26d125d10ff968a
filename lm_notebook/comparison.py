"""``compare``: the same prompts across several local models, into one tidy pandas DataFrame.

>>> from lm_notebook import compare, comparison_table, summary
>>> df = compare(["Explain a mutex in one sentence.", "Name three prime numbers."],
...              ["qwen2.5-7b-instruct", "google/gemma-3-4b"], temperature=0, cache=True)   # doctest: +SKIP
>>> comparison_table(df)   # answers side by side                                         # doctest: +SKIP
>>> summary(df)            # per model: TTFT, latency, tokens/s, errors                     # doctest: +SKIP

How it runs (see :mod:`lm_notebook.compare_schedule` for the plan): model by model, so each model is loaded once even
with LM Studio's auto-evict; within a model up to the server's parallel slots in flight; a model that is not loaded
gets its first request alone, and that row is marked ``cold`` (its load time is ``load_s``, kept out of the TTFT
statistics). Everything runs on one asyncio loop with :class:`~lm_notebook.client.AsyncLMStudioClient`.

Never losing work: an interrupt (Ctrl-C, the notebook's stop button, or cancelling ``acompare``) returns the
DataFrame so far, with unfinished rows ``status == "cancelled"`` and their partial text kept; one model failing marks
only its own rows; 429, 503 and dropped connections are retried with bounded backoff (honouring ``Retry-After``);
``cache=`` stores finished answers in SQLite so a re-run skips them.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import re
import statistics
import warnings
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeAlias

import httpx
import pandas as pd

from lm_notebook.client import AsyncLMStudioClient, LMStudioClient
from lm_notebook.compare_cache import ResponseCache, cache_key, open_cache
from lm_notebook.compare_schedule import (
    Concurrency,
    ModelBatch,
    PromptItem,
    RequestSpec,
    plan_requests,
    resolve_slots,
    schedule,
)
from lm_notebook.compare_views import ComparisonTable, comparison_table, plot_summary, summary
from lm_notebook.errors import (
    AuthenticationError,
    EndpointNotSupportedError,
    LMStudioConnectionError,
    LMStudioError,
    LMStudioStreamError,
    LMStudioTimeoutError,
    ModelLoadError,
    ModelNotFoundError,
    NoCurrentModelError,
    NoModelLoadedError,
    RateLimitError,
    ServerBusyError,
    ServerError,
    model_not_found_message,
)
from lm_notebook.types import ChatResult, ModelInfo

__all__ = [
    "COLUMNS",
    "DEFAULT_RETRY",
    "ComparisonTable",
    "ProgressEvent",
    "ResponseCache",
    "RetryPolicy",
    "acompare",
    "compare",
    "comparison_table",
    "plot_summary",
    "summary",
]

Prompts: TypeAlias = "str | Sequence[str] | Mapping[Hashable, str] | pd.DataFrame | tuple[pd.DataFrame, str]"
CacheArg: TypeAlias = "bool | str | Path | ResponseCache | None"
Status = Literal["ok", "error", "cancelled"]

# The result's columns, in order (a DataFrame input's own columns come right after ``prompt``; extra request
# parameters passed as **params come last, one column each).
COLUMNS = (
    "prompt_name", "prompt", "model", "repeat", "status", "response", "reasoning", "finish_reason", "error",
    "error_type", "ttft_s", "latency_s", "tokens_per_s", "load_s", "prompt_tokens", "completion_tokens", "cold",
    "cached", "attempts", "started_at", "served_model", "format", "quantization", "arch", "context_length", "system",
    "temperature", "max_tokens", "seed",
)

# Errors that condemn every request to this model: don't send the rest.
_MODEL_ERRORS = (ModelNotFoundError, ModelLoadError, NoModelLoadedError, AuthenticationError, EndpointNotSupportedError)
# Errors that say the model (or server) is unwell: after this many in a row, stop sending to it.
_HEALTH_ERRORS = (LMStudioTimeoutError, ServerError, LMStudioStreamError, LMStudioConnectionError)
_BREAKER = 3
# Worth trying again after a pause: the server said "later", or the connection dropped.
_RETRYABLE = (RateLimitError, ServerBusyError, LMStudioStreamError, LMStudioConnectionError)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` tries in all; waits double from ``base_delay`` up to ``max_delay``.

    A ``Retry-After`` from the server is honoured, but never beyond ``max_delay``.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return float(backoff * random.uniform(0.8, 1.0))  # jitter so parallel retries do not land together


# Read at call time, so an application (or a test) may swap it for another policy.
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ProgressEvent:
    """What a ``progress=`` callback receives: at the start, when a model's turn begins, after each row, at the end.

    ``kind``: ``"start" | "model" | "row" | "end"``; ``index`` is the row's position in the result.
    """

    kind: Literal["start", "model", "row", "end"]
    done: int
    total: int
    errors: int
    cached: int
    model: str | None = None
    index: int | None = None
    status: str | None = None
    cold: bool = False


ProgressCallback = Callable[[ProgressEvent], object]


@dataclass
class _Outcome:
    """One row's result fields (what the cache stores, less ``cached``)."""

    status: Status
    response: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    error: str | None = None
    error_type: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    tokens_per_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    started_at: str | None = None  # ISO 8601, UTC
    served_model: str | None = None
    attempts: int = 0
    cold: bool = False
    cached: bool = False

    @classmethod
    def from_result(cls, result: ChatResult, *, started_at: str, attempts: int, cold: bool) -> _Outcome:
        return cls(
            status="ok",
            response=result.content,
            reasoning=result.reasoning,
            finish_reason=result.finish_reason,
            ttft_s=result.timings.time_to_first_token,
            latency_s=result.timings.total,
            tokens_per_s=result.timings.tokens_per_second,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            started_at=started_at,
            served_model=result.model,
            attempts=attempts,
            cold=cold,
        )

    @classmethod
    def from_error(
        cls, err: BaseException, *, started_at: str | None, attempts: int, cold: bool, message: str | None = None
    ) -> _Outcome:
        partial = err.partial if isinstance(err, LMStudioError) else None
        text = message or (err.message if isinstance(err, LMStudioError) else f"{type(err).__name__}: {err}")
        out = cls(
            status="error", error=text, error_type=type(err).__name__, started_at=started_at, attempts=attempts,
            cold=cold,
        )
        if partial is not None:
            out.response, out.reasoning = partial.content, partial.reasoning
        return out

    @classmethod
    def cancelled(
        cls, partial: ChatResult | None, *, started_at: str | None, attempts: int, cold: bool
    ) -> _Outcome:
        out = cls(status="cancelled", started_at=started_at, attempts=attempts, cold=cold, error_type="Cancelled")
        if partial is not None and (partial.content or partial.reasoning):
            out.response, out.reasoning = partial.content, partial.reasoning
            out.error = f"cancelled mid-answer (interrupted after {len(partial.content)} characters)"
        else:
            out.error = "cancelled (interrupted before it finished)" if started_at else "cancelled (not run)"
        return out

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> _Outcome:
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "cached": True})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# --- input ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    items: list[PromptItem]
    input_columns: list[str]  # a DataFrame input's columns, in order (renamed when they clash with ours)


def _prompt_items(prompts: Any, template: str | None) -> _Inputs:
    """Normalise the prompt forms: a string, a list, a dict, a DataFrame (+ template), (DataFrame, template)."""
    if isinstance(prompts, tuple) and len(prompts) == 2 and isinstance(prompts[0], pd.DataFrame):
        if template is not None:
            raise ValueError("Give the template once: either (df, template) or template=..., not both.")
        prompts, template = prompts
    if isinstance(prompts, pd.DataFrame):
        return _frame_items(prompts, template)
    if template is not None:
        raise ValueError("template= goes with a DataFrame of inputs: compare(df, models, template='... {column} ...').")
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, Mapping):
        items = [PromptItem(name, _checked_text(text, name)) for name, text in prompts.items()]
    elif isinstance(prompts, Sequence):
        items = [PromptItem(i, _checked_text(text, i)) for i, text in enumerate(prompts)]
    else:
        raise TypeError(
            "prompts must be a string, a list of strings, a dict {name: prompt}, or a DataFrame with a template, "
            f"not {type(prompts).__name__}."
        )
    if not items:
        raise ValueError("No prompts given: pass at least one.")
    return _Inputs(items, [])


def _checked_text(text: Any, name: Hashable) -> str:
    if not isinstance(text, str):
        raise TypeError(f"Prompt {name!r} must be a string, not {type(text).__name__}.")
    return text


def _frame_items(df: pd.DataFrame, template: str | None) -> _Inputs:
    if len(df) == 0:
        raise ValueError("The DataFrame of prompts is empty.")
    if template is None and "prompt" not in df.columns:
        raise ValueError(
            "A DataFrame of inputs needs a template that builds each prompt from its columns, e.g. "
            f"compare(df, models, template='Summarize: {{{df.columns[0]}}}'), or a 'prompt' column."
        )
    ours = set(COLUMNS)
    renamed = {str(c): (f"{c}_input" if str(c) in ours else str(c)) for c in df.columns}
    keep = [c for c in df.columns if template is not None or str(c) != "prompt"]
    items = []
    for label, row in df.iterrows():
        values = {str(k): v for k, v in row.items()}
        if template is None:
            text = _checked_text(values["prompt"], label)
        else:
            try:
                text = template.format_map(values)
            except KeyError as exc:
                raise ValueError(
                    f"The template refers to {{{exc.args[0]}}}, which is not a column; the columns are "
                    f"{[str(c) for c in df.columns]}."
                ) from None
            except (IndexError, ValueError) as exc:
                raise ValueError(f"The template {template!r} cannot be filled: {exc}.") from None
        items.append(PromptItem(label, text, {renamed[str(c)]: row[c] for c in keep}))
    return _Inputs(items, [renamed[str(c)] for c in keep])


def _messages(text: str, system: str | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": text})
    return messages


def _models_list(models: str | Sequence[str] | None, client: AsyncLMStudioClient) -> list[str]:
    if models is None:
        if not client.current_model:
            raise NoCurrentModelError()
        return [client.current_model]
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")] if "," in models else [models]
    out = list(dict.fromkeys(m for m in models if m))
    if not out:
        raise ValueError("No models given: pass model ids, e.g. compare(prompts, ['model-a', 'model-b']).")
    for m in out:
        if not isinstance(m, str):
            raise TypeError(f"Model ids must be strings, not {type(m).__name__}.")
    return out


def _async_client(
    client: LMStudioClient | AsyncLMStudioClient | None, timeout: float | None, *, reuse_async: bool
) -> tuple[AsyncLMStudioClient, bool]:
    """The async client to run on, and whether we made it (and so must close it).

    A sync client (the kernel's shared one by default) lends its settings to a new async client: an httpx
    AsyncClient belongs to one event loop, so ``compare`` (a new loop per call in a script) always makes its own.
    """
    if client is None:
        from lm_notebook.session import get_client

        client = get_client()
    if isinstance(client, AsyncLMStudioClient) and reuse_async and timeout is None:
        return client, False
    if not isinstance(client, (LMStudioClient, AsyncLMStudioClient)):
        raise TypeError(f"client must be an LMStudioClient or AsyncLMStudioClient, not {type(client).__name__}.")
    made = AsyncLMStudioClient(
        client.base_url,
        api_key=client._api_key,
        timeout=timeout if timeout is not None else client.timeout,
        model=client.current_model,
    )
    return made, True


def _known_model(model: str, infos: Mapping[str, ModelInfo]) -> bool:
    if model in infos or any(model in i.instance_ids for i in infos.values()):
        return True
    # a variant ("name@q4_k_m") or a second instance ("name:2") of a listed model
    base = re.sub(r":\d+$", "", model.split("@", 1)[0])
    return base in infos


# --- the run --------------------------------------------------------------------------------------------------


@dataclass
class _BatchState:
    batch: ModelBatch
    pending: deque[RequestSpec]
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    cold_next: bool = False
    failure: LMStudioError | None = None
    failure_note: str | None = None
    in_a_row: int = 0

    def note(self, err: LMStudioError | None) -> None:
        if err is None:
            self.in_a_row = 0
            return
        if isinstance(err, _MODEL_ERRORS):
            self.failure = err
        elif isinstance(err, _HEALTH_ERRORS):
            self.in_a_row += 1
            if self.in_a_row >= _BREAKER and self.failure is None:
                self.failure = err
                self.failure_note = f"{self.batch.model} failed {self.in_a_row} requests in a row"


class _Progress:
    """tqdm's bar (the widget in a notebook, text in a terminal); any failure of the bar only turns it off."""

    def __init__(self, total: int, models: Sequence[str]) -> None:
        self._counts = {m: [0, 0] for m in models}  # model → [done, total]
        self._bar: Any = None
        try:
            tqdm = importlib.import_module("tqdm.auto").tqdm
            # delay: a comparison that is over in a moment shows no bar at all
            self._bar = tqdm(total=total, desc="compare", unit="answer", delay=0.5, leave=True, dynamic_ncols=True)
        except Exception:
            self._bar = None

    def set_totals(self, totals: Mapping[str, int]) -> None:
        for m, n in totals.items():
            self._counts.setdefault(m, [0, 0])[1] = n

    def __call__(self, event: ProgressEvent) -> None:
        if self._bar is None:
            return
        try:
            if event.kind == "model" and event.model:
                self._bar.set_description(f"{event.model}{' (loading)' if event.cold else ''}", refresh=False)
            if event.kind == "row" and event.model:
                self._counts.setdefault(event.model, [0, 0])[0] += 1
                shown = " · ".join(f"{m} {d}/{t}" for m, (d, t) in self._counts.items())
                errors = f" · {event.errors} error{'s' if event.errors != 1 else ''}" if event.errors else ""
                self._bar.set_postfix_str(shown + errors, refresh=False)
                self._bar.update(1)
            if event.kind == "end":
                self.close()
        except Exception:
            self._bar = None

    def close(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            try:
                bar.close()
            except Exception:
                pass


class _Run:
    """One comparison's state: the plan, every row's outcome so far, the streams in flight."""

    def __init__(
        self,
        *,
        specs: list[RequestSpec],
        inputs: _Inputs,
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
        self.outcomes: list[_Outcome | None] = [None] * len(specs)
        self.keys: list[str | None] = [None] * len(specs)
        self.batches: list[ModelBatch] = []
        self.interrupted = False
        self.server_down: LMStudioConnectionError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live: dict[int, Any] = {}  # row index → its AsyncChatStream in flight
        self._begun: dict[int, tuple[str, int, bool]] = {}  # row index → (started_at, attempts, cold)
        self._events: asyncio.Queue[tuple[str, Any] | None] | None = None
        self._done = self._errors = self._cached = 0
        self._callback: ProgressCallback | None = progress if callable(progress) else None
        self._bar: _Progress | None = None
        if progress is True:
            self._bar = _Progress(len(specs), list(dict.fromkeys(s.model for s in specs)))
        self._closed = False

    # --- setup -------------------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Read the models' metadata, settle what is already known (unknown models, cache hits), make the plan."""
        self.infos = await self._list_models()
        models = list(dict.fromkeys(s.model for s in self.specs))
        if self.infos:
            ids = sorted(self.infos)
            for model in models:
                info = self.infos.get(model)
                err: LMStudioError | None = None
                if not _known_model(model, self.infos):
                    err = ModelNotFoundError(
                        model_not_found_message(model, ids, self.client.base_url), status_code=404, body=None
                    )
                elif info is not None and info.type == "embeddings":
                    err = ModelNotFoundError(
                        f'"{model}" is an embedding model: it cannot chat. Compare it with client.embed(...) '
                        "instead, or pick a language model.",
                        status_code=400,
                        body=None,
                    )
                if err is not None:
                    for spec in self.specs:
                        if spec.model == model:
                            self.outcomes[spec.index] = _Outcome.from_error(
                                err, started_at=None, attempts=0, cold=False
                            )
        for spec in self.specs:
            info = self.infos.get(spec.model)
            if self.cache is not None and self.cache.accepts(self.send):
                key = cache_key(
                    model=spec.model,
                    messages=self.messages[spec.prompt_index],
                    params=self.send,
                    repeat=spec.repeat,
                    quantization=info.quantization if info else None,
                    format=info.format if info else None,
                )
                self.keys[spec.index] = key
                if self.outcomes[spec.index] is None:
                    record = self.cache.get(key)
                    if record is not None:
                        self.outcomes[spec.index] = _Outcome.from_record(record)
        todo = [s for s in self.specs if self.outcomes[s.index] is None]
        loaded = [i.id for i in self.infos.values() if i.loaded]
        parallel = {i.id: i.parallel for i in self.infos.values()}
        self.batches = schedule(todo, loaded=loaded, concurrency=self.concurrency, parallel=parallel)
        if self._bar is not None:
            totals: dict[str, int] = {}
            for s in self.specs:
                totals[s.model] = totals.get(s.model, 0) + 1
            self._bar.set_totals(totals)

    async def _list_models(self) -> dict[str, ModelInfo]:
        try:
            return {m.id: m for m in await self.client.list_models()}
        except LMStudioConnectionError:
            raise
        except LMStudioError:
            # not LM Studio, or an odd build: run without metadata rather than not at all
            return {}

    # --- running -----------------------------------------------------------------------------------------------
    async def execute(self) -> pd.DataFrame:
        """Run the plan; return the DataFrame (also when interrupted or cancelled)."""
        self.loop = asyncio.get_running_loop()
        self.main_task = asyncio.current_task()
        self._events = asyncio.Queue()
        try:
            self._report(ProgressEvent("start", 0, len(self.specs), 0, 0))
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
                    self._report(self._event("model", model=model, cold=cold))
            await scheduler
            self._report(self._event("end"))
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.interrupt()
            await self._drain()
        finally:
            await self._close()
        return self.frame()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
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
        state = _BatchState(batch, deque(s for s in batch.requests if self.outcomes[s.index] is None))
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
        if state.failure is not None and state.pending:
            self._fail_rest(list(state.pending), state.failure, state.failure_note)
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
        while state.pending and state.failure is None and not self.interrupted and self.server_down is None:
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
                        isinstance(err, _RETRYABLE)
                        and attempts < self.retry.attempts
                        and not self.interrupted
                        and state.failure is None
                    ):
                        self._live.pop(spec.index, None)
                        await stream.aclose()
                        await asyncio.sleep(self.retry.delay(attempts, getattr(err, "retry_after", None)))
                        continue
                    outcome = _Outcome.from_error(err, started_at=started_at, attempts=attempts, cold=cold)
                    if isinstance(err, LMStudioConnectionError) and isinstance(
                        err.__cause__, (httpx.ConnectError, httpx.ConnectTimeout)
                    ):
                        self.server_down = err
                    # no warm.set(): until one answer starts, the model is probed one request at a time
                    state.note(err)
                    self._finish(spec.index, outcome)
                    return
                except Exception as err:  # a bug must cost one row, not the run
                    self._finish(spec.index, _Outcome.from_error(err, started_at=started_at, attempts=attempts,
                                                                 cold=cold))
                    return
                finally:
                    if self._live.get(spec.index) is stream:
                        partial = stream.partial() if partial is None else partial
                        del self._live[spec.index]
                        await stream.aclose()
                state.note(None)
                state.warm.set()
                self._finish(
                    spec.index, _Outcome.from_result(result, started_at=started_at, attempts=attempts, cold=cold)
                )
                return
        except asyncio.CancelledError:
            if self.outcomes[spec.index] is None:
                self.outcomes[spec.index] = _Outcome.cancelled(
                    partial, started_at=started_at, attempts=attempts, cold=cold
                )
            raise

    def _finish(self, index: int, outcome: _Outcome) -> None:
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
                self._finish(spec.index, _Outcome.from_error(err, started_at=None, attempts=0, cold=False,
                                                             message=message))

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
                self.outcomes[index] = _Outcome.cancelled(
                    stream.partial(), started_at=started_at, attempts=attempts, cold=cold
                )
        for spec in self.specs:
            if self.outcomes[spec.index] is None:
                started_at, attempts, cold = self._begun.get(spec.index, (None, 0, False))
                self.outcomes[spec.index] = _Outcome.cancelled(
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
            await asyncio.wait(tasks, timeout=5.0)
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
        if self._bar is not None:
            self._bar.close()
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

    # --- progress ----------------------------------------------------------------------------------------------
    def _event(self, kind: Literal["start", "model", "row", "end"], **kw: Any) -> ProgressEvent:
        return ProgressEvent(kind, self._done, len(self.specs), self._errors, self._cached, **kw)

    def _report_row(self, index: int) -> None:
        outcome = self.outcomes[index]
        assert outcome is not None
        self._done += 1
        self._errors += outcome.status == "error"
        self._cached += outcome.cached
        self._report(
            self._event("row", model=self.specs[index].model, index=index, status=outcome.status, cold=outcome.cold)
        )

    def _report(self, event: ProgressEvent) -> None:
        if self._bar is not None:
            self._bar(event)
        if self._callback is not None:
            self._callback(event)

    # --- result -------------------------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """The tidy DataFrame: one row per (prompt, model, repeat), in that order."""
        outcomes = [
            o if o is not None else _Outcome.cancelled(None, started_at=None, attempts=0, cold=False)
            for o in self.outcomes
        ]
        load = _load_seconds(self.specs, outcomes)
        rows = []
        for spec, outcome in zip(self.specs, outcomes, strict=True):
            info = self._seen_loaded.get(spec.model) or self.infos.get(spec.model)
            item = self.inputs.items[spec.prompt_index]
            data = outcome.record()
            data["cached"] = outcome.cached
            row: dict[str, Any] = {"prompt_name": spec.prompt_name, "prompt": spec.prompt}
            row.update(item.columns or {})
            row.update({"model": spec.model, "repeat": spec.repeat})
            row.update(data)
            row.update(
                {
                    "load_s": load.get(spec.index),
                    "format": info.format if info else None,
                    "quantization": info.quantization if info else None,
                    "arch": info.arch if info else None,
                    "context_length": info.context_length if info else None,
                    "system": self.system,
                }
            )
            row.update(self.params)
            rows.append(row)
        extra = [k for k in self.extra_params if k not in COLUMNS]
        columns = ["prompt_name", "prompt", *self.inputs.input_columns, *COLUMNS[2:], *extra]
        df = pd.DataFrame(rows, columns=columns)
        return _typed(df)


def _load_seconds(specs: Sequence[RequestSpec], outcomes: Sequence[_Outcome]) -> dict[int, float]:
    """For each cold row: its wait for the model to load (its TTFT less the model's usual TTFT)."""
    warm: dict[str, list[float]] = {}
    for spec, o in zip(specs, outcomes, strict=True):
        if o.status == "ok" and not o.cold and o.ttft_s is not None:
            warm.setdefault(spec.model, []).append(o.ttft_s)
    out = {}
    for spec, o in zip(specs, outcomes, strict=True):
        if o.cold and o.ttft_s is not None:
            usual = statistics.median(warm[spec.model]) if warm.get(spec.model) else 0.0
            out[spec.index] = max(o.ttft_s - usual, 0.0)
    return out


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for column in ("prompt_tokens", "completion_tokens", "attempts", "context_length", "max_tokens", "seed"):
        if column in df:
            df[column] = df[column].astype("Int64")
    for column in ("ttft_s", "latency_s", "tokens_per_s", "load_s", "temperature"):
        if column in df:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True, format="ISO8601")
    for column in ("cold", "cached"):
        df[column] = df[column].astype(bool)
    for column in ("error", "error_type", "finish_reason"):
        # "None when fine": keep Python None rather than a missing-string marker
        df[column] = df[column].astype(object).where(df[column].notna(), None)
    return df


# --- entry points ---------------------------------------------------------------------------------------------


def _params(
    temperature: float | None, max_tokens: int | None, seed: int | None, params: Mapping[str, Any]
) -> dict[str, Any]:
    for name in ("stream", "messages", "model"):
        if name in params:
            raise TypeError(f"compare() sets {name!r} itself; it cannot be passed as a request parameter.")
    return {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, **params}


async def _start(
    prompts: Any,
    models: str | Sequence[str] | None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None,
    system: str | None,
    repeats: int,
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    concurrency: Concurrency,
    cache: CacheArg,
    progress: bool | ProgressCallback,
    timeout: float | None,
    params: dict[str, Any],
    reuse_async: bool,
    box: list[_Run],
) -> pd.DataFrame:
    template = params.pop("template", None)
    inputs = _prompt_items(prompts, template)
    resolve_slots(concurrency, None)  # validate early
    all_params = _params(temperature, max_tokens, seed, params)
    aclient, owns_client = _async_client(client, timeout, reuse_async=reuse_async)
    try:
        model_ids = _models_list(models, aclient)
        specs = plan_requests(inputs.items, model_ids, repeats=repeats)
        messages = [_messages(item.text, system) for item in inputs.items]
        # refuse what LM Studio would reject before anything is sent (raises LMStudioRequestError)
        aclient._chat_payload(messages[0], model_ids[0], True, {k: v for k, v in all_params.items() if v is not None})
        rcache, owns_cache = open_cache(cache)
    except BaseException:
        if owns_client:
            await aclient.aclose()
        raise
    if rcache is not None and not rcache.accepts(all_params):
        warnings.warn(
            "compare(cache=...): these requests are not deterministic (no temperature=0 and no seed), so nothing "
            "is cached. Pass temperature=0 or a seed, or cache=ResponseCache(path, deterministic_only=False).",
            stacklevel=3,
        )
    run = _Run(
        specs=specs, inputs=inputs, messages=messages, params=all_params, extra_params=dict(params), system=system,
        client=aclient, owns_client=owns_client, cache=rcache, owns_cache=owns_cache, concurrency=concurrency,
        retry=DEFAULT_RETRY, progress=progress,
    )
    box.append(run)
    try:
        await run.prepare()
    except BaseException:
        await run._close()
        raise
    return await run.execute()


def compare(
    prompts: Prompts,
    models: str | Sequence[str] | None = None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None = None,
    system: str | None = None,
    repeats: int = 1,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    concurrency: Concurrency = "auto",
    cache: CacheArg = None,
    progress: bool | ProgressCallback = True,
    timeout: float | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Send every prompt to every model (``repeats`` times each) and return one row per answer.

    - ``prompts``: a list of strings, a dict ``{name: prompt}``, or a DataFrame with ``template="... {column} ..."``
      (or a ``prompt`` column); the DataFrame's columns are kept in the result.
    - ``models``: model ids (a list, or ``"a,b"``); default the client's current model.
    - ``client``: default the kernel's shared client (``get_client()``); ``timeout``: seconds per request.
    - ``temperature``, ``max_tokens``, ``seed`` and any other LM Studio request field (``top_p=...``) are sent with
      every request and recorded in the rows.
    - ``concurrency``: requests in flight per model; ``"auto"`` is the server's parallel slots (else 4).
    - ``cache``: ``True`` (default location), a path, or a :class:`ResponseCache`; deterministic requests only.
    - ``progress``: a bar (``True``), none (``False``), or a callable receiving each :class:`ProgressEvent`.

    Interrupting (Ctrl-C, the stop button) returns the rows so far; unfinished ones have ``status == "cancelled"``.

    >>> df = compare({"mutex": "Explain a mutex.", "primes": "Name 3 primes."},
    ...              ["qwen2.5-7b-instruct", "google/gemma-3-4b"], temperature=0)   # doctest: +SKIP
    >>> df[["prompt_name", "model", "response", "ttft_s", "tokens_per_s"]]         # doctest: +SKIP
    """
    box: list[_Run] = []
    coro = _start(
        prompts, models, client=client, system=system, repeats=repeats, temperature=temperature,
        max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache, progress=progress, timeout=timeout,
        params=dict(params), reuse_async=False, box=box,
    )
    try:
        return _run_sync(coro)
    except KeyboardInterrupt:
        if not box:
            raise  # interrupted while starting: no row to keep
        return box[0].recover()


async def acompare(
    prompts: Prompts,
    models: str | Sequence[str] | None = None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None = None,
    system: str | None = None,
    repeats: int = 1,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    concurrency: Concurrency = "auto",
    cache: CacheArg = None,
    progress: bool | ProgressCallback = True,
    timeout: float | None = None,
    **params: Any,
) -> pd.DataFrame:
    """The async twin of :func:`compare` (same arguments). Cancelling it returns the rows so far.

    An :class:`AsyncLMStudioClient` passed as ``client`` is used as is (and left open).
    """
    return await _start(
        prompts, models, client=client, system=system, repeats=repeats, temperature=temperature,
        max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache, progress=progress, timeout=timeout,
        params=dict(params), reuse_async=True, box=[],
    )


def _run_sync(coro: Any) -> pd.DataFrame:
    """Run ``coro`` to the end: with ``asyncio.run`` in a script, on the running loop (nest_asyncio) in Jupyter."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        result: pd.DataFrame = asyncio.run(coro)
        return result
    import nest_asyncio

    nest_asyncio.apply(loop)
    nested: pd.DataFrame = loop.run_until_complete(coro)
    return nested
