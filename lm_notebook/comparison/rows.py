"""A comparison's rows: each request's outcome, and the tidy DataFrame they make (one row per answer).

:class:`Outcome` is what a finished (or failed, or cancelled) request leaves behind, and what the cache stores;
:func:`build_frame` lays the outcomes out as ``compare()``'s DataFrame, in :data:`COLUMNS` order.
"""

from __future__ import annotations

import itertools
import operator
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
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
        # a stored answer is never cold: nothing was loaded for it (its record keeps the run that made it)
        if record.keys() == _RECORD_FIELDS:
            # a record as record() wrote it: every field there, plain values — set at once, not through __init__
            # (a cached re-run makes 1,000 of these, and __init__ with 25 keywords was most of their cost)
            out = cls.__new__(cls)
            out.__dict__.update(record)
            out.cached, out.cold, out.server_load_s = True, False, None
            return out
        known = {k: v for k, v in record.items() if k in _FIELDS}
        return cls(**{**known, "cached": True, "cold": False, "server_load_s": None})

    @classmethod
    def from_stored(cls, values: Sequence[Any]) -> Outcome:
        """A cached row from its record's values in :data:`~lm_notebook.comparison.cache.ANSWER_FIELDS` order, as
        the cache's columns hold them (anything after them, the key, is left out): what :meth:`from_record` makes of
        that record, without the record."""
        out = cls.__new__(cls)
        fields = dict(zip(_STORED_FIELDS, values, strict=False))  # what follows them left out
        fields["cached"], fields["cold"], fields["server_load_s"] = True, False, None
        out.__dict__ = fields
        return out


_FIELDS = frozenset(Outcome.__dataclass_fields__)
_RECORD_FIELDS = _FIELDS - {"cached"}  # what record() stores
_STORED_FIELDS = tuple(f for f in Outcome.__dataclass_fields__ if f != "cached")  # record()'s, in its order
_ROW_FIELDS = tuple(f for f in Outcome.__dataclass_fields__ if f != "server_load_s")  # the row's own (load_s is made)
_spec_values = operator.attrgetter("prompt_name", "prompt", "prompt_index", "model", "repeat")
_row_values = operator.itemgetter(*_ROW_FIELDS, "server_load_s")  # and what load_s is made of
_MISSING = float("nan")  # a value a row does not have (pandas' own fill for a missing key)


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
    # built column by column (a cached re-run's 1,000 rows: a dict per row was most of the frame's cost); where two
    # sources name one column, the later wins, as when each row's dict was updated in this order
    names, texts, prompt_indexes, models, repeats = zip(*map(_spec_values, specs), strict=True) if specs else [()] * 5
    data: dict[str, list[Any]] = {"prompt_name": list(names), "prompt": list(texts)}
    if input_columns:
        given = [items[i].columns or {} for i in prompt_indexes]
        for column in input_columns:
            data[column] = [row.get(column, _MISSING) for row in given]
    data["model"] = list(models)
    data["repeat"] = list(repeats)
    # one tuple per field (none at all for no rows)
    by_field = list(zip(*map(_row_values, (o.__dict__ for o in settled)), strict=True)) or [()] * (len(_ROW_FIELDS) + 1)
    *own, server_load = by_field
    for name, values in zip(_ROW_FIELDS, own, strict=True):
        data[name] = list(values)
    # the server's own load time when it reported one, else the client's estimate
    data["load_s"] = list(server_load) if not load else [
        reported if reported is not None else load.get(spec.index)
        for spec, reported in zip(specs, server_load, strict=True)
    ]
    listed = {model: infos.get(model) for model in set(models)}
    for name in ("format", "quantization", "arch", "context_length"):
        of_model = {model: getattr(info, name) if info else None for model, info in listed.items()}
        # one model (a list of one value) or several
        data[name] = [*of_model.values()] * len(specs) if len(of_model) == 1 else [of_model[m] for m in models]
    data["system"] = [system] * len(specs)
    for name, value in params.items():
        data[name] = [value] * len(specs)
    extra = [k for k in extra_params if k not in COLUMNS]
    columns = ["prompt_name", "prompt", *input_columns, *COLUMNS[2:], *extra]
    typed = {c: _column(c, data.get(c, [_MISSING] * len(specs))) for c in columns}
    frame: pd.DataFrame = pd.DataFrame(typed, columns=columns)
    return frame


def _load_seconds(specs: Sequence[RequestSpec], outcomes: Sequence[Outcome]) -> dict[int, float]:
    """For each cold row: its wait for the model to load (its TTFT less the model's usual TTFT)."""
    if not any(o.cold for o in outcomes):  # a cached re-run's rows never are
        return {}
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


_INTS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "attempts", "context_length", "max_tokens", "seed")
_FLOATS = ("ttft_s", "latency_s", "tokens_per_s", "load_s", "server_ttft_s", "server_tokens_per_s", "temperature")
_FLAGS = ("cold", "cached")
_NONE_WHEN_FINE = ("error", "error_type", "finish_reason")  # Python None, not a missing-string marker


def _column(name: str, values: list[Any]) -> Any:
    """One column of the frame, of its type (made from the values at once: converting a built frame's columns one by
    one cost more than building it)."""
    if name in _INTS:
        return _int_column(values)
    if name in _FLOATS:
        try:
            return np.array(values, dtype="float64")  # None is NaN
        except (TypeError, ValueError):  # not numbers: what is not one is NaN
            return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("float64").to_numpy()
    if name == "started_at":
        # cache=False: every start is its own; a cache of the unique values would only be built and thrown away
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601", cache=False).array
    if name in _FLAGS:
        if set(map(type, values)) <= {bool}:
            return np.array(values, dtype=bool)
        return np.array([bool(v) for v in values], dtype=bool)
    if name in _NONE_WHEN_FINE:
        column = np.array(values, dtype=object)
        column[pd.isna(column)] = None
        return pd.Series(column, dtype=object)  # kept as objects: a bare array of text would be inferred as strings
    return values if values else np.array([], dtype=object)  # pandas infers the rest (text, names, labels)


def _int_column(values: list[Any]) -> Any:
    """``pd.array(values, dtype="Int64")``, made from its two arrays when every value is an int or None (pandas'
    own conversion checks each value in Python: most of a cached re-run's integer columns' cost)."""
    kinds = set(map(type, values))
    if not kinds <= _INT_OR_NONE:
        return pd.array(values, dtype="Int64")
    size = len(values)
    try:
        if type(None) not in kinds:
            return pd.arrays.IntegerArray(np.array(values, dtype=np.int64), np.zeros(size, dtype=bool))
        if kinds == {type(None)}:
            return pd.arrays.IntegerArray(np.zeros(size, dtype=np.int64), np.ones(size, dtype=bool))
        missing = np.fromiter(map(operator.is_, values, itertools.repeat(None)), dtype=bool, count=size)
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
        return pd.arrays.IntegerArray(data, missing)
    except OverflowError:  # beyond 64 bits: pandas says so
        return pd.array(values, dtype="Int64")


_INT_OR_NONE = {int, type(None)}
