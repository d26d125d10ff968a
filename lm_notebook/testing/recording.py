"""What tests observe (the request log, and a signal that wakes a test when anything observable changes) and the queue
of scripted replies; all thread-safe."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# never recorded: credentials must not end up in test output or logs
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"})


CHAT_PATHS = ("/v1/chat/completions", "/api/v1/chat")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it: ``json`` is the parsed body (None when absent or not JSON)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    time: float

    @property
    def model(self) -> str | None:
        return self.json.get("model") if isinstance(self.json, dict) else None

    @property
    def is_chat(self) -> bool:
        """A chat request, on either route (``/v1/chat/completions`` or LM Studio 0.4's native ``/api/v1/chat``)."""
        return self.path in CHAT_PATHS

    @property
    def chat_body(self) -> Any:
        """The body of a chat request in the OpenAI route's words, whichever route it took: a native one's
        ``system_prompt`` and ``input`` become ``messages``, ``max_output_tokens`` ``max_tokens``."""
        body = self.json
        if self.path != "/api/v1/chat" or not isinstance(body, dict):
            return body
        renamed = {"max_output_tokens": "max_tokens", "reasoning": "reasoning_effort"}
        out = {renamed.get(k, k): v for k, v in body.items() if k not in ("input", "system_prompt")}
        messages = [{"role": "system", "content": body["system_prompt"]}] if "system_prompt" in body else []
        raw = body.get("input")
        content: Any = raw if isinstance(raw, str) else [
            {"type": "text", "text": item.get("content")} if item.get("type") != "image"
            else {"type": "image_url", "image_url": {"url": item.get("data_url")}}
            for item in raw or [] if isinstance(item, dict)]
        out["messages"] = [*messages, {"role": "user", "content": content}]
        return out


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _SECRET_HEADERS}


class ChangeSignal:
    """Wakes the threads waiting for the server's observable state (requests, counters, loaded models) to change.

    ``notify`` may be called with other locks held: a waiter never holds this one while it checks its condition.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._version = 0

    def notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """True once ``condition()`` holds (checked now and after every change); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._version
            if condition():
                return True
            with self._changed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if self._version == seen:
                    self._changed.wait(remaining)


class RequestLog:
    def __init__(self, signal: ChangeSignal | None = None) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []
        self._signal = signal

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)
        if self._signal is not None:
            self._signal.notify()

    def items(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class ScriptBook:
    """Replies queued per model id; each one is used once, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[str]] = {}

    def add(self, model: str, replies: tuple[str, ...]) -> None:
        with self._lock:
            self._queues.setdefault(model, deque()).extend(replies)

    def pop(self, model: str) -> str | None:
        with self._lock:
            queue = self._queues.get(model)
            return queue.popleft() if queue else None

    def pending(self, model: str) -> int:
        with self._lock:
            return len(self._queues.get(model, ()))

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
