"""What ``act()`` returns and ``stream_act()`` streams: every tool call as a record, the rounds, the final answer.

Plain data (stdlib only). A :class:`ToolCallRecord` is one call the model asked for, whatever became of it: run
(``output``), refused or failed (``error``, with ``failure`` saying why). :class:`ActResult` holds every round's
answer and every call in order; :class:`ActPart` is one piece of a streamed act (text, thinking, a call starting,
a call's result).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.types import ChatResult

# why a call has an error: the model named no such tool, its arguments did not parse or fit the schema, the
# function raised, on_call refused it, or a Stop came before it ran
Failure = Literal["unknown_tool", "invalid_arguments", "exception", "refused", "stopped"]
MODEL_FAILURES: frozenset[str] = frozenset({"unknown_tool", "invalid_arguments"})  # the model's mistakes

ActPartKind = Literal["content", "reasoning", "tool_call", "tool_result"]


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call the model asked for, in the order it asked.

    ``arguments``: the parsed dict, or the raw text when it did not parse. ``output``: what the function returned,
    as the text sent to the model (None when it did not run or failed). ``error``: the error text the model was sent
    instead (None when it ran). ``round``: the model turn (1-based) that asked; ``duration``: seconds the function
    ran (0 when it did not). ``id``: the server's call id.
    """

    name: str
    arguments: dict[str, Any] | str
    output: str | None = None
    error: str | None = None
    round: int = 1
    duration: float = 0.0
    id: str | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        """The function ran and returned."""
        return self.error is None and self.output is not None

    @property
    def invalid(self) -> bool:
        """The model's own mistake: an unknown tool name, or arguments that did not parse or fit the schema."""
        return self.failure in MODEL_FAILURES

    @property
    def refused(self) -> bool:
        return self.failure == "refused"

    def message(self) -> dict[str, Any]:
        """The ``tool`` message that tells the model this call's result."""
        content = self.output if self.error is None else f"Error: {self.error}"
        return {"role": "tool", "tool_call_id": self.id or "", "name": self.name, "content": content or ""}


class ActPart(NamedTuple):
    """One piece of a streamed act. ``content`` / ``reasoning``: ``text`` as it arrives. ``tool_call``: a call is
    about to run (``call`` has its name and arguments, no result yet). ``tool_result``: it ran, failed or was
    refused (``call`` is the finished record; ``text`` its output or error)."""

    kind: ActPartKind
    text: str
    call: ToolCallRecord | None = None


@dataclass(frozen=True)
class ActResult:
    """The end of an act: the final answer and everything on the way.

    ``result``: the last round's :class:`ChatResult` (the answer); ``content``: its text; ``rounds``: how many model
    turns were made; ``calls``: every tool call in order; ``round_results``: every round's answer; ``messages``: the
    whole conversation (yours, the model's tool requests, the tool results, the answer) to continue from;
    ``stopped``: a Stop ended it early.
    """

    result: ChatResult
    rounds: int
    calls: tuple[ToolCallRecord, ...] = ()
    round_results: tuple[ChatResult, ...] = ()
    messages: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    stopped: bool = False

    @property
    def content(self) -> str:
        return self.result.content

    @property
    def reasoning(self) -> str:
        return self.result.reasoning

    @property
    def tool_errors(self) -> int:
        """Calls that were the model's mistake (an unknown name, arguments that did not parse or fit)."""
        return sum(1 for c in self.calls if c.invalid)

    def __str__(self) -> str:
        return self.content


class ToolRoundsExceededError(LMStudioError):
    """The model still asked for tools after ``max_rounds`` turns; the loop stopped there.

    ``act_result`` keeps every round and call so far (``partial`` is the last round's answer).
    """

    max_rounds: int
    act_result: ActResult

    def __init__(self, max_rounds: int, act_result: ActResult) -> None:
        self.max_rounds = max_rounds
        self.act_result = act_result
        names = Counter(c.name for c in act_result.calls)
        asked = ", ".join(f"{n} ×{k}" for n, k in names.most_common(4))
        failed = sum(1 for c in act_result.calls if c.error is not None)
        super().__init__(
            f"The model still asked for tools after max_rounds={max_rounds} turns ({len(act_result.calls)} calls: "
            f"{asked}; {failed} failed), so the loop stopped. Every round and call is kept in err.act_result; pass "
            "max_rounds=... to allow more turns, or read the calls' errors to see why it keeps asking.",
            partial=act_result.result,
        )


class ActInterrupted(KeyboardInterrupt):
    """Ctrl-C while a tool ran (on the sync client): the running call was stopped — an ``async def`` one cancelled
    at its next ``await``, a ``run_in_thread`` one abandoned in its thread —, the round's other calls did not run,
    and the act ended; or Ctrl-C while ``act()`` waited for the model (the round asked is not kept). A
    ``KeyboardInterrupt``, so the cell ends; ``act_result`` keeps every finished round and call (``stopped``), and
    ``messages`` to continue from.
    """

    act_result: ActResult

    def __init__(self, act_result: ActResult) -> None:
        self.act_result = act_result
        running = next((c.name for c in reversed(act_result.calls) if c.failure == "stopped" and c.duration), None)
        finished = sum(1 for c in act_result.calls if c.failure != "stopped")
        rounds = f"{act_result.rounds} round{'' if act_result.rounds == 1 else 's'}"
        calls = f"{finished} finished call{'' if finished == 1 else 's'}"
        super().__init__(
            f"act() stopped by Ctrl-C{f' while {running} ran' if running else ''}: {rounds} and {calls} are kept in "
            "err.act_result (its messages continue the conversation)."
        )
