"""What a comparison knows before it sends anything: the models' metadata, rows that cannot be sent, cache keys.

A model the server does not list, or an embedding model (it cannot chat), fails its rows unsent; its
:class:`~lm_notebook.client.errors.ModelNotFoundError` names the model and the ids the server has. With a cache, each
row's key is made here from the request and the model's metadata, so a stored answer settles the row before the run.
"""

from __future__ import annotations

import asyncio
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.errors import LMStudioConnectionError, LMStudioError, ModelNotFoundError, suggest_model
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.cache import CacheKeys, ResponseCache
from lm_notebook.comparison.rows import Outcome
from lm_notebook.comparison.schedule import RequestSpec


async def model_infos(client: AsyncLMStudioClient) -> dict[str, ModelInfo]:
    """The server's models by id; empty when it cannot list them (then nothing is refused before sending)."""
    try:
        return {m.id: m for m in await client.list_models()}
    except LMStudioConnectionError:
        raise
    except LMStudioError:
        # not LM Studio, or an odd build: run without metadata rather than not at all
        return {}


def start_listing(client: AsyncLMStudioClient) -> asyncio.Task[dict[str, ModelInfo]]:
    """:func:`model_infos` as a task of its own, so the round trip overlaps the work that does not need it (its
    failure is raised where it is awaited; one never awaited, cancelled or not, is not reported as unretrieved)."""
    task = asyncio.ensure_future(model_infos(client))
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def known_model(model: str, infos: Mapping[str, ModelInfo]) -> bool:
    """Whether the listing has ``model``: an id, an instance id, a variant ("name@q4_k_m") or instance ("name:2")."""
    if model in infos or any(model in i.instance_ids for i in infos.values()):
        return True
    base = re.sub(r":\d+$", "", model.split("@", 1)[0])
    return base in infos


def refusal(model: str, infos: Mapping[str, ModelInfo], base_url: str) -> ModelNotFoundError | None:
    """Why ``model`` cannot be compared, or None when it can (always None without a listing)."""
    if not infos:
        return None
    ids = sorted(infos)
    info = infos.get(model)
    if not known_model(model, infos):
        message, status = not_listed_message(model, ids, base_url), 404
    elif info is not None and info.type == "embeddings":
        message = (
            f'"{model}" is an embedding model: it cannot chat. Compare it with client.embed(...) instead, or pick a '
            "language model."
        )
        status = 400
    else:
        return None
    return ModelNotFoundError(message, status_code=status, model=model, available=ids)


def not_listed_message(model: str, ids: list[str], base_url: str) -> str:
    """The client's "not available" message, with compare's own remedy: the id is fixed where it was given (the
    client's says set_current_model, which compare does not read)."""
    shown = ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "")
    guess = suggest_model(model, ids)
    did_you_mean = f' Did you mean "{guess}"?' if guess else ""
    return (
        f'Model "{model}" is not available on LM Studio at {base_url}. Available: {shown}.{did_you_mean} Fix the id '
        "in models (compare's models=, %%lm_compare's -m), or download the model in LM Studio."
    )


def refused_rows(specs: Sequence[RequestSpec], infos: Mapping[str, ModelInfo], base_url: str) -> dict[int, Outcome]:
    """The rows whose model cannot be compared (row index → its error outcome, never sent)."""
    refused: dict[str, ModelNotFoundError | None] = {}
    rows: dict[int, Outcome] = {}
    for spec in specs:
        if spec.model not in refused:
            refused[spec.model] = refusal(spec.model, infos, base_url)
        err = refused[spec.model]
        if err is not None:
            rows[spec.index] = Outcome.from_error(err, started_at=None, attempts=0, cold=False)
    return rows


_key_fields = operator.attrgetter("model", "prompt_index", "repeat")


def _listed(info: ModelInfo | None) -> tuple[str | None, str | None]:
    return (info.quantization, info.format) if info else (None, None)


def request_key(
    spec: RequestSpec, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], info: ModelInfo | None,
    keys: CacheKeys | None = None,
) -> str:
    """The cache key of one row: the request as sent, and the model's quantization and format when listed
    (``keys``: the maker shared by a run's rows, which all have ``params``)."""
    return (keys or CacheKeys(params)).key(
        model=spec.model, messages=messages, messages_id=spec.prompt_index, repeat=spec.repeat,
        quantization=_listed(info)[0], format=_listed(info)[1],
    )


def cache_hits(
    specs: Sequence[RequestSpec],
    messages: Sequence[Sequence[Mapping[str, Any]]],
    params: Mapping[str, Any],
    infos: Mapping[str, ModelInfo],
    cache: ResponseCache,
    settled: Sequence[object | None],
) -> tuple[list[str | None], dict[int, Outcome]]:
    """Every row's cache key, and the rows the cache answers (row index → its stored outcome); a row ``settled``
    already (refused) is not looked up."""
    keys: list[str | None] = [*CacheKeys(params).keys(
        map(_key_fields, specs), messages.__getitem__, lambda model: _listed(infos.get(model)),
    )]
    wanted = [key for spec, key in zip(specs, keys, strict=True) if key is not None and settled[spec.index] is None]
    stored, records = cache.answers(wanted)
    hits: dict[int, Outcome] = {}
    for spec, key in zip(specs, keys, strict=True):
        if key is None or settled[spec.index] is not None:
            continue
        values = stored.get(key)
        if values is not None:
            hits[spec.index] = Outcome.from_stored(values)
        elif key in records:
            hits[spec.index] = Outcome.from_record(records[key])
    return keys, hits
