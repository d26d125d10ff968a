"""What :meth:`ChatPanel.send <lm_notebook.chat.ChatPanel.send>` hands back, and the record of one message.

:class:`ChatReply` is public (re-exported by :mod:`lm_notebook.chat.panel`); :class:`ConversationEntry` is the
panel's own record of a message and its view. An answer's :class:`~lm_notebook.chat.generation.AnswerGeneration` fills
the reply's
private ``_content`` / ``_reasoning`` as parts arrive and calls ``_settle`` once, when the answer is over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from lm_notebook.client.errors import error_text
from lm_notebook.client.types import ChatResult


class ChatReply:
    """The handle :meth:`ChatPanel.send` returns: the answer as it streams, then its result or error.

    ``wait()`` blocks until the answer is complete, stopped or failed; it never raises the model's errors — look at
    ``error`` (the exception, with an actionable ``.message``) or ``result`` (a :class:`ChatResult`).
    """

    def __init__(self, prompt: str, model: str | None) -> None:
        self.prompt = prompt
        self.model = model
        self.result: ChatResult | None = None
        self.error: Exception | None = None
        self._done = threading.Event()
        self._content: list[str] = []
        self._reasoning: list[str] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ok(self) -> bool:
        """Done, without error (a stopped answer is ok)."""
        return self.done and self.error is None

    @property
    def stopped(self) -> bool:
        return self.result is not None and self.result.stopped

    @property
    def content(self) -> str:
        """The answer text so far (all of it once done)."""
        if self.result is not None:
            return self.result.content
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        if self.result is not None:
            return self.result.reasoning
        return "".join(self._reasoning)

    def wait(self, timeout: float | None = None) -> ChatResult | None:
        """The result once the answer is over (None when it failed: see ``error``).

        Raises ``TimeoutError`` when it is still streaming after ``timeout`` seconds.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the answer is still streaming after {timeout} s; call stop() to end it")
        return self.result

    def _settle(self, result: ChatResult | None, error: Exception | None) -> None:
        self.result, self.error = result, error
        self._done.set()

    @property
    def state(self) -> str:
        if not self.done:
            return "streaming"
        if self.error is not None:
            return "failed"
        return "stopped" if self.stopped else "answered"

    def __repr__(self) -> str:
        extra = f": {error_text(self.error)}" if self.error is not None else f", {len(self.content)} chars"
        return f"<ChatReply {self.state} model={self.model!r}{extra}>"


@dataclass
class ConversationEntry:
    """One message of the conversation, with its view."""

    role: str  # "user" | "assistant"
    content: str
    view: Any
    model: str | None = None
    reasoning: str = ""
    result: ChatResult | None = None
    error: Exception | None = None
    reply: ChatReply | None = None

    @property
    def in_history(self) -> bool:
        """Failed answers (and answers stopped before any text) are not part of what the model sees."""
        return self.role == "user" or (self.error is None and bool(self.content))

