"""Request bodies, built and checked before anything is sent: chat messages, parameters LM Studio would reject, the
streamed and the one-token probe forms of a chat request (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lm_notebook.client.errors import LMStudioRequestError

Messages = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]

ROLES = ("system", "user", "assistant", "tool", "developer")
ACCEPTED_MESSAGES = (
    'Pass a string ("Hi"), one message ({"role": "user", "content": "Hi"}) or a list of them ([{"role": "system", '
    '"content": "Be brief."}, {"role": "user", "content": "Hi"}]); a role is system, user, assistant, tool or '
    'developer, and content is a string or a list of parts ({"type": "text", "text": "..."}, {"type": "image_url", '
    '"image_url": {"url": "data:..."}}); an assistant message with tool_calls may have no content.'
)


def _refused(problem: str) -> LMStudioRequestError:
    return LMStudioRequestError(f"{problem}. {ACCEPTED_MESSAGES}")


def _checked_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if isinstance(content, (list, tuple)) and content:
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise _refused(f"{where}.content[{j}] is {part!r}, not a part with a 'type'")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise _refused(f"{where}.content[{j}] is a text part without a string 'text'")
        return
    raise _refused(f"{where} has content {_shown(content)}, which is neither a string nor a list of parts")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_message(m: Any, where: str) -> dict[str, Any]:
    """One message, checked: a known role, and content LM Studio takes (copied)."""
    if not isinstance(m, Mapping):
        raise _refused(f"{where} is {_shown(m)} ({type(m).__name__}), not a message dict")
    role = m.get("role")
    if role not in ROLES:
        got = "has no 'role'" if "role" not in m else f"has role {_shown(role)}"
        raise _refused(f"{where} {got}")
    content = m.get("content")
    if content is None:
        if not (role == "assistant" and m.get("tool_calls")):
            raise _refused(f"{where} ({role}) has no content")
    else:
        _checked_content(content, where)
    return dict(m)


def as_messages(messages: Any) -> list[dict[str, Any]]:
    """A bare string is one user message, one message dict a list of one; a list of messages passes through
    (copied). Anything else, or a message LM Studio would not take, is refused before sending, in one line that
    shows the accepted forms."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        return [checked_message(messages, "the message")]
    if isinstance(messages, (bytes, bytearray)) or not isinstance(messages, Iterable):
        raise _refused(f"messages is {_shown(messages)} ({type(messages).__name__})")
    out = [checked_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    if not out:
        raise _refused("messages is empty: there is nothing to answer")
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
    earlier = list(history)
    return [*(as_messages(earlier) if earlier else []), {"role": "user", "content": prompt}]
