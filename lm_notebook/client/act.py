"""``act``: the model calls your Python functions until it can answer — one flow, driven by both clients.

Each round sends the conversation with the tools' schemas; when the answer asks for tool calls, each call is
checked (a known tool? arguments that parse and fit its schema? ``on_call`` allows it?), the functions run (see
:mod:`~lm_notebook.client.tool_running`), and their results (or errors, as text) go back as ``tool`` messages for
the next round. An answer without tool calls ends the loop; so does a Stop. With ``schema=``, the rounds go without
it (an answer constrained to it could not ask for tools); the final answer must follow it: when the free answer
does not, it is asked again with the schema and ``tool_choice: "none"``, the tools' results in view. After
``max_rounds`` turns that still ask for tools, :class:`~lm_notebook.client.act_types.ToolRoundsExceededError` keeps
every round. Only the functions
the caller passed can run: the model's text is parsed as JSON, never imported or evaluated.

The same flow serves ``act()`` (each round unstreamed, a client operation) and ``stream_act()`` (each round a chat
stream whose parts are passed on live, see :mod:`~lm_notebook.client.act_stream`).

>>> def lookup(city: str) -> str:                               # doctest: +SKIP
...     '''Population of a city.'''
...     return {"Paris": "2.1 million"}.get(city, "unknown")
>>> r = client.act("How many people live in Paris?", [lookup])  # doctest: +SKIP
>>> r.content, r.rounds, r.calls[0].output                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from lm_notebook.client.act_types import (
    ActInterrupted,
    ActPart,
    ActResult,
    ToolCallRecord,
    ToolRoundsExceededError,
)
from lm_notebook.client.errors import AnswerFormatError, LMStudioRequestError
from lm_notebook.client.flows import Flow, Step, operation
from lm_notebook.client.payloads import Messages, as_messages
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.stream_base import StreamBase
from lm_notebook.client.tool_running import Outcome, PreparedCall, RunToolCalls
from lm_notebook.client.tools import (
    DEFAULT_MAX_OUTPUT_CHARS,
    Tool,
    ToolArgumentsError,
    ToolOutputError,
    as_toolset,
    capped_text,
    exception_text,
    output_text,
)
from lm_notebook.client.types import ChatResult, ToolCall

DEFAULT_MAX_ROUNDS = 8
OnCall = Callable[[ToolCallRecord], bool]
ToolLike = Tool | Callable[..., object]
ActStreamT = TypeVar("ActStreamT")
# a streamed act's flow, given its Stop flag and the list to keep the conversation in
ActFlowFactory = Callable[[threading.Event, list[dict[str, Any]]], Flow[ActResult]]


@dataclass(frozen=True, eq=False)
class Emit(Step):
    """Pass ``part`` to whoever reads a streamed act; the answer is None."""

    part: ActPart


@dataclass(frozen=True, eq=False)
class ReadRound(Step):
    """Read this round's chat ``stream`` to its end, passing its text and thinking on; the answer is its result."""

    stream: StreamBase[Any]


class ActSource(Protocol):
    """The client, as the act flow uses it."""

    def _chat(self, /, messages: Messages, *, model: str | None = None, **params: Any) -> Flow[ChatResult]: ...

    def stream_chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> StreamBase[Any]: ...


def _checked(tools: Iterable[ToolLike], max_rounds: int, on_call: OnCall | None, max_output_chars: int,
             params: Mapping[str, Any]) -> dict[str, Tool]:
    if not isinstance(max_rounds, int) or isinstance(max_rounds, bool) or max_rounds < 1:
        raise LMStudioRequestError(f"max_rounds must be a whole number of model turns, at least 1, not {max_rounds!r}.")
    if on_call is not None and not callable(on_call):
        raise LMStudioRequestError(f"on_call must be a function of the call returning True or False, not {on_call!r}.")
    if not isinstance(max_output_chars, int) or isinstance(max_output_chars, bool) or max_output_chars < 0:
        raise LMStudioRequestError(f"max_output_chars must be a number of characters ≥ 0 (0: no cap), not "
                                   f"{max_output_chars!r}.")
    clashing = sorted(set(params) & {"tools", "stream"})
    if clashing:
        raise LMStudioRequestError(f"act() sets {' and '.join(clashing)} itself: pass the functions as tools=[...].")
    return as_toolset(tools)


def _forces_a_call(choice: object) -> bool:
    """``tool_choice`` naming a function, or ``"required"``: the model must call a tool."""
    return choice == "required" or isinstance(choice, Mapping)


