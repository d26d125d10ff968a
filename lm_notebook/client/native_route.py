"""Which chat route a request takes, and its body on LM Studio 0.4's native ``POST /api/v1/chat`` (pure; no I/O).

The rule is written once, in :func:`choose_route`: ``"openai"`` always takes ``/v1/chat/completions``, ``"native"``
always ``/api/v1/chat``, and ``"auto"`` takes the native route when the server is known to have it (LM Studio 0.4+)
and the request can be said there: an optional system message and one user turn (text, images), or the
continuation of a stored response, with only the parameters the native route has. Anything else (tools,
``response_format``, ``seed``, ``stop``, penalties, a multi-turn history, ``logit_bias``) goes the OpenAI way.

>>> choose_route("auto", native_available=True, messages=[{"role": "user", "content": "Hi"}], params={})
'native'
>>> choose_route("auto", native_available=True, messages=[{"role": "user", "content": "Hi"}], params={"seed": 1})
'openai'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lm_notebook.client.errors import EndpointNotSupportedError, LMStudioRequestError, needs_newer_lmstudio
from lm_notebook.client.native_types import ROUTES, Route

NATIVE_CHAT_PATH = "/api/v1/chat"
OPENAI_CHAT_PATH = "/v1/chat/completions"

# parameter → its name on the native route
NATIVE_PARAMS: Mapping[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "max_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning",
    "context_length": "context_length",
    "integrations": "integrations",
}
# parameters that exist only on the native route
NATIVE_ONLY = frozenset({"store", "previous_response_id", "integrations", "context_length"})
# the client's own bookkeeping, never a reason to choose a route
_INTERNAL = frozenset({"stream_options"})
# reasoning_effort's values in the native route's words
_REASONING = {"none": "off", "minimal": "low"}

ChatRoute = Literal["openai", "native"]


def checked_route(route: Any) -> Route:
    """``route`` when it is one of ``"auto"``, ``"openai"``, ``"native"``; refused in one line otherwise."""
    if route not in ROUTES:
        raise LMStudioRequestError(
            f'route must be "auto" (LM Studio 0.4\'s native chat when it can say the request, else OpenAI\'s), '
            f'"openai" (always /v1/chat/completions) or "native" (always /api/v1/chat), not {route!r}.'
        )
    return route  # type: ignore[no-any-return]


def _image_url(part: Mapping[str, Any]) -> str | None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    return url if isinstance(url, str) else None


def _content_reason(content: Any) -> str | None:
    if isinstance(content, str):
        return None
    for part in content:
        kind = part.get("type")
        if kind == "image_url" and _image_url(part) is not None:
            continue
        if kind != "text":
            return f"a content part of type {kind!r}"
    return None


def why_not_native(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str | None:
    """Why the request cannot be said on the native route (None when it can): the one rule, as data in, reason out.
    ``messages`` are already checked (:func:`~lm_notebook.client.payloads.as_messages`)."""
    for name, value in params.items():
        if value is None or name in _INTERNAL or name in NATIVE_PARAMS or name in NATIVE_ONLY:
            continue
        return f"the parameter {name}"
    turns = list(messages)
    if turns and turns[0].get("role") == "system":
        if not isinstance(turns[0].get("content"), str):
            return "a system message made of parts"
        turns = turns[1:]
    if len(turns) != 1 or turns[0].get("role") != "user":
        roles = ", ".join(str(m.get("role")) for m in messages)
        return f"a conversation of several turns ({roles}); the native route carries earlier turns only as a stored " \
               "response (previous_response_id)"
    reason = _content_reason(turns[0].get("content"))
    if reason is not None:
        return reason
    effort = params.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        return f"reasoning_effort={effort!r}"
    return None


def native_only_in(params: Mapping[str, Any]) -> list[str]:
    """The native-only parameters ``params`` sets (``integrations=[]``, ``store=False`` set nothing)."""
    return sorted(k for k in NATIVE_ONLY if params.get(k) not in (None, False, [], ()))


def with_integrations_checked(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``integrations`` as the list the native route takes: one id as a string is a list of one
    (``"mcp/playwright"``, as the chat panel takes it); anything but ids and integration objects is refused."""
    value = params.get("integrations")
    if value is None:
        return params
    items = [value] if isinstance(value, (str, Mapping)) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, Mapping)) for i in items):
        raise LMStudioRequestError(
            f"integrations must be LM Studio integration ids such as ['mcp/playwright'] (one may be given as a "
            f"string) or integration objects ({{'type': 'plugin', 'id': ...}}), not {value!r}."
        )
    return {**params, "integrations": list(items)}


