"""What ``%%lm --chat`` remembers: the last exchanges (prompt and answer), sent again before the next ``--chat`` cell.

Pure data: no shell, no client. ``%config LMMagics.chat_memory`` is how many exchanges are kept; ``%lm_reset`` forgets.

>>> memory = ChatMemory()
>>> memory.prompt("Hi", system="Be brief.", chat=True)
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
"""

from __future__ import annotations

from typing import Any

from lm_notebook.client.images import with_images
from lm_notebook.client.types import ChatResult


class ChatMemory:
    """The conversation of the ``--chat`` cells so far, as chat messages (oldest first)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    @property
    def exchanges(self) -> int:
        """Prompt-and-answer pairs remembered."""
        return len(self.messages) // 2

    def prompt(self, text: str, *, system: str | None, chat: bool) -> list[dict[str, Any]]:
        """The messages to send for one cell: the system prompt, the conversation when ``chat``, then ``text``."""
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        if chat:
            messages.extend(self.messages)
        messages.append({"role": "user", "content": text})
        return messages

    def remember(self, sent: list[dict[str, Any]], result: ChatResult, *, keep: int) -> None:
        """Add the cell's prompt (the last message ``sent``) and its answer; keep the last ``keep`` exchanges.

        An answer with no text (stopped before its first token) is not remembered. The images the prompt carried
        (``result.images``) are remembered with it, as the prompt's parts: the next ``--chat`` cell sends them again.
        """
        if not result.content:
            return
        prompt = with_images(sent[-1:], result.images)[0]
        self.messages.extend([prompt, result.as_message()])
        self.keep_last(keep)

    def keep_last(self, keep: int) -> None:
        """Forget all but the last ``keep`` exchanges (``%config LMMagics.chat_memory`` lowered takes effect now)."""
        del self.messages[: max(0, len(self.messages) - max(0, keep) * 2)]

    def clear(self) -> int:
        """Forget everything; returns the number of exchanges forgotten."""
        forgotten = self.exchanges
        self.messages.clear()
        return forgotten