def _parsed_arguments(raw: str) -> tuple[dict[str, Any] | str, str | None]:
    """The call's arguments as a dict, or the raw text (when it is not a JSON object) for the record; and why
    they are not (None: they are)."""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except RecursionError:  # "[[[[…" a hundred thousand deep: the model's mistake, not the loop's end
        return raw, "they are not valid JSON (nested too deeply to read)"
    except ValueError as exc:
        return raw, f"they are not valid JSON ({exc})"
    return (value, None) if isinstance(value, dict) else (raw, "they are JSON but not an object")


def _prepared(call: ToolCall, toolset: Mapping[str, Tool], round_no: int,
              max_output_chars: int) -> tuple[ToolCallRecord, PreparedCall | None]:
    """The record of one asked-for call, and what to run; no run (the record says why) for the model's mistakes."""
    arguments, why = _parsed_arguments(call.arguments)
    record = ToolCallRecord(call.name, arguments, round=round_no, id=call.id)
    tool = toolset.get(call.name)
    if tool is None:
        known, invented = ", ".join(toolset), capped_text(call.name, max_output_chars)  # the model's name: any size
        return replace(record, failure="unknown_tool",
                       error=f"There is no tool named {invented!r}. The tools are: {known}. Call one of them."), None
    if isinstance(arguments, str):
        shown = arguments if len(arguments) <= 200 else arguments[:200] + "…"
        return replace(record, failure="invalid_arguments",
                       error=f"The arguments of {call.name} must be a JSON object; {why}: {shown}"), None
    try:
        args, kwargs = tool.bind(arguments)
    except ToolArgumentsError as exc:
        return replace(record, failure="invalid_arguments",
                       error=f"The arguments do not fit {call.name}'s schema: {exc}. Call it again with arguments "
                             "that fit."), None
    except Exception as exc:  # the validator gave up on what the model sent (nested too deeply to check)
        return replace(record, failure="invalid_arguments",
                       error=f"The arguments could not be checked against {call.name}'s schema "
                             f"({type(exc).__name__}: {exception_text(exc)[:200]}). Call it again with simpler "
                             "arguments."), None
    return record, PreparedCall(tool, args, kwargs)


def _finished(record: ToolCallRecord, outcome: Outcome, max_output_chars: int) -> ToolCallRecord:
    if outcome.interrupted:
        return replace(record, failure="stopped", duration=outcome.duration,
                       error="Not finished: stopped while it ran (the user stopped the loop).")
    if outcome.stopped:
        return replace(record, failure="stopped", error="Not run: the user stopped the loop.")
    if outcome.exception is not None:
        exc = outcome.exception
        return replace(record, failure="exception", duration=outcome.duration,
                       error=capped_text(f"{record.name} raised {type(exc).__name__}: {exception_text(exc)}",
                                         max_output_chars))
    try:
        output = output_text(outcome.value, max_output_chars)
    except ToolOutputError as exc:
        return replace(record, failure="exception", duration=outcome.duration,
                       error=capped_text(f"{record.name} {exc}", max_output_chars))
    return replace(record, output=output, duration=outcome.duration)


