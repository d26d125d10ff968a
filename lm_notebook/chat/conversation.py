"""The chat's data model: messages, what the model is sent, what Retry drops, and the handle of one answer.

Pure: no widgets, no LM Studio, no threads of its own (the panel holds a lock around a :class:`Conversation`), so it
is tested with plain values::

    chat = Conversation()
    chat.add_user("Hi")
    answer, reply = chat.add_answer("qwen")
    answer.record(AnswerOutcome("Hello!", "", ChatResult("Hello!"), None))
    chat.history("Be brief.")   # [system, user, assistant]

:class:`ChatReply` is public (what :meth:`ChatPanel.send <lm_notebook.chat.panel.ChatPanel.send>` returns); the text
of an answer still streaming is a :class:`Draft` that the reader fills and the reply reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from lm_notebook.client.errors import LMStudioAPIError, LMStudioError, LMStudioRequestError, error_text
from lm_notebook.client.types import ChatResult, SentImage


@dataclass(frozen=True)
class DraftText:
    """An answer's text at one moment while it streams; ``parts`` counts the text parts (about one token each)."""

    content: str = ""
    reasoning: str = ""
    parts: int = 0


class Draft:
    """The text of an answer as it arrives: one thread adds parts, any thread reads (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._content: list[str] = []
        self._reasoning: list[str] = []

    def add(self, kind: str, text: str) -> bool:
        """Add a part of the stream; True when it was text (``content`` or ``reasoning``), False for other kinds."""
        with self._lock:
            if kind == "content":
                self._content.append(text)
            elif kind == "reasoning":
                self._reasoning.append(text)
            else:
                return False
        return True

    def text(self) -> DraftText:
        with self._lock:
            content, reasoning = "".join(self._content), "".join(self._reasoning)
            return DraftText(content, reasoning, len(self._content) + len(self._reasoning))


@dataclass(frozen=True)
class AnswerOutcome:
    """How an answer ended: the text to show and keep, its result (None when it failed) and its error."""

    content: str
    reasoning: str
    result: ChatResult | None
    error: Exception | None
    parts: int = 0  # text parts streamed, for an approximate token count when the server sent none


def answer_outcome(
    result: ChatResult | None, error: Exception | None, draft: DraftText, *, model: str | None
) -> AnswerOutcome:
    """What is kept of an answer: the server's text when it has it (a failed stream's partial answer included), else
    what was streamed; an answer stopped before the stream existed becomes an empty stopped result."""
    if isinstance(error, LMStudioError) and error.partial is not None:
        content, reasoning = error.partial.content, error.partial.reasoning
    elif result is not None:
        content, reasoning = result.content, result.reasoning
    else:
        content, reasoning = draft.content, draft.reasoning
    if result is None and error is None:
        result = ChatResult(content=content, reasoning=reasoning, model=model, stopped=True, streaming=True)
    return AnswerOutcome(content, reasoning, result, error, draft.parts)


def as_stopped(result: ChatResult) -> ChatResult:
    return result if result.stopped else replace(result, stopped=True)


class ChatReply:
    """The handle :meth:`ChatPanel.send` returns: the answer as it streams, then its result or error.

    ``wait()`` blocks until the answer is complete, stopped or failed; it never raises the model's errors — look at
    ``error`` (the exception, with an actionable ``.message``) or ``result`` (a :class:`ChatResult`).
    """

    def __init__(self, prompt: str, model: str | None, draft: Draft | None = None) -> None:
        self.prompt = prompt
        self.model = model
        self.result: ChatResult | None = None
        self.error: Exception | None = None
        self._done = threading.Event()
        self._settling = threading.Lock()
        self._draft = draft if draft is not None else Draft()

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
        return self._draft.text().content

    @property
    def reasoning(self) -> str:
        if self.result is not None:
            return self.result.reasoning
        return self._draft.text().reasoning

    def wait(self, timeout: float | None = None) -> ChatResult | None:
        """The result once the answer is over (None when it failed: see ``error``).

        Raises ``TimeoutError`` when it is still streaming after ``timeout`` seconds.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the answer is still streaming after {timeout} s; call stop() to end it")
        return self.result

    def settle(self, result: ChatResult | None, error: Exception | None) -> None:
        """Record how the answer ended and wake :meth:`wait` (the panel calls it once; later calls change nothing)."""
        with self._settling:
            if self._done.is_set():
                return
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


def with_images(content: str, images: tuple[SentImage, ...]) -> str | list[dict[str, Any]]:
    """A message's content as the model is sent it: the text alone, or the text then its images' parts."""
    if not images:
        return content
    return [{"type": "text", "text": content}, *(image.as_part() for image in images)]


