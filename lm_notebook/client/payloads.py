"""Request bodies, built and checked before anything is sent: chat messages, parameters LM Studio would reject, the
streamed and the one-token probe forms of a chat request (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lm_notebook.client.errors import LMStudioRequestError

Messages = str | Sequence[Mapping[str, Any]]


def as_messages(messages: Messages) -> list[dict[str, Any]]:
    """A bare string is one user message; a list of role/content dicts passes through (copied)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise LMStudioRequestError(
                f"messages[{i}] must be a dict with 'role' and 'content' (got {type(m).__name__})."
            )
        out.append(dict(m))
    return out


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse, before sending, the parameter values LM Studio would answer with a 400."""
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        raise LMStudioRequestError(
            "LM Studio rejects response_format {'type': 'json_object'}. Pass a JSON schema instead: "
            "response_format={'type': 'json_schema', 'json_schema': {'name': 'answer', 'schema': {...}}}."
        )
    mt = params.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or (mt < 1 and mt != -1)):
        raise LMStudioRequestError(f"max_tokens must be a positive integer or -1 for no limit, not {mt!r}.")
    temp = params.get("temperature")
    if temp is not None and (not isinstance(temp, (int, float)) or temp < 0):
        raise LMStudioRequestError(f"temperature must be a number ≥ 0, not {temp!r}.")


def chat_payload(messages: Messages, model: str, stream: bool, params: Mapping[str, Any]) -> dict[str, Any]:
    """The body of ``POST /v1/chat/completions`` (``params`` checked first); a streamed one asks for the usage
    chunk too."""
    payload: dict[str, Any] = {"model": model, "messages": as_messages(messages)}
    payload.update({k: v for k, v in params.items() if v is not None})
    payload["stream"] = stream
    if stream:
        options = dict(payload.get("stream_options") or {})
        options.setdefault("include_usage", True)
        payload["stream_options"] = options
    return payload


def load_payload(model: str, context_length: int | None, ttl: int | None) -> dict[str, Any]:
    """The body of ``POST /api/v1/models/load``: only what was given."""
    payload: dict[str, Any] = {"model": model}
    if context_length is not None:
        payload["context_length"] = context_length
    if ttl is not None:
        payload["ttl"] = ttl
    return payload


def probe_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The same request, not streamed and one token long: cheap, and the server says what is wrong."""
    probe = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
    probe.update(stream=False, max_tokens=1)
    return probe


def conversation(prompt: str, history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``send_message``'s messages: the history, then ``prompt`` as the user's turn."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise LMStudioRequestError("The prompt is empty: give send_message() some text to send.")
    return [*as_messages(list(history)), {"role": "user", "content": prompt}]
