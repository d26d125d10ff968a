"""The request log tests assert on, and the queue of scripted replies; both thread-safe."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# never recorded: credentials must not end up in test output or logs
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"})


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


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _SECRET_HEADERS}


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

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
