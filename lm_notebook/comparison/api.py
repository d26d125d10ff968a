"""``compare``: the same prompts across several local models, into one tidy pandas DataFrame.

>>> from lm_notebook import compare, comparison_table, summary
>>> df = compare(["Explain a mutex in one sentence.", "Name three prime numbers."],
...              ["qwen2.5-7b-instruct", "google/gemma-3-4b"], temperature=0, cache=True)   # doctest: +SKIP
>>> comparison_table(df)   # answers side by side                                         # doctest: +SKIP
>>> summary(df)            # per model: TTFT, latency, tokens/s, errors                     # doctest: +SKIP

How it runs (see :mod:`lm_notebook.comparison.schedule` for the plan): model by model, so each model is loaded once even
with LM Studio's auto-evict; within a model up to the server's parallel slots in flight; a model that is not loaded
gets its first request alone, and that row is marked ``cold`` (its load time is ``load_s``, kept out of the TTFT
statistics). Everything runs on one asyncio loop with :class:`~lm_notebook.client.AsyncLMStudioClient`.

Never losing work: an interrupt (Ctrl-C, the notebook's stop button, or cancelling ``acompare``) returns the
DataFrame so far, with unfinished rows ``status == "cancelled"`` and their partial text kept; one model failing marks
only its own rows; 429, 503 and dropped connections are retried with bounded backoff (honouring ``Retry-After``);
``cache=`` stores finished answers in SQLite so a re-run skips them.

The parts, each a module of :mod:`lm_notebook.comparison`: ``inputs`` (prompt forms), ``schedule`` (the plan),
``preflight`` (what is settled before sending), ``run`` (the executor), ``retry`` (retries, the per-model breaker),
``rows`` (outcomes → DataFrame), ``progress``, ``cache`` and ``views`` (tables, summary, charts); the ``%%lm_compare``
magic is :mod:`lm_notebook.magics.compare`.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import warnings
from collections.abc import Coroutine, Hashable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeAlias

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient, resolve_timeout
from lm_notebook.client.errors import NoCurrentModelError
from lm_notebook.comparison.cache import ResponseCache, open_cache
from lm_notebook.comparison.inputs import chat_messages, prompt_inputs
from lm_notebook.comparison.progress import ProgressCallback, ProgressEvent
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.comparison.rows import COLUMNS
from lm_notebook.comparison.run import ComparisonRun
from lm_notebook.comparison.schedule import Concurrency, plan_requests, resolve_slots
from lm_notebook.comparison.views import ComparisonTable, comparison_table, plot_summary, summary

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

# Read at call time, so an application (or a test) may swap it for another policy.
DEFAULT_RETRY = RetryPolicy()


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
        from lm_notebook.client.session import get_client

        client = get_client()
    if isinstance(client, AsyncLMStudioClient) and reuse_async and timeout is None:
        return client, False
    if not isinstance(client, (LMStudioClient, AsyncLMStudioClient)):
        raise TypeError(f"client must be an LMStudioClient or AsyncLMStudioClient, not {type(client).__name__}.")
    # resolved here so a timeout of 0 is refused as before (from_client would read it as "not given")
    made = AsyncLMStudioClient.from_client(client, timeout=None if timeout is None else resolve_timeout(timeout))
    return made, True


# --- entry points ---------------------------------------------------------------------------------------------


def _params(
    temperature: float | None, max_tokens: int | None, seed: int | None, params: Mapping[str, object]
) -> dict[str, Any]:
    for name in ("stream", "messages", "model"):
        if name in params:
            raise TypeError(f"compare() sets {name!r} itself; it cannot be passed as a request parameter.")
    return {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, **params}


async def _start(
    prompts: Prompts,
    models: str | Sequence[str] | None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None,
    template: str | None,
    system: str | None,
    repeats: int,
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    concurrency: Concurrency,
    cache: CacheArg,
    progress: bool | ProgressCallback,
    timeout: float | None,
    params: dict[str, object],
    reuse_async: bool,
    box: list[ComparisonRun],
) -> pd.DataFrame:
    inputs = prompt_inputs(prompts, template)
    resolve_slots(concurrency, None)  # validate early
    all_params = _params(temperature, max_tokens, seed, params)
    aclient, owns_client = _async_client(client, timeout, reuse_async=reuse_async)
    try:
        model_ids = _models_list(models, aclient)
        specs = plan_requests(inputs.items, model_ids, repeats=repeats)
        messages = [chat_messages(item.text, system) for item in inputs.items]
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
    run = ComparisonRun(
        specs=specs, inputs=inputs, messages=messages, params=all_params, extra_params=dict(params), system=system,
        client=aclient, owns_client=owns_client, cache=rcache, owns_cache=owns_cache, concurrency=concurrency,
        retry=DEFAULT_RETRY, progress=progress,
    )
    box.append(run)
    # known before prepare() awaits anything: an interrupt there must still be able to cancel this task
    run.loop, run.main_task = asyncio.get_running_loop(), asyncio.current_task()
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
    template: str | None = None,
    **params: object,
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
    box: list[ComparisonRun] = []
    coro = _start(
        prompts, models, client=client, template=template, system=system, repeats=repeats, temperature=temperature,
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
    template: str | None = None,
    **params: object,
) -> pd.DataFrame:
    """The async twin of :func:`compare` (same arguments). Cancelling it returns the rows so far.

    An :class:`AsyncLMStudioClient` passed as ``client`` is used as is (and left open).
    """
    return await _start(
        prompts, models, client=client, template=template, system=system, repeats=repeats, temperature=temperature,
        max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache, progress=progress, timeout=timeout,
        params=dict(params), reuse_async=True, box=[],
    )


def _run_sync(coro: Coroutine[Any, Any, pd.DataFrame]) -> pd.DataFrame:
    """Run ``coro`` to the end: with ``asyncio.run`` in a script, on the running loop (nest_asyncio) in Jupyter.

    Either way the first Ctrl-C cancels the run, which returns the rows so far: ``asyncio.run`` does that itself,
    :class:`_CtrlCCancels` does it inside a running loop.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        result: pd.DataFrame = asyncio.run(coro)
        return result
    import nest_asyncio

    nest_asyncio.apply(loop)
    task = loop.create_task(coro)
    with _CtrlCCancels(task) as ctrl_c:
        try:
            nested: pd.DataFrame = loop.run_until_complete(task)
        except asyncio.CancelledError:
            if ctrl_c.pressed:
                raise KeyboardInterrupt from None  # cancelled before the run began: nothing to return
            raise
    return nested


class _CtrlCCancels:
    """The first Ctrl-C cancels ``task`` instead of raising KeyboardInterrupt; a second one raises it as usual.

    Inside a running loop (a notebook cell) Ctrl-C raises KeyboardInterrupt wherever the main thread happens to be,
    and inside httpx's connection set-up (anyio's task group) it can be lost: the run would go on to the end. This is
    what ``asyncio.Runner`` does for ``asyncio.run``. A SIGINT handler other than Python's default is left alone.
    """

    def __init__(self, task: asyncio.Task[pd.DataFrame]) -> None:
        self.task = task
        self.pressed = False

    def __enter__(self) -> _CtrlCCancels:
        if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.pressed or self.task.done():
            raise KeyboardInterrupt
        self.pressed = True
        self.task.cancel()
        self.task.get_loop().call_soon_threadsafe(lambda: None)  # wake the loop if it waits in select()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