def as_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def joined(before: str | list[dict[str, Any]], now: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Two back-to-back user messages as one (a failure leaves them so)."""
    if isinstance(before, str) and isinstance(now, str):
        return before + "\n\n" + now
    return [*as_parts(before), *as_parts(now)]


@dataclass(eq=False)  # compared by identity: the panel maps each entry to its view
class ConversationEntry:
    """One message of the conversation."""

    role: str  # "user" | "assistant"
    content: str
    model: str | None = None
    reasoning: str = ""
    result: ChatResult | None = None
    error: Exception | None = None
    reply: ChatReply | None = None
    images: tuple[SentImage, ...] = ()  # a user message's images, as sent
    # a user message with images whose request was refused: shown, but not sent with later messages (Retry sends it)
    withheld: bool = False

    @property
    def in_history(self) -> bool:
        """Failed answers (and answers stopped before any text), and withheld messages, are not part of what the
        model sees."""
        if self.role == "user":
            return not self.withheld
        return self.error is None and bool(self.content)

    def record(self, outcome: AnswerOutcome) -> None:
        """Keep how this answer ended (its reply is settled separately, once the panel shows the outcome)."""
        self.content, self.reasoning = outcome.content, outcome.reasoning
        self.result, self.error = outcome.result, outcome.error


class Conversation:
    """The messages of one chat, oldest first."""

    def __init__(self) -> None:
        self._entries: list[ConversationEntry] = []

    @property
    def entries(self) -> list[ConversationEntry]:
        """A copy of the messages, oldest first."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add_user(self, text: str, images: tuple[SentImage, ...] = ()) -> ConversationEntry:
        entry = ConversationEntry("user", text, images=images)
        self._entries.append(entry)
        return entry

    def add_answer(self, model: str | None, draft: Draft | None = None) -> tuple[ConversationEntry, ChatReply]:
        """An answer (still to come) to the last user message, and its :class:`ChatReply` (reading ``draft``)."""
        prompt = next((e.content for e in reversed(self._entries) if e.role == "user"), "")
        reply = ChatReply(prompt, model, draft)
        entry = ConversationEntry("assistant", "", model=model, reply=reply)
        self._entries.append(entry)
        return entry, reply

    @property
    def has_user_message(self) -> bool:
        return any(e.role == "user" for e in self._entries)

    def withhold_refused(self, answer: ConversationEntry) -> ConversationEntry | None:
        """After ``answer`` failed: when the request itself was refused (before sending, or a 400) and its user
        message carried images, that message is withheld from later requests (sent again, the same images would be
        refused again, turn after turn) and returned; else None."""
        error = answer.error
        refused = isinstance(error, LMStudioRequestError) or (
            isinstance(error, LMStudioAPIError) and error.status_code in (400, 422))
        if not refused or answer not in self._entries:
            return None
        prompt = next((e for e in reversed(self._entries[: self._entries.index(answer)]) if e.role == "user"), None)
        if prompt is None or not prompt.images:
            return None
        prompt.withheld = True
        return prompt

    def drop_answers_to_last_message(self) -> list[ConversationEntry]:
        """What Retry removes: everything after the last user message (returned, oldest first); that message is
        sent again, even if it was withheld (Retry asks for it)."""
        last_user = max((i for i, e in enumerate(self._entries) if e.role == "user"), default=None)
        if last_user is None:
            raise RuntimeError("Nothing to retry: send a message first.")
        self._entries[last_user].withheld = False
        dropped = self._entries[last_user + 1 :]
        del self._entries[last_user + 1 :]
        return dropped

    def clear(self) -> list[ConversationEntry]:
        """Forget every message (returned, oldest first)."""
        entries, self._entries = self._entries, []
        return entries

    def history(self, system: str) -> list[dict[str, Any]]:
        """Role/content dicts: the system prompt (if any), then the messages the model may see."""
        out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system.strip() else []
        out.extend({"role": e.role, "content": with_images(e.content, e.images)} for e in self._entries if e.in_history)
        return out

    def request_messages(self, system: str) -> list[dict[str, Any]]:
        """What the model is sent: :meth:`history`, with back-to-back user messages (left by failures) joined."""
        out: list[dict[str, Any]] = []
        for message in self.history(system):
            if out and message["role"] == "user" and out[-1]["role"] == "user":
                out[-1] = {"role": "user", "content": joined(out[-1]["content"], message["content"])}
            else:
                out.append(dict(message))
        return out

    def stored_turn(self, system: str) -> tuple[list[dict[str, Any]], str | None]:
        """What LM Studio's native route is sent, which carries earlier turns only as a chat it stored: the user
        messages since the last answer it stored (joined), and that answer's ``response_id`` to continue (None: a
        new chat, with the system prompt; a stored chat keeps its own). An answer it did not store (stopped before
        its end) is not part of what the model sees."""
        last = max((i for i, e in enumerate(self._entries) if e.role == "assistant" and e.in_history
                    and e.result is not None and e.result.response_id), default=None)
        previous = None if last is None else self._entries[last].result.response_id  # type: ignore[union-attr]
        content: str | list[dict[str, Any]] = ""
        for entry in self._entries[0 if last is None else last + 1:]:
            if entry.role == "user" and entry.in_history:
                now = with_images(entry.content, entry.images)
                content = joined(content, now) if content else now
        out = [{"role": "system", "content": system}] if previous is None and system.strip() else []
        return [*out, {"role": "user", "content": content}], previous

    @property
    def replies(self) -> list[ChatReply]:
        """Every answer's handle, oldest first."""
        return [e.reply for e in self._entries if e.reply is not None]
