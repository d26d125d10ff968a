"""A streamed act as an object: iterate it for :class:`~lm_notebook.client.act_types.ActPart` values, then
``.result()``.

:class:`ActStream` (``LMStudioClient.stream_act``) and :class:`AsyncActStream` (the async client's) drive the one
act flow (:mod:`lm_notebook.client.act`): each round's chat stream is read here, its text and thinking passed on as
they arrive; the tool calls run here (in order; see :mod:`~lm_notebook.client.tool_running`). ``close()`` — from any
thread, a Stop button — stops the loop: the round being streamed ends at once (its partial answer kept), a round's
remaining calls do not run, and no further round is asked for. A running ``async def`` tool is cancelled at its next
``await`` (``close()`` and ``aclose()`` alike); one with ``run_in_thread=True`` is abandoned in its thread; another
plain function already running finishes first (Python cannot stop a function from outside; Ctrl-C in the kernel
interrupts it). A Ctrl-C during a call ends the act with :class:`~lm_notebook.client.act_types.ActInterrupted` (on
the async client the cancellation goes on); ``result()`` is then that act, calls and messages kept. A Ctrl-C while a
round streams keeps, in ``result()``, the conversation so far: the prompt, the finished rounds and their calls'
results, and the round's partial answer (``result.stopped``).

>>> with client.stream_act("Weather in Paris?", [get_weather]) as stream:   # doctest: +SKIP
...     for part in stream:
...         if part.kind == "tool_result":
...             print(part.call.name, "→", part.text)
...         elif part.kind == "content":
...             print(part.text, end="")
>>> stream.result().calls                                                  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

from lm_notebook.client.act import ActFlowFactory, Emit, ReadRound
from lm_notebook.client.act_types import ActInterrupted, ActPart, ActResult, ToolCallRecord
from lm_notebook.client.flows import FlowRun
from lm_notebook.client.stream import AsyncChatStream, ChatStream
from lm_notebook.client.stream_base import StreamBase
from lm_notebook.client.tool_running import Cancellers, Outcome, RunToolCalls, arun_tool_calls, run_tool_calls
from lm_notebook.client.types import ChatResult

FlowFactory = ActFlowFactory
_TEXT_KINDS = ("content", "reasoning")


class _ActStreamBase:
    """What both twins share: the Stop flag, the rounds and calls so far, the partial result."""

    def __init__(self, client: object, flow: FlowFactory) -> None:
        self._client = client
        self._flow = flow
        self._stop = threading.Event()
        self._current: StreamBase[Any] | None = None
        self._answers: list[ChatResult] = []
        self._calls: list[ToolCallRecord] = []
        self._result: ActResult | None = None
        self._closed = False
        self._messages: list[dict[str, Any]] = []  # the flow's conversation: valid at every step

    @property
    def calls(self) -> tuple[ToolCallRecord, ...]:
        """The calls finished so far, in order."""
        return tuple(self._calls)

    @property
    def stopped(self) -> bool:
        """True once the loop was stopped (``close()``, an abandoned iteration) before it answered."""
        return self._stop.is_set() and (self._result is None or self._result.stopped)

    def partial(self) -> ActResult:
        """What there is so far: the finished result, or the rounds, calls and messages up to now (``stopped``); a
        round cut while it streamed (a Stop, a Ctrl-C) ends them with its partial answer (``result.stopped``; in
        ``messages`` its text, not the calls it had begun to ask for: they never ran)."""
        if self._result is not None:
            return self._result
        answers = list(self._answers)
        messages: list[dict[str, Any]] = list(self._messages)
        if self._in_round and self._current is not None:
            cut = self._current.partial()
            answers.append(cut)
            messages.append({"role": "assistant", "content": cut.content})
        last = answers[-1] if answers else ChatResult("", stopped=True)
        return ActResult(last, len(answers), tuple(self._calls), tuple(answers), tuple(messages), stopped=True)

    _in_round = False

    def _interrupted(self, interrupted: ActInterrupted) -> None:
        self._stop.set()
        self._result = interrupted.act_result

    def _note(self, part: ActPart) -> None:
        if part.kind == "tool_result" and part.call is not None:
            self._calls.append(part.call)

    def _round_started(self, stream: StreamBase[Any]) -> None:
        self._current = stream
        self._in_round = True

    def _round_ended(self, result: ChatResult) -> None:
        self._answers.append(result)
        self._in_round = False


class ActStream(_ActStreamBase):
    """A streamed act (sync): iterate for parts, ``result()`` for the :class:`ActResult`; a context manager."""

    def __init__(self, client: object, flow: FlowFactory) -> None:
        super().__init__(client, flow)
        self._gen: Generator[ActPart, None, None] | None = None
        self._reader: int | None = None
        self._running_calls: Cancellers = set()  # the async def call running: cancelled by a Stop

    def __enter__(self) -> ActStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[ActPart]:
        if self._closed:
            return iter(())
        if self._gen is None:
            self._gen = self._run()
        return self._consumer(self._gen)

    def _consumer(self, parts: Iterator[ActPart]) -> Generator[ActPart, None, None]:
        """A loop that leaves early (``break``, an exception in its body) stops the act at once."""
        try:
            yield from parts
        except GeneratorExit:
            self.close()
            raise

    def _run(self) -> Generator[ActPart, None, None]:
        self._reader = threading.get_ident()
        run = FlowRun(self._flow(self._stop, self._messages))
        try:
            while run.step is not None:
                with run:
                    step = run.step
                    if isinstance(step, Emit):
                        self._note(step.part)
                        yield step.part
                    elif isinstance(step, ReadRound) and isinstance(step.stream, ChatStream):
                        stream = step.stream
                        self._round_started(stream)
                        if self._stop.is_set():
                            stream.close()  # never sent: a Stop came between the rounds
                        else:
                            with stream:
                                for part in stream.iter_parts():
                                    if part.kind == "content" or part.kind == "reasoning":
                                        yield ActPart(part.kind, part.text)
                        run.reply = stream.result()
                        self._round_ended(run.reply)
                    elif isinstance(step, RunToolCalls):
                        run.reply = run_tool_calls(step, self._running_calls)
                    else:
                        raise TypeError(f"ActStream cannot perform {step!r}")
            self._result = run.value
        except ActInterrupted as interrupted:  # Ctrl-C during a call: the act as it ended, for result()
            self._interrupted(interrupted)
            raise
        finally:
            self._closed = True

    def result(self) -> ActResult:
        """The finished result (reads the rest first); after a Stop, what there was (``stopped``)."""
        if not self._closed:
            for _ in self:
                pass
        return self.partial()

    def text(self) -> str:
        return self.result().content

    def close(self) -> None:
        """Stop the loop; what arrived stays (``result()``). Safe from any thread."""
        self._stop.set()
        for cancel in list(self._running_calls):  # an async def tool ends at its next await
            cancel()
        current = self._current
        if current is not None and isinstance(current, ChatStream):
            current.close()
        if self._reader is not None and self._reader != threading.get_ident():
            return  # the reading thread ends the loop itself
        if self._gen is not None:
            try:
                self._gen.close()
            except ValueError:  # already running in another thread: it sees the flag
                return
        self._closed = True


class AsyncActStream(_ActStreamBase):
    """The async twin of :class:`ActStream`: ``async with``, ``async for``, ``await stream.result()``."""

    def __init__(self, client: object, flow: FlowFactory) -> None:
        super().__init__(client, flow)
        self._gen: AsyncGenerator[ActPart, None] | None = None
        self._running_calls: set[asyncio.Task[Outcome]] = set()  # cancelled by a Stop

    async def __aenter__(self) -> AsyncActStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[ActPart]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def _run(self) -> AsyncGenerator[ActPart, None]:
        run = FlowRun(self._flow(self._stop, self._messages))
        cancelled: asyncio.CancelledError | None = None  # a Ctrl-C during a round's calls: the flow records them
        try:
            while run.step is not None:
                with run:
                    step = run.step
                    if cancelled is not None:  # the calls' records, then ActInterrupted: nothing more is done
                        if not isinstance(step, Emit):
                            raise cancelled
                        self._note(step.part)
                    elif isinstance(step, Emit):
                        self._note(step.part)
                        yield step.part
                    elif isinstance(step, ReadRound) and isinstance(step.stream, AsyncChatStream):
                        stream = step.stream
                        self._round_started(stream)
                        if self._stop.is_set():
                            await stream.aclose()
                        else:
                            async with stream:
                                async for part in stream.iter_parts():
                                    if part.kind == "content" or part.kind == "reasoning":
                                        yield ActPart(part.kind, part.text)
                        run.reply = await stream.result()
                        self._round_ended(run.reply)
                    elif isinstance(step, RunToolCalls):
                        cut: list[Outcome] = []
                        try:
                            run.reply = await arun_tool_calls(step, self._running_calls, cut)
                        except asyncio.CancelledError as exc:
                            self._stop.set()
                            cancelled, run.reply = exc, cut
                    else:
                        raise TypeError(f"AsyncActStream cannot perform {step!r}")
            self._result = run.value
            if cancelled is not None:
                raise cancelled
        except ActInterrupted as interrupted:  # the cancellation goes on, the act as it ended kept for result()
            self._interrupted(interrupted)
            if cancelled is None:
                raise
            raise cancelled from None
        finally:
            self._closed = True

    async def result(self) -> ActResult:
        """The finished result (reads the rest first); after a Stop, what there was (``stopped``)."""
        if not self._closed:
            if self._stop.is_set():
                await self.aclose()
            else:
                async for _ in self:
                    pass
        return self.partial()

    async def text(self) -> str:
        return (await self.result()).content

    async def aclose(self) -> None:
        """Stop the loop; what arrived stays (``await result()``)."""
        self._stop.set()
        for task in list(self._running_calls):  # an async def tool ends at its next await
            task.cancel()
        current = self._current
        if current is not None and isinstance(current, AsyncChatStream):
            await current.aclose()
        if self._gen is not None:
            try:
                await self._gen.aclose()
            except RuntimeError:  # running elsewhere: it sees the flag
                pass
        self._closed = True
