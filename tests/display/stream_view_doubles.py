"""Doubles for the display views: a clock that moves when told, a display publisher that records what a kernel would
send, and a stream of given parts."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from lm_notebook.client.stream import StreamPart
from lm_notebook.client.types import ChatResult, Timings, Usage

Sent = tuple[dict[str, Any], str | None, bool]


def result(content: str = "Hello **world**", **kw: Any) -> ChatResult:
    kw.setdefault("model", "qwen")
    kw.setdefault("usage", Usage(prompt_tokens=3, completion_tokens=12, total_tokens=15))
    kw.setdefault("timings", Timings(time_to_first_token=0.25, total=1.0, tokens_per_second=16.0))
    kw.setdefault("finish_reason", "stop")
    return ChatResult(content, **kw)


class FakeClock:
    """A clock that moves only when told: the throttle's time, independent of how busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CLEAR_AT_NEXT_OUTPUT: dict[str, Any] = {"clear_output": "wait=True"}  # how a recorded clear_output(wait=True) looks


P = TypeVar("P", bound=DisplayPublisher)


@contextlib.contextmanager
def installed_publisher(publisher: P) -> Iterator[P]:
    """IPython's display publisher replaced by ``publisher`` for the block, the shell's own put back after."""
    shell = InteractiveShell.instance()
    saved = shell.display_pub
    shell.display_pub = publisher
    try:
        yield publisher
    finally:
        shell.display_pub = saved


class RecordingPublisher(DisplayPublisher):
    """Records what a kernel would send: (data, display_id, update), and a clear_output as (CLEAR_AT_NEXT_OUTPUT,
    None, False); ``wait_for`` waits for a message count."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                update: bool = False, **kw: Any) -> None:
        with self._changed:
            self.sent.append((data, (transient or {}).get("display_id"), update))
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def clear_output(self, wait: bool = False) -> None:
        with self._changed:
            self.sent.append((CLEAR_AT_NEXT_OUTPUT if wait else {"clear_output": "now"}, None, False))
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[list[Sent]], bool]) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: condition(self.sent), timeout=10), self.sent


class FakeStream:
    """What stream_into needs from a ChatStream: parts, close(), result(); ``interrupt_at`` raises Ctrl-C there."""

    def __init__(self, parts: list[StreamPart], *, interrupt_at: int | None = None) -> None:
        self.parts = parts
        self.interrupt_at = interrupt_at
        self.closed = False
        self.sent: list[StreamPart] = []

    def iter_parts(self) -> Iterator[StreamPart]:
        for i, part in enumerate(self.parts):
            if i == self.interrupt_at:
                raise KeyboardInterrupt
            self.sent.append(part)
            yield part

    def close(self) -> None:
        self.closed = True

    def result(self) -> ChatResult:
        text = "".join(p.text for p in self.sent if p.kind == "content")
        if self.closed:  # as a real stream: a stopped one never got the server's usage or its rate
            return result(text, stopped=True, usage=None, timings=Timings(time_to_first_token=0.25))
        return result(text)


def live_text(message: Sent) -> str:
    return str(message[0].get("text/markdown", ""))
