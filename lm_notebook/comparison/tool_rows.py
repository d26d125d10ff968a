"""``compare(..., tools=[...])``: each request is an act, and its row counts the tool calls.

The runner reads an act as it reads a chat stream (:class:`ActRowStream`); each row gains ``tool_calls`` (how many
the model asked for), ``tool_errors`` (its mistakes: an unknown tool, arguments that did not parse or fit the
schema) and ``rounds`` (model turns); ``summary`` turns them into each model's tool-call success rate — which model
uses tools reliably.
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

    async def aclose(self) -> None:
        await self._stream.aclose()


def open_row(client: AsyncLMStudioClient, messages: list[dict[str, Any]], model: str, send: dict[str, Any],
             tools: Sequence[Tool]) -> AsyncChatStream | ActRowStream:
    """The request of one row: a chat stream, or an act when there are tools."""
    if tools:
        return ActRowStream(client.stream_act(messages, tools, model=model, **send))
    return client.stream_chat(messages, model=model, **send)


def counted(outcome: Outcome, stream: object, err: BaseException | None = None) -> Outcome:
    """The outcome with its act's tool counts (from the act, or from the rounds an exceeded act kept)."""
    act = err.act_result if isinstance(err, ToolRoundsExceededError) else getattr(stream, "act", None)
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
    """One model's tool calls, its mistakes, and the share of its calls that were valid (NaN: it made none)."""
    if "tool_calls" not in rows:
        return {}
    calls = int(rows["tool_calls"].fillna(0).sum())
    errors = int(rows["tool_errors"].fillna(0).sum())
    return {"tool_calls": calls, "tool_errors": errors,
            "tool_call_success_rate": (calls - errors) / calls if calls else float("nan")}
