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

Stop means stop, and nothing finished is lost: an interrupt (Ctrl-C, the notebook's Stop button) raises
:class:`~lm_notebook.comparison.interrupt.ComparisonInterrupted` (a ``KeyboardInterrupt``, so the cell ends) whose
``frame`` holds every row so far — finished rows complete, unfinished ones ``status == "cancelled"`` with their partial
text — also kept as :func:`last_comparison`; one model failing marks only its own rows; 429, 503 and dropped
connections are retried with bounded backoff (honouring ``Retry-After``); ``cache=`` stores finished answers in SQLite
so a re-run skips them.

The parts, each a module of :mod:`lm_notebook.comparison`: ``inputs`` (prompt forms), ``schedule`` (the plan),
``preflight`` (what is settled before sending), ``run`` (the executor), ``retry`` (retries, the per-model breaker),
``rows`` (outcomes → DataFrame), ``progress``, ``cache``, ``interrupt`` (Stop), ``user_warnings`` and ``views``
(tables, summary, charts); the ``%%lm_compare`` magic is :mod:`lm_notebook.magics.compare`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient, resolve_timeout
from lm_notebook.client.errors import NoCurrentModelError
from lm_notebook.client.schemas import AnswerSchema, with_schema
from lm_notebook.client.tools import Tool
from lm_notebook.comparison.cache import ResponseCache, open_cache
from lm_notebook.comparison.checks import Check, CheckFunction, named_checks
from lm_notebook.comparison.endpoint_run import multi_endpoint_run
from lm_notebook.comparison.endpoints import Endpoints, ModelArg
from lm_notebook.comparison.inputs import PromptInputs, chat_messages, prompt_inputs
from lm_notebook.comparison.interrupt import (
    ComparisonInterrupted,
    SigintWatch,
    last_comparison,
    remember,
    run_to_end,
)
from lm_notebook.comparison.progress import ProgressCallback, ProgressEvent
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.comparison.rows import COLUMNS
from lm_notebook.comparison.run import ComparisonRun
from lm_notebook.comparison.schedule import Concurrency, plan_requests, resolve_slots
from lm_notebook.comparison.scoring import Scorer, expected_answers
from lm_notebook.comparison.tool_rows import checked_tools
from lm_notebook.comparison.user_warnings import warn_at_user_line
from lm_notebook.comparison.views import ComparisonTable, comparison_table, plot_summary, summary

__all__ = [
    "COLUMNS",
    "DEFAULT_RETRY",
    "ComparisonInterrupted",
    "ComparisonTable",
    "ProgressEvent",
    "ResponseCache",
    "RetryPolicy",
    "acompare",
    "compare",
    "comparison_table",
    "last_comparison",
    "plot_summary",
    "summary",
]

Prompts: TypeAlias = "str | Sequence[str] | Mapping[Hashable, str] | pd.DataFrame | tuple[pd.DataFrame, str]"
CacheArg: TypeAlias = "bool | str | Path | ResponseCache | None"
Checks: TypeAlias = "Sequence[Check | CheckFunction] | Check | CheckFunction | None"

# Read at call time, so an application (or a test) may swap it for another policy.
DEFAULT_RETRY = RetryPolicy()


NO_MODEL = (
    "No model to compare: pass models=['model-a', 'model-b'] (list_models() shows the ids), or set the current model "
    "compare uses without them: client.set_current_model('model-id'), or %lm_use model-id in a notebook."
)


def _models_list(models: str | Sequence[str] | None, client: AsyncLMStudioClient) -> list[str]:
    if models is None:
        if not client.current_model:
            raise NoCurrentModelError(NO_MODEL)
        return [client.current_model]
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")] if "," in models else [models]
    out = [m for m in models if m]
    if not out:
        raise ValueError("No models given: pass model ids, e.g. compare(prompts, ['model-a', 'model-b']).")
    for m in out:
        if not isinstance(m, str):
            raise TypeError(f"Model ids must be strings, not {type(m).__name__}.")
    # Refused rather than collapsed or kept twice: (prompt, model, repeat) names a row, and several answers from one
    # model are what repeats= is for.
    twice = sorted({m for m in out if out.count(m) > 1})
    if twice:
        listed = ", ".join(repr(m) for m in twice)
        raise ValueError(
            f"models lists {listed} more than once: give each model once (for several answers per prompt from one "
            "model, pass repeats=N)."
        )
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
    models: str | Sequence[ModelArg] | None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None,
    endpoints: Endpoints | None,
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
    checks: Checks = None,
    expected: object = None,
    schema: object = None,
    images_column: str | None = None,
    tools: Sequence[Tool | Callable[..., object]] | None = None,
) -> pd.DataFrame:
    inputs = prompt_inputs(prompts, template, images_column)
    check_list = named_checks(checks)
    references = expected_answers(expected, inputs.items)
    toolset = checked_tools(tools)
    resolve_slots(concurrency, None)  # validate early
    answer_schema = None if schema is None else AnswerSchema.of(schema)
    # the schema travels as its response_format: recorded in the cache key like any parameter
    all_params = _params(temperature, max_tokens, seed, with_schema(params, answer_schema))
    run: ComparisonRun
    if endpoints is not None:
        if client is not None:
            raise ValueError("Give client= or endpoints=, not both: a client is one endpoint, "
                             "e.g. endpoints=[client, 'http://192.168.1.20:1234'].")
        run = await multi_endpoint_run(
            inputs=inputs, models=models, endpoints=endpoints, system=system, repeats=repeats, params=all_params,
            extra_params=dict(params), concurrency=concurrency, cache=cache, progress=progress, timeout=timeout,
            retry=DEFAULT_RETRY, reuse_async=reuse_async,
        )
    else:
        run = await _one_server_run(
            inputs, models, client=client, system=system, repeats=repeats, all_params=all_params, params=params,
            concurrency=concurrency, cache=cache, progress=progress, timeout=timeout, reuse_async=reuse_async,
        )
    if cache is not None and cache is not False and (run.cache is None or not run.cache.accepts(all_params)):
        warn_at_user_line(
            "compare(cache=...): these requests are not deterministic (no temperature=0 and no seed), so nothing "
            "is cached. Pass temperature=0 or a seed, or cache=ResponseCache(path, deterministic_only=False)."
        )
    if check_list or references is not None:
        run.scorer = Scorer(check_list, references, run.specs, DEFAULT_RETRY)
    run.schema = answer_schema
    run.tools = tuple(toolset)  # each request an act (tool_rows.py)
    box.append(run)
    # known before prepare() awaits anything: an interrupt there must still be able to cancel this task
    run.loop, run.main_task = asyncio.get_running_loop(), asyncio.current_task()
    try:
        await run.prepare()
    except BaseException:
        await run._close()
        raise
    return await run.execute()