def choose_route(
    route: Route, *, native_available: bool | None, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> ChatRoute:
    """The route one request takes. ``native_available``: whether the server has ``/api/v1/chat`` (None while the
    client does not know: the OpenAI route then, so no request costs an extra round trip)."""
    native_only = native_only_in(params)
    if native_only and native_available is False:  # known: this server has no native route (0.3, llama.cpp's)
        raise LMStudioRequestError(
            f"{', '.join(native_only)} need(s) LM Studio 0.4's native chat route, and this server has none (an "
            "older LM Studio, or llama.cpp's server): leave them out, or use a server with LM Studio 0.4 or newer."
        )
    if route == "openai":
        if native_only:
            raise LMStudioRequestError(
                f"{', '.join(native_only)} exist(s) only on LM Studio 0.4's native chat route, and route='openai' "
                "was asked for: pass route='auto' or route='native', or leave them out."
            )
        return "openai"
    reason = why_not_native(messages, params)
    if route == "native" or native_only:
        if reason is not None:
            wanted = "route='native'" if route == "native" else f"{', '.join(native_only)} (native-only)"
            raise LMStudioRequestError(
                f"{wanted} needs LM Studio 0.4's native chat route, which cannot carry {reason}. Leave it out, or "
                "use route='openai' (without store, previous_response_id, integrations and context_length)."
            )
        return "native"
    return "native" if native_available and reason is None else "openai"


def _native_input(content: Any) -> Any:
    if isinstance(content, str):
        return content
    items: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            items.append({"type": "message", "content": part["text"]})
        else:
            items.append({"type": "image", "data_url": _image_url(part)})
    return items


def native_payload(
    messages: Sequence[Mapping[str, Any]], model: str, stream: bool, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The body of ``POST /api/v1/chat`` for a request :func:`why_not_native` accepts. The chat is not stored on
    the server unless the caller asked (``store=True``)."""
    turns = list(messages)
    payload: dict[str, Any] = {"model": model}
    if turns[0].get("role") == "system":
        payload["system_prompt"] = turns[0]["content"]
        turns = turns[1:]
    payload["input"] = _native_input(turns[0]["content"])
    for name, value in params.items():
        if value is None or name not in NATIVE_PARAMS:
            continue
        if name == "max_tokens" and value == -1:
            continue  # no limit: the native route's default
        if name == "reasoning_effort":
            value = _REASONING.get(value, value)
        payload[NATIVE_PARAMS[name]] = value
    payload["stream"] = stream
    payload["store"] = bool(params.get("store", False))
    if params.get("previous_response_id") is not None:
        payload["previous_response_id"] = params["previous_response_id"]
    return payload


def native_images(payload: Mapping[str, Any]) -> int:
    """How many images a native body's ``input`` carries."""
    raw = payload.get("input")
    return sum(isinstance(i, Mapping) and i.get("type") == "image" for i in raw) if isinstance(raw, list) else 0


def is_native_payload(payload: Mapping[str, Any]) -> bool:
    return "input" in payload


def chat_path(payload: Mapping[str, Any]) -> str:
    """Where a chat body goes: the native route's bodies have ``input``, the OpenAI route's ``messages``."""
    return NATIVE_CHAT_PATH if is_native_payload(payload) else OPENAI_CHAT_PATH


def openai_only(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the native-only ones that are unset (for the OpenAI body)."""
    return {k: v for k, v in params.items() if k not in NATIVE_ONLY}


def native_unsupported(
    err: EndpointNotSupportedError, base_url: str, payload: Mapping[str, Any] | None = None, route: Route = "native"
) -> EndpointNotSupportedError:
    """``err`` (the server has no ``/api/v1/chat``: LM Studio 0.3, llama.cpp's server) said for the native route;
    when ``payload`` (the native body sent) carries native-only parameters, the advice is to leave them out.
    ``route``: the client's route; under ``"auto"`` the route was taken because the server had it earlier."""
    sent = native_only_in(payload) if payload is not None else []  # the native body names them as the caller did
    if sent:
        return needs_newer_lmstudio("LM Studio's native chat route (POST /api/v1/chat)", err, base_url,
                                    f"Leave out {', '.join(sent)}: they need LM Studio 0.4 or newer.")
    if route == "auto":
        return needs_newer_lmstudio(
            "LM Studio's native chat route (POST /api/v1/chat, taken by route='auto': the server had it before)",
            err, base_url, "Another server answers there now; this client has learnt it: send the request again "
            "and route='auto' takes /v1/chat/completions.")
    advice = "Use route='auto' (it takes /v1/chat/completions on this server) or route='openai'."
    return needs_newer_lmstudio("LM Studio's native chat route (POST /api/v1/chat, route='native')", err, base_url,
                                advice)
