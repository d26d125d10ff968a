"""``compare(..., tools=[...])``: each request is an act, and its row counts the tool calls.

The runner reads an act as it reads a chat stream (:class:`ActRowStream`); each row gains ``tool_calls`` (how many
the model asked for), ``tool_errors`` (its mistakes: an unknown tool, arguments that did not parse or fit the
schema) and ``rounds`` (model turns); ``summary`` turns them into each model's tool-call success rate
(:data:`SUCCESS_RATE`) and ranks the models by it — which model uses tools reliably.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pandas as pd

from lm_notebook.client.act_stream import AsyncActStream
from lm_notebook.client.act_types import ActPart, ActResult, ToolRoundsExceededError
from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.stream import AsyncChatStream
from lm_notebook.client.tools import Tool, as_toolset
from lm_notebook.client.types import ChatResult
from lm_notebook.comparison.rows import Outcome

TOOL_COLUMNS = ("tool_calls", "tool_errors", "rounds")


def checked_tools(tools: Sequence[Tool | Callable[..., object]] | None) -> list[Tool]:
    """The tools as :class:`Tool` objects, refused before anything is sent when they are not usable."""
    return [] if tools is None else list(as_toolset(tools).values())


def tools_key(tools: Sequence[Tool]) -> dict[str, Any]:
    """What the cache key adds for the tools: their schemas (an answer with other tools is another answer)."""
    return {"tools": [t.schema() for t in tools]} if tools else {}


class ActRowStream:
    """An act, read by the runner as it reads a chat stream; ``act`` is its result once read."""

    def __init__(self, stream: AsyncActStream) -> None:
        self._stream = stream
        self.act: ActResult | None = None

    async def iter_parts(self) -> AsyncIterator[ActPart]:
        async for part in self._stream:
            yield part

    async def result(self) -> ChatResult:
        self.act = await self._stream.result()
        return self.act.result

    def partial(self) -> ChatResult:
        return self._stream.partial().result

    def so_far(self) -> ActResult:
        """The act up to now: its finished rounds and calls (the whole act once read)."""
        return self.act if self.act is not None else self._stream.partial()

    async def aclose(self) -> None:
        await self._stream.aclose()


def open_row(client: AsyncLMStudioClient, messages: list[dict[str, Any]], model: str, send: dict[str, Any],
             tools: Sequence[Tool]) -> AsyncChatStream | ActRowStream:
    """The request of one row: a chat stream, or an act when there are tools."""
    if tools:
        return ActRowStream(client.stream_act(messages, tools, model=model, **send))
    return client.stream_chat(messages, model=model, **send)


def counted(outcome: Outcome, stream: object, err: BaseException | None = None) -> Outcome:
    """The outcome with its act's tool counts: from the act, from the rounds an exceeded act kept, or, when the act
    failed mid-loop (a server error, a cut stream, an overflow), from the calls that finished before it failed. An
    act that failed before the model made any call keeps no counts: the failure is the server's, not the model's."""
    act = err.act_result if isinstance(err, ToolRoundsExceededError) else getattr(stream, "act", None)
    if act is None and err is not None and isinstance(stream, ActRowStream):
        act = stream.so_far() if stream.so_far().calls else None
    if isinstance(act, ActResult):
        outcome.tool_calls, outcome.tool_errors, outcome.rounds = len(act.calls), act.tool_errors, act.rounds
    return outcome


def with_tool_columns(df: pd.DataFrame, outcomes: Sequence[Outcome | None]) -> pd.DataFrame:
    """The rows with ``tool_calls``, ``tool_errors`` and ``rounds``, after ``finish_reason``."""
    at = list(df.columns).index("finish_reason") + 1 if "finish_reason" in df else len(df.columns)
    for offset, column in enumerate(TOOL_COLUMNS):
        values = [getattr(o, column, None) if o is not None else None for o in outcomes]
        df.insert(at + offset, column, pd.Series(values, index=df.index, dtype="Int64"))
    return df


def tool_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """One model's tool use: its calls, its mistakes, the rows that hit ``max_rounds`` without an answer, and its
    success rate (see :data:`SUCCESS_RATE`; NaN: it made no calls)."""
    if "tool_calls" not in rows:
        return {}
    acted = rows[rows["tool_calls"].notna()]  # the rows whose act ran: answered, or an error row (see counted)
    calls = int(acted["tool_calls"].sum())
    errors = int(acted["tool_errors"].fillna(0).sum())
    exceeded = int((acted["error_type"] == ToolRoundsExceededError.__name__).sum()) if "error_type" in acted else 0
    if "status" in acted:  # an error row (max_rounds, an empty answer, a failure mid-loop) did not answer
        answered = int((acted["status"] == "ok").sum())
    else:
        answered = len(acted) - int(acted["error_type"].notna().sum()) if "error_type" in acted else len(acted)
    finished = answered / len(acted) if len(acted) else float("nan")
    return {"tool_calls": calls, "tool_errors": errors, "tool_rounds_exceeded": exceeded,
            "tool_call_success_rate": (calls - errors) / calls * finished if calls else float("nan")}


SUCCESS_RATE = (
    "tool_call_success_rate = (valid calls / all calls) × (rows that answered / rows whose act ran): a valid call is "
    "one to a tool that exists with arguments that parse and fit its schema (a function that raises or a refused "
    "call is not the model's mistake); a row whose act ran but ended as an error (it hit max_rounds, its final "
    "answer was empty, or the request failed after the model's first call — whose finished calls are counted) did "
    "not answer; a row that failed before any call is left out (the server's failure). A model that calls valid "
    "tools in a loop and never answers scores 0. It measures the calls the model made, not whether it called a tool "
    "where one was needed: a model that calls in 1 row of 10 and answers all 10 scores 1.0 (compare the tool_calls "
    "column with your prompts); NaN: no calls at all."
)
RANKED_BY = "tool_call_success_rate (best first), then tokens_per_s_median (fastest first)"


def ranked_by_tools(stats: pd.DataFrame) -> pd.DataFrame:
    """``summary``'s frame, best tool user first (ties: the faster), with ``tool_rank`` (1: best; <NA>: no calls)
    first; ``stats.attrs["ranked_by"]`` says so. As it is when the comparison had no tools."""
    if "tool_call_success_rate" not in stats:
        return stats
    speed = stats["tokens_per_s_median"] if "tokens_per_s_median" in stats else pd.Series(0.0, index=stats.index)
    order = pd.DataFrame({"rate": stats["tool_call_success_rate"], "speed": speed})
    ranked: pd.DataFrame = stats.loc[order.sort_values(["rate", "speed"], ascending=False, na_position="last",
                                                       kind="stable").index]
    rated = ranked["tool_call_success_rate"].notna().to_numpy()
    ranks = pd.Series([i + 1 if ok else None for i, ok in enumerate(rated)], index=ranked.index, dtype="Int64")
    ranked.insert(0, "tool_rank", ranks)
    ranked.attrs["ranked_by"] = RANKED_BY
    return ranked
