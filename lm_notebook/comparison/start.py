"""Starting a comparison: the arguments of ``compare``/``acompare`` checked and turned into its run.

Everything given wrong fails here, before anything is sent: the prompts and models, the request parameters (refused
as LM Studio would refuse them), the checks, the schema and the tools. Then the run is made — one server's
(:class:`~lm_notebook.comparison.run.ComparisonRun`) or several servers'
(:mod:`lm_notebook.comparison.endpoint_run`) — prepared and executed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient, resolve_timeout
from lm_notebook.client.errors import NoCurrentModelError
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE
from lm_notebook.client.schemas import AnswerSchema, with_schema
from lm_notebook.client.tools import Tool
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.cache import ResponseCache, open_cache
from lm_notebook.comparison.check_models import CheckServers, check_models
from lm_notebook.comparison.checks import Check, CheckFunction, named_checks
from lm_notebook.comparison.collector import CollectorPause, gc_paused
from lm_notebook.comparison.endpoint_run import MultiEndpointRun, multi_endpoint_run
from lm_notebook.comparison.endpoints import Endpoints, ModelArg
from lm_notebook.comparison.expected import expected_answers
from lm_notebook.comparison.inputs import PromptInputs, chat_messages, prompt_inputs
from lm_notebook.comparison.preflight import start_listing
from lm_notebook.comparison.progress import ProgressCallback
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.comparison.run import ComparisonRun
from lm_notebook.comparison.schedule import Concurrency, check_repeats, plan_requests, resolve_slots
from lm_notebook.comparison.scoring import Scorer
from lm_notebook.comparison.tool_rows import checked_tools
from lm_notebook.comparison.user_warnings import warn_at_user_line

Prompts: TypeAlias = "str | Sequence[str] | Mapping[Hashable, str] | pd.DataFrame | tuple[pd.DataFrame, str]"
CacheArg: TypeAlias = "bool | str | Path | ResponseCache | None"
Checks: TypeAlias = "Sequence[Check | CheckFunction] | Check | CheckFunction | None"

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


def _params(
    temperature: float | None, max_tokens: int | None, seed: int | None, params: Mapping[str, object]
) -> dict[str, Any]:
    for name in ("stream", "messages", "model"):
        if name in params:
            raise TypeError(f"compare() sets {name!r} itself; it cannot be passed as a request parameter.")
    return {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, **params}


async def start(**arguments: Any) -> pd.DataFrame:
    """The comparison ``compare``/``acompare`` asked for (the arguments of :func:`_prepared`), run to its DataFrame.

    The garbage collector is off while the run is set up (its inputs, plan, keys and cached rows are made in bulk:
    tens of thousands of young objects, which a collection in between would walk for nothing). When that settles
    every row (a fully cached re-run: nothing to stream, no judge), it stays off to the frame, which is made next;
    otherwise this call gives its hold back before the first row is sent, so a long run's streams are collected as
    they go. The pause is counted (:mod:`~lm_notebook.comparison.collector`): concurrent calls share it."""
    with CollectorPause() as pause:  # counted: other acompare tasks and threads pause it too (collector.py)
        run = await _prepared(**arguments)
        if run.scorer is not None or any(outcome is None for outcome in run.outcomes):
            pause.release()
        return await run.execute()


async def _prepared(
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
    max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE,
    tools: Sequence[Tool | Callable[..., object]] | None = None,
    retry: RetryPolicy,
) -> ComparisonRun:
    """The comparison ``compare``/``acompare`` asked for, checked and prepared (what is known settled); ``box``
    receives its run as soon as it exists (so an interrupt while starting can still return the rows)."""
    with gc_paused():  # a prompt item each: made in bulk (collector.py)
        inputs = prompt_inputs(prompts, template, images_column, max_image_edge)
    check_list = named_checks(checks)
    references = expected_answers(expected, inputs)
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
            retry=retry, reuse_async=reuse_async,
        )
    else:
        run = await _one_server_run(
            inputs, models, client=client, system=system, repeats=repeats, all_params=all_params, params=params,
            concurrency=concurrency, cache=cache, progress=progress, timeout=timeout, reuse_async=reuse_async,
            retry=retry,
        )
    try:
        if cache is not None and cache is not False and (run.cache is None or not run.cache.accepts(all_params)):
            warn_at_user_line(
                "compare(cache=...): these requests are not deterministic (no temperature=0 and no seed), so nothing "
                "is cached. Pass temperature=0 or a seed, or cache=ResponseCache(path, deterministic_only=False)."
            )
        if check_list or references is not None:
            run.scorer = Scorer(check_list, references, run.specs, retry)
        run.schema = answer_schema
        run.tools = tuple(toolset)  # each request an act (tool_rows.py)
        box.append(run)
        # known before prepare() awaits anything: an interrupt there must still be able to cancel this task
        run.loop, run.main_task = asyncio.get_running_loop(), asyncio.current_task()
        await run.prepare()
        if run.scorer is not None:  # a judge or embedding model the server lacks: said now, not after the run
            run.scorer.servers = (run.check_servers() if isinstance(run, MultiEndpointRun)
                                  else CheckServers.one(run.client, run.infos))
            check_models(run.scorer.checks, run.scorer.servers)
    except BaseException:
        await run._close()
        raise
    return run


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
    retry: RetryPolicy,
) -> ComparisonRun:
    aclient, owns_client = _async_client(client, timeout, reuse_async=reuse_async)
    listing: asyncio.Task[dict[str, ModelInfo]] | None = None
    rcache: ResponseCache | None = None
    owns_cache = False
    try:
        if models is not None and not isinstance(models, str) and any(isinstance(m, tuple) for m in models):
            raise TypeError("An (endpoint, model) pair pins a model to one of endpoints=[...]; without endpoints, "
                            "give model ids.")
        model_ids = _models_list(models, aclient)  # type: ignore[arg-type]  # no pairs: checked above
        check_repeats(repeats)
        with gc_paused():  # a prompt's messages each: made in bulk
            messages = [chat_messages(item.text, system, item.images) for item in inputs.items]
        # refuse what LM Studio would reject before anything is sent (raises LMStudioRequestError)
        aclient._chat_payload(messages[0], model_ids[0], True, {k: v for k, v in all_params.items() if v is not None})
        rcache, owns_cache = open_cache(cache, all_params)  # none (and no file) when it would cache nothing
        # Everything given is checked: the one listing the run needs (a round trip, the cache keys and the models'
        # columns wait for it) goes out now, and is on its way while the rows are planned.
        listing = start_listing(aclient)
        await asyncio.sleep(0)  # the listing's task begins (connects)
        with gc_paused():  # a row each: made in bulk
            specs = plan_requests(inputs.items, model_ids, repeats=repeats)
        await asyncio.sleep(0)  # and goes on (sends) while the run is made
    except BaseException:
        if listing is not None:
            listing.cancel()
        if owns_cache and rcache is not None:
            rcache.close()
        if owns_client:
            await aclient.aclose()
        raise
    run = ComparisonRun(
        specs=specs, inputs=inputs, messages=messages, params=all_params, extra_params=dict(params), system=system,
        client=aclient, owns_client=owns_client, cache=rcache, owns_cache=owns_cache, concurrency=concurrency,
        retry=retry, progress=progress,
    )
    run.listing = listing
    return run
