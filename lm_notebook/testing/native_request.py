"""A native chat request (``POST /api/v1/chat``) read: its input items and integrations, its errors in the native
route's words, the plan it makes, and the chats stored for ``previous_response_id``."""

from __future__ import annotations

import json
import random
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lm_notebook.testing import error_bodies as errors
from lm_notebook.testing.catalogue import ModelSpec
from lm_notebook.testing.generation import Generation

_ids = random.Random()


class NativeFailure(Exception):
    """Answer with a native error (``error`` then ``chat.end`` in a stream, else this status and body)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def native_error(reply: errors.ErrorReply) -> NativeFailure:
    """One of the OpenAI-route error answers, in the native route's words (an object with a ``type``)."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = {"error": reply.body.decode(errors="replace")}
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else str(err)
    code = err.get("code") if isinstance(err, dict) else None
    param = err.get("param") if isinstance(err, dict) else None
    low = str(message).lower()
    kind = ("model_not_found" if code == "model_not_found" or "invalid model identifier" in low
            else "internal_error" if reply.status >= 500 else "invalid_request")
    out: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        out["code"] = code
    if param is not None:
        out["param"] = param
    return NativeFailure(reply.status if reply.status >= 400 else 400, out)


@dataclass
class StoredChat:
    messages: list[dict[str, Any]]


class NativeChats:
    """The stored chats (``response_id`` → the conversation so far); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chats: dict[str, StoredChat] = {}

    def get(self, response_id: str) -> StoredChat | None:
        with self._lock:
            return self._chats.get(response_id)

    def put(self, messages: list[dict[str, Any]]) -> str:
        response_id = "resp_" + "".join(_ids.choices(string.hexdigits.lower()[:16], k=24))
        with self._lock:
            self._chats[response_id] = StoredChat(messages)
        return response_id

    def __len__(self) -> int:
        with self._lock:
            return len(self._chats)


def input_text(raw: Any) -> tuple[str, list[dict[str, Any]]]:
    """The user turn's text, and its content as OpenAI parts (for the canned replies and vision checks)."""
    if isinstance(raw, str):
        return raw, [{"type": "text", "text": raw}]
    if not isinstance(raw, list) or not raw:
        raise NativeFailure(400, {"type": "invalid_request", "message": "'input' must be a string or an array of "
                                  "input items", "param": "input"})
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for item in raw:
        if isinstance(item, Mapping) and item.get("type") in ("message", "text"):
            texts.append(str(item.get("content", "")))
            parts.append({"type": "text", "text": str(item.get("content", ""))})
        elif isinstance(item, Mapping) and item.get("type") == "image":
            parts.append({"type": "image_url", "image_url": {"url": str(item.get("data_url", ""))}})
        else:
            raise NativeFailure(400, {"type": "invalid_request", "message": f"Unknown input item {item!r}",
                                      "param": "input"})
    return "\n".join(texts), parts


def integration_label(item: Any) -> str | None:
    if isinstance(item, str):
        return item.split("/", 1)[-1]
    if isinstance(item, Mapping):
        return str(item.get("server_label") or item.get("id") or "mcp").split("/", 1)[-1]
    return None


@dataclass
class Plan:
    """One native request, checked: the model, the conversation, and what to generate."""

    spec: ModelSpec
    messages: list[dict[str, Any]]
    gen: Generation
    integrations: list[str]
    store: bool
    stream: bool