async def _one_server_run(
    inputs: PromptInputs,
    models: str | Sequence[ModelArg] | None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None,
    system: str | None,
    repeats: int,
    all_params: dict[str, Any],
    params: dict[str, object],
    concurrency: Concurrency,
    cache: CacheArg,
    progress: bool | ProgressCallback,
    timeout: float | None,
    reuse_async: bool,
) -> ComparisonRun:
    aclient, owns_client = _async_client(client, timeout, reuse_async=reuse_async)
    try:
        if models is not None and not isinstance(models, str) and any(isinstance(m, tuple) for m in models):
            raise TypeError("An (endpoint, model) pair pins a model to one of endpoints=[...]; without endpoints, "
                            "give model ids.")
        model_ids = _models_list(models, aclient)  # type: ignore[arg-type]  # no pairs: checked above
        specs = plan_requests(inputs.items, model_ids, repeats=repeats)
        messages = [chat_messages(item.text, system, item.images) for item in inputs.items]
        # refuse what LM Studio would reject before anything is sent (raises LMStudioRequestError)
        aclient._chat_payload(messages[0], model_ids[0], True, {k: v for k, v in all_params.items() if v is not None})
        rcache, owns_cache = open_cache(cache, all_params)  # none (and no file) when it would cache nothing
    except BaseException:
        if owns_client:
            await aclient.aclose()
        raise
    return ComparisonRun(
        specs=specs, inputs=inputs, messages=messages, params=all_params, extra_params=dict(params), system=system,
        client=aclient, owns_client=owns_client, cache=rcache, owns_cache=owns_cache, concurrency=concurrency,
        retry=DEFAULT_RETRY, progress=progress,
    )


