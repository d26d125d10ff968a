"""What a reader of the chat panel sees, and how a test waits for it: the page's text, the last answer's view and
every value its text widget takes, and the fake server's clock moved at the right moment."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable
from typing import Any

from lm_notebook import ChatPanel
from lm_notebook.chat.widgets import AssistantMessageView
from lm_notebook.testing import CHAT_PATHS, ManualClock, MockLMStudioServer

MODEL = "qwen2.5-7b-instruct"
CHAT = CHAT_PATHS  # either chat route


def page_text(widget: Any) -> str:
    """Every HTML value in the widget tree, tags removed (what a reader of the panel sees)."""
    values: list[str] = []

    def walk(w: Any) -> None:
        value = getattr(w, "value", None)
        if type(w).__name__ == "HTML" and isinstance(value, str) and not value.startswith("<style>"):
            values.append(value)
        for child in getattr(w, "children", ()):
            walk(child)

    walk(widget)
    return html.unescape(re.sub(r"<[^>]+>", " ", " ".join(values)))


def chat_requests(server: MockLMStudioServer) -> list[dict[str, Any]]:
    return [r.chat_body for r in server.requests if r.is_chat]


def slow(server: MockLMStudioServer, *, tokens: int, rate: float, model: str = MODEL) -> None:
    server.update_model(model, tokens_per_second=rate, reply_tokens=tokens)


def advance(clock: ManualClock, seconds: float) -> None:
    """Move the server's clock once its stream waits on it (it sets each pause after sending what came before)."""
    clock.wait_for_pending(1)
    clock.advance(seconds)


def answer_view(panel: ChatPanel) -> AssistantMessageView:
    view = panel._views[panel._conversation.entries[-1]]
    assert isinstance(view, AssistantMessageView)
    return view


class Shown:
    """Every value the last answer's text widget takes from now on (its unfinished end while streaming), with waits."""

    def __init__(self, panel: ChatPanel) -> None:
        self.live = answer_view(panel).content
        self.values: list[str] = []
        self._changed = threading.Condition()
        self.live._tail.observe(self._record, names="value")
        with self._changed:
            current = self.live._tail.value
            if current and current not in self.values:  # painted before we looked
                self.values.insert(0, current)

    def _record(self, change: dict[str, Any]) -> None:
        with self._changed:
            self.values.append(change["new"])
            self._changed.notify_all()

    def first_token(self) -> str:
        """The first value with text: the answer's first token, painted."""
        return self.wait_for(lambda v: bool(text_of(v).strip()))

    def wait_for_count(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.values) >= count, timeout=10), self.values

    def wait_for(self, condition: Callable[[str], bool]) -> str:
        """The first value shown (or shown already) for which ``condition`` holds."""
        def found() -> str | None:
            return next((v for v in self.values if condition(v)), None)

        with self._changed:
            assert self._changed.wait_for(lambda: found() is not None, timeout=10), self.values
            value = found()
            assert value is not None
            return value


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))
