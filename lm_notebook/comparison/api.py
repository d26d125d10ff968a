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
``start`` (arguments checked, the run made), ``preflight`` (what is settled before sending), ``run`` (the
executor: ``run_state``, ``row_attempts``, ``model_batch``), ``retry`` (retries, the per-model breaker),
``rows`` (outcomes → DataFrame), ``progress``, ``cache``, ``interrupt`` (Stop), ``user_warnings`` and ``views``
(tables, summary, charts); the ``%%lm_compare`` magic is :mod:`lm_notebook.magics.compare`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE
from lm_notebook.client.tools import Tool
from lm_notebook.comparison.cache import ResponseCache
from lm_notebook.comparison.endpoints import Endpoints
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
from lm_notebook.comparison.schedule import Concurrency
from lm_notebook.comparison.start import CacheArg, Checks, Prompts, start
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

# Read at call time, so an application (or a test) may swap it for another policy.
DEFAULT_RETRY = RetryPolicy()


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
    max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE,
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
      ``images_hash``. Images longer than ``max_image_edge`` pixels (default 2048; None: never) are downscaled.
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
    coro = start(
        prompts=prompts, models=models, client=client, endpoints=endpoints, template=template, system=system,
        repeats=repeats,
        temperature=temperature, max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache,
        progress=progress, timeout=timeout, params=dict(params), reuse_async=False, box=box, checks=checks,
        expected=expected, schema=schema, images_column=images_column,
        max_image_edge=max_image_edge, tools=tools, retry=DEFAULT_RETRY,
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
    max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE,
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
            frame = await start(
                prompts=prompts, models=models, client=client, endpoints=endpoints, template=template, system=system,
                repeats=repeats,
                temperature=temperature, max_tokens=max_tokens, seed=seed, concurrency=concurrency, cache=cache,
                progress=progress, timeout=timeout, params=dict(params), reuse_async=True, box=box,
                checks=checks, expected=expected, schema=schema, images_column=images_column,
                max_image_edge=max_image_edge, tools=tools, retry=DEFAULT_RETRY,
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