def act_flow(
    source: ActSource,
    messages: Messages,
    tools: Iterable[ToolLike],
    *,
    model: str | None,
    max_rounds: int,
    on_call: OnCall | None,
    max_output_chars: int,
    params: Mapping[str, Any],
    streaming: bool = False,
    stop: threading.Event | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Flow[ActResult]:
    """The loop, once: rounds of (ask the model → check the calls → run them → send the results back).
    ``history``: the list to keep the conversation in (a streamed act's, for what a Ctrl-C leaves): a valid one at
    every step — a round that asks for tools joins it with its calls' results."""
    toolset = _checked(tools, max_rounds, on_call, max_output_chars, params)
    conversation: list[dict[str, Any]] = [] if history is None else history
    conversation[:] = as_messages(messages)
    # a schema is for the final answer only: constrained to it, a round could not ask for tools
    # (compare sends its schema as the response_format itself)
    schema = None if params.get("schema") is None else AnswerSchema.of(params["schema"])
    request = {**{k: v for k, v in params.items() if k != "schema"}, "tools": [t.schema() for t in toolset.values()]}
    final_format = request.pop("response_format", None) if schema is None else None
    answers: list[ChatResult] = []
    records: list[ToolCallRecord] = []

    def ended(result: ChatResult, *, stopped: bool = False, sent: bool = False) -> ActResult:
        """The act's result; ``sent``: ``result`` (a round that asked for tools) is in the conversation already,
        followed by its calls' results — it is not added again."""
        messages = tuple(conversation) if sent else (*conversation, result.as_message())
        return ActResult(result, len(answers), tuple(records), tuple(answers), messages,
                         stopped=stopped or result.stopped)

    def ask(**extra: Any) -> Flow[ChatResult]:
        if streaming:
            answer: ChatResult = yield ReadRound(source.stream_chat(conversation, model=model, **request, **extra))
        else:
            try:
                answer = yield from source._chat(conversation, model=model, **request, **extra)
            except KeyboardInterrupt:  # Ctrl-C while the model is asked: the rounds and calls so far are kept
                last = answers[-1] if answers else ChatResult("", stopped=True)
                raise ActInterrupted(ended(last, stopped=True, sent=True)) from None
        answers.append(answer)
        return answer

    for round_no in range(1, max_rounds + 1):
        if round_no == 2 and _forces_a_call(request.get("tool_choice")):
            # a forced call is the first round's: forced every round, the model could never answer
            request["tool_choice"] = "auto"
        result = yield from ask()
        if result.stopped or not result.tool_calls:
            if (schema is None and final_format is None) or result.stopped:
                return ended(result)
            if schema is not None:
                try:
                    return ended(schema.parsed(result))  # the free answer already follows the schema
                except AnswerFormatError:
                    pass
            # the answer again, constrained to the schema: no more tool calls, the tools' results still in view
            request["tool_choice"] = "none"
            constrained = {"schema": schema} if schema is not None else {"response_format": final_format}
            return ended((yield from ask(**constrained)))
        asked: list[tuple[ToolCallRecord, PreparedCall | None]] = []
        for call in result.tool_calls:
            record, prepared = _prepared(call, toolset, round_no, max_output_chars)
            if streaming:
                yield Emit(ActPart("tool_call", record.name, record))
            if prepared is not None and on_call is not None and not on_call(record):
                record, prepared = replace(record, failure="refused",
                                           error="The user refused this call; do not ask for it again."), None
            asked.append((record, prepared))
        runnable = tuple(p for _, p in asked if p is not None)
        outcomes: list[Outcome] = (yield RunToolCalls(runnable, stop)) if runnable else []
        results = iter(outcomes)
        finished = [record if prepared is None else _finished(record, next(results), max_output_chars)
                    for record, prepared in asked]
        records.extend(finished)
        conversation.extend([result.as_message(), *(done.message() for done in finished)])
        for done in finished if streaming else ():
            yield Emit(ActPart("tool_result", (done.output if done.error is None else done.error) or "", done))
        if any(o.ctrl_c for o in outcomes):  # the calls' records made: the act ends, the cell with it
            raise ActInterrupted(ended(result, stopped=True, sent=True))
        if stop is not None and stop.is_set():
            return ended(result, stopped=True, sent=True)
    raise ToolRoundsExceededError(max_rounds, ended(answers[-1], sent=True))


class ActOperations(Generic[ActStreamT]):
    """``act`` and ``stream_act``, mixed into both clients (the twins set ``_act_stream_type``)."""

    _act_stream_type: Callable[[Any, ActFlowFactory], ActStreamT]

    def _act(
        self,
        /,
        messages: Messages,
        tools: Iterable[ToolLike],
        *,
        model: str | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_call: OnCall | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        **params: Any,
    ) -> Flow[ActResult]:
        """Let the model call ``tools`` (plain functions, sync or async, or :class:`~lm_notebook.client.tools.Tool`)
        until it answers; an :class:`~lm_notebook.client.act_types.ActResult` with every round and call.

        ``max_rounds``: model turns at most; ``on_call(call) -> bool``: False refuses a call (the model is told);
        ``max_output_chars``: the cap on each output or error text sent back (0: none); ``params``: as for ``chat``. A
        ``tool_choice`` that forces a call (a function named, or ``"required"``) holds for the first round only, then
        the model may answer (``"auto"``): small models often call only when forced.
        """
        source: ActSource = self  # type: ignore[assignment]  # mixed into a client
        return act_flow(source, messages, tools, model=model, max_rounds=max_rounds, on_call=on_call,
                        max_output_chars=max_output_chars, params=params)

    act = operation(_act)

    def stream_act(
        self,
        messages: Messages,
        tools: Iterable[ToolLike],
        *,
        model: str | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_call: OnCall | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        **params: Any,
    ) -> ActStreamT:
        """``act`` as a stream of :class:`~lm_notebook.client.act_types.ActPart`: text and thinking as they arrive,
        each tool call as it starts (``tool_call``) and ends (``tool_result``); then ``.result()``."""
        source: ActSource = self  # type: ignore[assignment]  # mixed into a client
        # refused here, not at the first read; the functions become Tools once
        toolset = list(_checked(tools, max_rounds, on_call, max_output_chars, params).values())

        def flow(stop: threading.Event, history: list[dict[str, Any]]) -> Flow[ActResult]:
            return act_flow(source, messages, toolset, model=model, max_rounds=max_rounds, on_call=on_call,
                            max_output_chars=max_output_chars, params=params, streaming=True, stop=stop,
                            history=history)

        return self._act_stream_type(self, flow)