def compare(
    prompts: Prompts,
    models: str | Sequence[str | tuple[str, str]] | None = None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None = None,
    endpoints: Endpoints | None = None,
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
    checks: Checks = None,
    expected: object = None,
    schema: object = None,
    images_column: str | None = None,
    tools: Sequence[Tool | Callable[..., object]] | None = None,
    **params: object,
) -> pd.DataFrame:
    """Send every prompt to every model (``repeats`` times each) and return one row per answer.

    - ``prompts``: a list of strings, a dict ``{name: prompt}``, or a DataFrame with ``template="... {column} ..."``
      (or a ``prompt`` column); the DataFrame's columns are kept in the result.
    - ``models``: model ids (a list, or ``"a,b"``); default the client's current model.
    - ``client``: default the kernel's shared client (``get_client()``); ``timeout``: seconds per request.
    - ``endpoints``: several servers instead of one client — a list of base URLs or clients, or a dict
      ``{name: url_or_client}``. Models are found per endpoint (``models=None``: every chat model of every one); a
      model several have is shared between them; ``"name/model"`` or ``(name, model)`` pins one to an endpoint.
      Each runs its own schedule at once; rows gain ``endpoint``. See :mod:`lm_notebook.comparison.endpoint_run`.
    - ``temperature``, ``max_tokens``, ``seed`` and any other LM Studio request field (``top_p=...``) are sent with
      every request and recorded in the rows.
    - ``concurrency``: requests in flight per model; ``"auto"`` is the server's parallel slots (else 4).
    - ``cache``: ``True`` (default location), a path, or a :class:`ResponseCache`; deterministic requests only.
    - ``progress``: a bar (``True``), none (``False``), or a callable receiving each :class:`ProgressEvent`.
    - ``checks``: :mod:`lm_notebook.checks` values or callables ``fn(answer, row)`` scoring each answer in 0–1: the
      rows gain ``check_<name>``, ``score`` (their mean), ``passed`` and ``check_notes``; ``expected``: the reference
      answers (a dict keyed like the prompts, a Series, a list, a column name) that ``equals``, ``similar_to`` and
      ``judge`` use. Judges run after the candidates, one judge model at a time; with ``cache=`` a re-run re-scores
      without asking the candidates again.
    - Images: a dict prompt may be ``{"prompt": "...", "images": [...]}`` (anything ``chat(images=...)`` takes); a
      DataFrame's images are in the column ``images_column`` names. Rows then have ``images`` (how many) and
      ``images_hash``.
    - ``schema``: a pydantic model class or JSON-schema dict every answer must follow; rows get ``parsed``,
      ``valid`` and ``schema_error``, and :func:`summary` each model's ``valid_rate``.
    - ``tools``: functions the models may call (as in ``client.act``): each request is an act, and the rows gain
      ``tool_calls``, ``tool_errors`` (the model's invalid calls) and ``rounds``; ``summary`` each model's
      ``tool_call_success_rate``.

    Interrupting it (Ctrl-C, the notebook's Stop button) raises :class:`ComparisonInterrupted`, a
    ``KeyboardInterrupt``: the cell (or loop) stops, and its ``frame`` — also :func:`last_comparison` — holds every row
    so far, unfinished ones with ``status == "cancelled"`` and their partial text.

    >>> df = compare({"mutex": "Explain a mutex.", "primes": "Name 3 primes."},
    ...              ["qwen2.5-7b-instruct", "google/gemma-3-4b"], temperature=0)   # doctest: +SKIP
    >>> df[["prompt_name", "model", "response", "ttft_s", "tokens_per_s"]]         # doctest: +SKIP
    """
    box: list[ComparisonRun] = []
    coro = _start(
        prompts, models, client=client, endpoints=endpoints, template=template, system=system, repeats=repeats,
        temperature=temperature, max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache,
        progress=progress, timeout=timeout, params=dict(params), reuse_async=False, box=box, checks=checks,
        expected=expected,
        schema=schema, images_column=images_column, tools=tools,
    )
    try:
        frame = run_to_end(coro)
    except KeyboardInterrupt:
        if not box:
            raise  # interrupted while starting: there is no row to keep
        frame = box[0].recover()  # a second Ctrl-C, or one before the run began
    return _result(box[0], frame, "compare()")


