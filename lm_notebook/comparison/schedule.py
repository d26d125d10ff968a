"""How ``compare`` orders its requests for a local server (pure: no I/O, no pandas).

LM Studio keeps at most one just-in-time loaded model with auto-evict on (the default), so every switch of model in a
batch unloads one and loads another. The plan therefore runs model by model (models already loaded first, so they are
used before anything evicts them), and within a model keeps up to ``slots`` requests in flight (the server's parallel
prediction slots). A model that is not loaded gets its first request alone: it carries the load, and the other slots
open as soon as its first token arrives, so the load time lands on one row (``cold``) instead of four.

>>> specs = plan_requests(["a", "b"], ["m1", "m2"], repeats=1)
>>> [(s.prompt, s.model) for s in specs]
[('a', 'm1'), ('a', 'm2'), ('b', 'm1'), ('b', 'm2')]
>>> [(b.model, len(b.requests)) for b in schedule(specs, loaded={"m2"}, concurrency="auto")]
[('m2', 2), ('m1', 2)]
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from lm_notebook.client.types import SentImage

Concurrency = int | Literal["auto"]
# LM Studio's default number of parallel predictions per loaded model (continuous batching).
DEFAULT_SLOTS = 4
_Frozen = TypeVar("_Frozen")


@dataclass(frozen=True)
class PromptItem:
    """One prompt of the input: its name (dict key, DataFrame index label or list position), text, extra columns and
    the images sent with it (prepared: read, checked, encoded)."""

    name: Hashable
    text: str
    columns: Mapping[str, Any] | None = None
    images: tuple[SentImage, ...] = ()


@dataclass(frozen=True)
class RequestSpec:
    """One request: ``index`` is its row in the result (prompt-major, then model, then repeat)."""

    index: int
    prompt_index: int
    prompt_name: Hashable
    prompt: str
    model: str
    repeat: int


@dataclass(frozen=True)
class ModelBatch:
    """The requests for one model, run together with up to ``slots`` in flight."""

    model: str
    requests: tuple[RequestSpec, ...]
    slots: int
    cold: bool  # the model is not loaded when its turn comes: its first request carries the load
    slots_known: bool  # False when ``slots`` is a default that the loaded model may correct


def made(cls: type[_Frozen], **fields: Any) -> _Frozen:
    """``cls(**fields)`` for a frozen dataclass of plain fields (no defaults left out, no ``__post_init__``), without
    its ``__init__``: that sets each field through ``object.__setattr__``, most of the cost of planning 1,000 rows."""
    obj: _Frozen = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}.")


def plan_requests(prompts: Sequence[str | PromptItem], models: Sequence[str], *, repeats: int = 1) -> list[RequestSpec]:
    """Every (prompt, model, repeat) request, in result order."""
    check_repeats(repeats)
    items = [p if isinstance(p, PromptItem) else PromptItem(i, p) for i, p in enumerate(prompts)]
    out: list[RequestSpec] = []
    for p_index, item in enumerate(items):
        for model in models:
            for repeat in range(repeats):
                out.append(made(RequestSpec, index=len(out), prompt_index=p_index, prompt_name=item.name,
                                prompt=item.text, model=model, repeat=repeat))
    return out


def resolve_slots(concurrency: Concurrency, parallel: int | None) -> tuple[int, bool]:
    """Requests in flight per model, and whether that number is settled (not a guess to correct later)."""
    if concurrency == "auto":
        if parallel is not None and parallel >= 1:
            return parallel, True
        return DEFAULT_SLOTS, False
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f'concurrency must be "auto" or a positive integer, not {concurrency!r}.')
    return concurrency, True


def order_models(models: Sequence[str], loaded: Iterable[str]) -> list[str]:
    """Models already loaded first (used before a JIT load can evict them), the rest in the order given."""
    loaded_set = set(loaded)
    return [m for m in models if m in loaded_set] + [m for m in models if m not in loaded_set]


def schedule(
    requests: Sequence[RequestSpec],
    *,
    loaded: Iterable[str] = (),
    concurrency: Concurrency = "auto",
    parallel: Mapping[str, int | None] | None = None,
) -> list[ModelBatch]:
    """Group ``requests`` by model, in the order :func:`order_models` gives.

    ``loaded``: ids loaded now; ``parallel``: the parallel slots each loaded model reports (when it does).
    """
    loaded_set = set(loaded)
    by_model: dict[str, list[RequestSpec]] = {}
    for spec in requests:
        by_model.setdefault(spec.model, []).append(spec)
    batches = []
    for model in order_models(list(by_model), loaded_set):
        slots, known = resolve_slots(concurrency, (parallel or {}).get(model))
        batches.append(ModelBatch(model, tuple(by_model[model]), slots, model not in loaded_set, known))
    return batches


def count_loads(models_in_order: Iterable[Hashable], *, loaded: Hashable | None = None) -> int:
    """Model loads a one-at-a-time sequence of requests causes with auto-evict on (one JIT model at a time)."""
    loads = 0
    current: Hashable | None = loaded
    for model in models_in_order:
        if model != current:
            loads += 1
            current = model
    return loads


def ideal_seconds(
    *,
    models: int,
    prompts: int,
    slots: int,
    load_seconds: float,
    reply_tokens: int,
    tokens_per_second: float,
    ttft_seconds: float = 0.0,
) -> float:
    """The best wall time a client can get: each model loaded once, its slots always full.

    Every request takes ``ttft + reply_tokens / tokens_per_second`` and a model runs ``ceil(prompts / slots)`` waves.
    """
    per_request = ttft_seconds + (reply_tokens / tokens_per_second if tokens_per_second > 0 else 0.0)
    return models * (load_seconds + math.ceil(prompts / slots) * per_request)


def naive_seconds(
    *,
    models: int,
    prompts: int,
    load_seconds: float,
    reply_tokens: int,
    tokens_per_second: float,
    ttft_seconds: float = 0.0,
) -> float:
    """The wall time of a loop over prompts then models, one request at a time, with auto-evict on."""
    per_request = ttft_seconds + (reply_tokens / tokens_per_second if tokens_per_second > 0 else 0.0)
    loads = count_loads(m for _ in range(prompts) for m in range(models))
    return loads * load_seconds + models * prompts * per_request
