"""A comparison's rows: each request's outcome, and the tidy DataFrame they make (one row per answer).

:class:`Outcome` is what a finished (or failed, or cancelled) request leaves behind, and what the cache stores;
:func:`build_frame` lays the outcomes out as ``compare()``'s DataFrame, in :data:`COLUMNS` order.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.comparison.schedule import PromptItem, RequestSpec

Status = Literal["ok", "error", "cancelled"]

# The result's columns, in order (a DataFrame input's own columns come right after ``prompt``; extra request
# parameters passed as **params come last, one column each).
COLUMNS = (
    "prompt_name", "prompt", "model", "repeat", "status", "response", "reasoning", "finish_reason", "error",
    "error_type", "ttft_s", "latency_s", "tokens_per_s", "load_s", "server_ttft_s", "server_tokens_per_s",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "cold",
    "cached", "attempts", "started_at", "served_model", "format", "quantization", "arch", "context_length", "system",
    "temperature", "max_tokens", "seed",
)


@dataclass
class Outcome:
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
    # with tools (see tool_rows.py): calls asked for, the model's mistakes among them, model turns
    tool_calls: int | None = None
    tool_errors: int | None = None
    rounds: int | None = None
    # what the server measured itself (LM Studio 0.4's native route; /api/v0's stats), None when it did not say
    server_ttft_s: float | None = None
    server_tokens_per_s: float | None = None
    reasoning_tokens: int | None = None
    server_load_s: float | None = None  # the load the server reports for this answer (it was loaded for it)

    @classmethod
    def from_result(cls, result: ChatResult, *, started_at: str, attempts: int, cold: bool) -> Outcome:
        server = result.server_stats
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
            cold=cold or (server is not None and server.model_load_time is not None),
            server_ttft_s=server.time_to_first_token if server else None,
            server_tokens_per_s=server.tokens_per_second if server else None,
            reasoning_tokens=(server.reasoning_tokens if server and server.reasoning_tokens is not None
                              else result.usage.reasoning_tokens if result.usage else None),
            server_load_s=server.model_load_time if server else None,
        )

    @classmethod
    def from_error(
        cls, err: BaseException, *, started_at: str | None, attempts: int, cold: bool, message: str | None = None
    ) -> Outcome:
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
    def answered(
        cls, result: ChatResult, *, model: str, context_length: int | None, started_at: str, attempts: int,
        cold: bool,
    ) -> Outcome:
        """A finished answer's row. One with no text, no thinking and no tool call is an error row ("EmptyAnswer"):
        LM Studio (and llama.cpp) end some context overflows with a well-formed, empty stream.
        ``context_length``: the model's loaded context, when known."""
        out = cls.from_result(result, started_at=started_at, attempts=attempts, cold=cold)
        if result.content or result.reasoning or result.tool_calls:
            return out
        out.status, out.error_type = "error", "EmptyAnswer"
        size = f" (the prompt is {result.prompt_tokens} tokens)" if result.prompt_tokens else ""
        loaded = f"its loaded context of {context_length} tokens" if context_length else "its context length"
        above = f", N above {context_length}" if context_length else ""
        out.error = (
            f"{model} sent an empty answer: the prompt{size} may not fit {loaded}. Shorten the prompt or the system "
            f"prompt, or reload the model with a larger context (lms load {model} --context-length N{above})."
        )
        return out

    @classmethod
    def cancelled(
        cls, partial: ChatResult | None, *, started_at: str | None, attempts: int, cold: bool
    ) -> Outcome:
        out = cls(status="cancelled", started_at=started_at, attempts=attempts, cold=cold, error_type="Cancelled")
        if partial is not None and (partial.content or partial.reasoning):
            out.response, out.reasoning = partial.content, partial.reasoning
            out.error = f"cancelled mid-answer (interrupted after {len(partial.content)} characters)"
        else:
            out.error = "cancelled (interrupted before it finished)" if started_at else "cancelled (not run)"
        return out

    def record(self) -> dict[str, Any]:
        # every field is a plain value: a shallow copy (``asdict`` deep-copies, the most of a cached row's cost)
        data = dict(self.__dict__)
        data.pop("cached")
        return data

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Outcome:
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        # a stored answer is never cold: nothing was loaded for it (its record keeps the run that made it)
        return cls(**{**known, "cached": True, "cold": False, "server_load_s": None})


def build_frame(
    specs: Sequence[RequestSpec],
    outcomes: Sequence[Outcome | None],
    *,
    items: Sequence[PromptItem],
    input_columns: Sequence[str],
    infos: Mapping[str, ModelInfo],
    system: str | None,
    params: Mapping[str, Any],
    extra_params: Mapping[str, Any],
) -> pd.DataFrame:
    """The tidy DataFrame: one row per (prompt, model, repeat), in that order; a missing outcome is "not run"."""
    settled = [
        o if o is not None else Outcome.cancelled(None, started_at=None, attempts=0, cold=False) for o in outcomes
    ]
    load = _load_seconds(specs, settled)
    rows = []
    for spec, outcome in zip(specs, settled, strict=True):
        info = infos.get(spec.model)
        item = items[spec.prompt_index]
        data = outcome.record()
        data["cached"] = outcome.cached
        server_load = data.pop("server_load_s", None)
        row: dict[str, Any] = {"prompt_name": spec.prompt_name, "prompt": spec.prompt}
        row.update(item.columns or {})
        row.update({"model": spec.model, "repeat": spec.repeat})
        row.update(data)
        row.update(
            {
                # the server's own load time when it reported one, else the client's estimate
                "load_s": server_load if server_load is not None else load.get(spec.index),
                "format": info.format if info else None,
                "quantization": info.quantization if info else None,
                "arch": info.arch if info else None,
                "context_length": info.context_length if info else None,
                "system": system,
            }
        )
        row.update(params)
        rows.append(row)
    extra = [k for k in extra_params if k not in COLUMNS]
    columns = ["prompt_name", "prompt", *input_columns, *COLUMNS[2:], *extra]
    df = pd.DataFrame(rows, columns=columns)
    return _typed(df)


def _load_seconds(specs: Sequence[RequestSpec], outcomes: Sequence[Outcome]) -> dict[int, float]:
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
    for column in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "attempts", "context_length",
                   "max_tokens", "seed"):
        if column in df:
            df[column] = df[column].astype("Int64")
    for column in ("ttft_s", "latency_s", "tokens_per_s", "load_s", "server_ttft_s", "server_tokens_per_s",
                   "temperature"):
        if column in df:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True, format="ISO8601")
    for column in ("cold", "cached"):
        df[column] = df[column].astype(bool)
    for column in ("error", "error_type", "finish_reason"):
        # "None when fine": keep Python None rather than a missing-string marker
        df[column] = df[column].astype(object).where(df[column].notna(), None)
    return df