async def acompare(
    prompts: Prompts,
    models: str | Sequence[str | tuple[str, str]] | None = None,
    *,
    client: LMStudioClient | AsyncLMStudioClient | None = None,
    endpoints: Endpoints | None = None,
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
    checks: Checks = None,
    expected: object = None,
    schema: object = None,
    images_column: str | None = None,
    tools: Sequence[Tool | Callable[..., object]] | None = None,
    **params: object,
) -> pd.DataFrame:
    """The async twin of :func:`compare` (same arguments).

    Ctrl-C or the Stop button (which cancel the task running it, in ``asyncio.run`` and in Jupyter) raises
    :class:`ComparisonInterrupted`, as :func:`compare` does. Cancelled by code — ``task.cancel()``, a timeout, a
    ``TaskGroup`` — it raises ``CancelledError`` as asyncio expects; the rows so far are in :func:`last_comparison`.
    An :class:`AsyncLMStudioClient` passed as ``client`` is used as is (and left open).
    """
    box: list[ComparisonRun] = []
    with SigintWatch() as sigint:
        try:
            frame = await _start(
                prompts, models, client=client, endpoints=endpoints, template=template, system=system, repeats=repeats,
                temperature=temperature, max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache,
                progress=progress, timeout=timeout, params=dict(params), reuse_async=True, box=box,
                checks=checks, expected=expected, schema=schema, images_column=images_column,
                tools=tools,
            )
        except asyncio.CancelledError:
            if not box:
                raise
            box[0].stopped_by = "cancel"  # before the run began (while it read the models)
            box[0].interrupt()
            frame = box[0].frame()
    run = box[0]
    if run.stopped_by == "cancel":
        if not sigint.pressed:
            remember(frame)
            raise asyncio.CancelledError  # cancelled by code: asyncio's signal goes on (timeouts, task groups)
        # a Stop: raised as ComparisonInterrupted instead, so the cancellation is handled here
        uncancel = getattr(asyncio.current_task(), "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
    return _result(run, frame, "acompare()")


def _result(run: ComparisonRun, frame: pd.DataFrame, caller: str) -> pd.DataFrame:
    """``frame``, kept as :func:`last_comparison`; raised in :class:`ComparisonInterrupted` when the run was stopped."""
    remember(frame)
    if run.stopped_by is None:
        return frame
    cache = run.cache
    # a re-run resumes only from a cache that outlives this call and holds at least one of its answers
    resumable = (
        cache is not None
        and cache.accepts(run.send)
        and not (run.owns_cache and str(cache.path) == ":memory:")
        and any(o is not None and o.status == "ok" for o in run.outcomes)
    )
    raise ComparisonInterrupted(frame, resumable=resumable, caller=caller)

