"""Which exception an error answer from the server is, with a message that says what to do (pure; stdlib only).

LM Studio's error bodies come in several shapes (``{"error": "text"}``, ``{"error": {"message", "code", ...}}``, a
top-level ``message``, plain text), and so do other OpenAI-compatible servers' (llama.cpp's): :func:`classify_error`
reads them all into the tree in :mod:`lm_notebook.client.errors`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from lm_notebook.client.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    EndpointNotSupportedError,
    InvalidRequestError,
    LMStudioAPIError,
    ModelLoadError,
    ModelNotFoundError,
    NoModelLoadedError,
    RateLimitError,
    ServerBusyError,
    ServerError,
    model_not_found_message,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from lm_notebook.client.errors import APIErrorFields
    from lm_notebook.client.types import ChatResult

_UNEXPECTED_ENDPOINT = "unexpected endpoint or method"
_CONTEXT_MARKERS = (
    "context length",
    "context the overflows",
    "context overflow",
    "exceed_context_size",
    "exceeds the available context",
    "does not fit in context",
    "context window",
)
_EXAMPLE_IDS = re.compile(r"\(e\.g\.,?\s*([^)]*)\)")
# the id LM Studio quotes: 'Invalid model identifier "x"', 'Model "x" not found'
_QUOTED_MODEL = re.compile(r'(?:identifier|[Mm]odel)\s+"([^"]*)"')
# the sizes servers put in a context overflow: LM Studio (unstreamed, then streamed), OpenAI-style servers
# (llama-cpp-python's), llama-cpp-python's older text; llama.cpp's server gives n_prompt_tokens and n_ctx fields
_PROMPT_SIZE = tuple(re.compile(p) for p in (
    r"first (\d+) tokens", r"input has (\d+) tokens", r"\((\d+) in the messages", r"resulted in (\d+) tokens",
    r"[Rr]equested tokens \((\d+)\)",
))
_CONTEXT_SIZE = tuple(re.compile(p) for p in (
    r"context length of only (\d+)", r"maximum context length is (\d+)", r"context window of (\d+)",
))


def parse_error_body(text: str) -> tuple[Any, str, str | None]:
    """Return ``(parsed body, message, code)`` for any of LM Studio's error bodies.

    Handles ``{"error": "text"}``, ``{"error": {"message", "type", "param", "code"}}``, a top-level ``message``,
    and non-JSON text.
    """
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        return text, text.strip()[:500], None
    return body, *error_message_and_code(body)


def error_message_and_code(body: Any) -> tuple[str, str | None]:
    """Extract the human message and machine code from a parsed error body."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, str):
            return err, None
        if isinstance(err, dict):
            msg = err.get("message") or body.get("message") or json.dumps(err)
            code = err.get("code") or err.get("type")
            return str(msg), (str(code) if code is not None else None)
    if body is None:
        return "", None
    return str(body)[:500], None


def is_error_body(body: Any) -> bool:
    """True for a JSON body that is an error even though its status may be 200."""
    return (
        isinstance(body, dict)
        and "error" in body
        and not any(k in body for k in ("choices", "data", "models", "object"))
    )


def is_unexpected_endpoint(message: str) -> bool:
    return _UNEXPECTED_ENDPOINT in message.lower()


def is_context_error(message: str, code: str | None = None) -> bool:
    low = message.lower()
    return (code or "").lower() in {"context_length_exceeded", "exceed_context_size_error"} or any(
        m in low for m in _CONTEXT_MARKERS
    )


def ids_from_message(message: str) -> list[str]:
    """Model ids LM Studio lists in its "Invalid model identifier ... (e.g., a, b)" message."""
    found = _EXAMPLE_IDS.search(message)
    if not found:
        return []
    return [p.strip().strip('"') for p in found.group(1).split(",") if p.strip()]


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _first_number(patterns: tuple[re.Pattern[str], ...], message: str) -> int | None:
    for pattern in patterns:
        found = pattern.search(message)
        if found:
            return int(found.group(1))
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def context_sizes(body: Any, message: str) -> tuple[int | None, int | None]:
    """``(prompt tokens, loaded context length)`` as a context-overflow answer gives them (None when it does not)."""
    err = body.get("error") if isinstance(body, dict) else None
    fields = err if isinstance(err, dict) else {}
    prompt = _count(fields.get("n_prompt_tokens")) or _first_number(_PROMPT_SIZE, message)
    context = _count(fields.get("n_ctx")) or _first_number(_CONTEXT_SIZE, message)
    return prompt, context


def fitting_context_length(
    prompt_tokens: int | None, max_tokens: int | None, context_length: int | None, max_context_length: int | None
) -> int | None:
    """A context length that holds the prompt and the answer's budget: the next power of two above them (above the
    loaded context too), at most the model's maximum; None when nothing is known or even the maximum is too small."""
    if prompt_tokens is not None:
        needed = prompt_tokens + (max_tokens if max_tokens is not None and max_tokens > 0 else 0)
    elif context_length is not None:
        needed = context_length
    else:
        return None
    fit = 1 << needed.bit_length()
    while context_length is not None and fit <= context_length:
        fit <<= 1
    if max_context_length is not None and fit > max_context_length:
        return max_context_length if needed < max_context_length else None
    return fit


def context_overflow_error(
    *,
    model: str | None,
    prompt_tokens: int | None,
    context_length: int | None,
    max_tokens: int | None,
    max_context_length: int | None = None,
    **fields: Unpack[APIErrorFields],
) -> ContextLengthExceededError:
    """The context-overflow error with the real numbers, and a context length that would fit."""
    who = f'"{model}"' if model else "the model"
    size = f" ({prompt_tokens} tokens)" if prompt_tokens is not None else ""
    loaded = f", loaded with a context length of {context_length} tokens" if context_length is not None else ""
    budget = f" plus max_tokens={max_tokens}" if max_tokens is not None and max_tokens > 0 else ""
    fit = fitting_context_length(prompt_tokens, max_tokens, context_length, max_context_length)
    text = [f"The prompt{size}{budget} does not fit in the context of {who}{loaded}."]
    if fit is not None and model:
        text.append(
            f"Shorten the prompt or conversation, or reload the model with a larger context: `lms load {model} "
            f'--context-length {fit}` or client.load_model("{model}", context_length={fit}).'
        )
    elif fit is not None:
        text.append(
            f"Shorten the prompt or conversation, or reload the model with a context length of {fit} (`lms load` "
            f"with --context-length {fit}, or load_model(..., context_length={fit}))."
        )
    elif max_context_length is not None and prompt_tokens is not None:
        text.append(
            f"Even the model's largest context ({max_context_length} tokens) is too small: shorten the prompt or "
            "conversation, or lower max_tokens."
        )
    else:
        text.append(
            "Shorten the prompt or conversation, or reload the model with a larger context length (`lms load` with "
            "--context-length, or load_model(..., context_length=...))."
        )
    said = fields.get("server_message", "").strip()
    quoted = f' Server said: "{said}"' if said else ""
    return ContextLengthExceededError(
        " ".join(text) + quoted,
        model=model,
        prompt_tokens=prompt_tokens,
        context_length=context_length,
        max_tokens=max_tokens,
        max_context_length=max_context_length,
        suggested_context_length=fit,
        **fields,
    )


def not_loaded_error(err: LMStudioAPIError, model: str, base_url: str) -> NoModelLoadedError:
    """``err`` (an unknown model, or none loaded) said as what it is: ``model`` is downloaded, but not loaded."""
    return NoModelLoadedError(
        f'"{model}" is downloaded but not loaded on LM Studio at {base_url}, and just-in-time loading is off: load '
        f'it with `lms load {model}` or client.load_model("{model}") (or in the Developer tab), or turn on '
        "just-in-time loading in the server settings.",
        status_code=err.status_code,
        model=model,
        downloaded=True,
        body=err.body,
        server_message=err.server_message,
        partial=err.partial,
        retry_after=err.retry_after,
    )


def classify_error(
    *,
    status_code: int,
    body: Any,
    message: str,
    code: str | None,
    base_url: str,
    method: str,
    path: str,
    model: str | None = None,
    available: list[str] | None = None,
    retry_after: str | None = None,
    partial: ChatResult | None = None,
    max_tokens: int | None = None,
    token_sent: bool = False,
) -> LMStudioAPIError:
    """Map one error answer to the right exception with an actionable message.

    ``message`` is the server's text; the exception's message adds what to do. ``available`` (model ids) is used
    for unknown-model errors when given, else the ids LM Studio lists in its own message. ``max_tokens``: what the
    request asked for (a context overflow's advice counts it); ``token_sent``: whether the request carried a token
    (a 401 then means it was refused, not missing).
    """
    low = message.lower()
    quoted = f' Server said: "{message.strip()}"' if message.strip() else ""
    kw: dict[str, Any] = {"status_code": status_code, "body": body, "server_message": message, "partial": partial}

    if status_code == 401 or (code or "") == "invalid_api_key":
        if token_sent:
            return AuthenticationError(
                f"LM Studio at {base_url} answered HTTP {status_code} to the API token sent: the token was refused. "
                "Check LM_API_TOKEN (or the api_key you passed) against the tokens in LM Studio's Developer settings "
                "(Server Settings → Require Authentication → Manage Tokens); it may have been deleted or mistyped.",
                token_sent=True,
                **kw,
            )
        return AuthenticationError(
            f"LM Studio at {base_url} requires an API token (HTTP {status_code}) and none was sent. Set the "
            "LM_API_TOKEN environment variable or pass api_key=...; create a token in LM Studio's Developer settings "
            "(Server Settings → Require Authentication).",
            token_sent=False,
            **kw,
        )
    if is_unexpected_endpoint(message):
        return EndpointNotSupportedError(
            f'The server at {base_url} does not support {method} {path} (it answered "Unexpected endpoint or '
            'method"). This needs a newer LM Studio: update it, or use the OpenAI-compatible /v1 routes.',
            **kw,
        )
    if "no models loaded" in low or "no model loaded" in low:
        how = (f'`lms load {model}` or client.load_model("{model}")' if model
               else "`lms load` and the model's id, or client.load_model()")
        return NoModelLoadedError(
            f"No model is loaded on LM Studio at {base_url}, and it did not load one just in time (just-in-time "
            f"loading is off). Load one in the Developer tab, with {how}; or turn on just-in-time loading in the "
            "server settings." + quoted,
            model=model,
            **kw,
        )
    if (
        code == "model_not_found"
        or "invalid model identifier" in low
        or "model not found" in low
        or ("model" in low and "not found" in low)
    ):
        if model is None:
            found = _QUOTED_MODEL.search(message)
            model = found.group(1) if found else None
        ids = available if available is not None else ids_from_message(message)
        return ModelNotFoundError(model_not_found_message(model, ids, base_url), model=model, available=ids, **kw)
    if "failed to load" in low or "error loading model" in low:
        return ModelLoadError(
            "LM Studio could not load the model: it may not fit in memory, or its file is damaged. Try a smaller "
            "quantization or context length, or unload other models (`lms unload --all`)." + quoted,
            **kw,
        )
    if is_context_error(message, code):
        prompt_tokens, context_length = context_sizes(body, message)
        return context_overflow_error(
            model=model, prompt_tokens=prompt_tokens, context_length=context_length, max_tokens=max_tokens, **kw
        )
    if "support images" in low or "image input" in low:
        return InvalidRequestError(
            f"The model{f' {model}' if model else ''} on {base_url} cannot see images: send them to a vision model "
            "(list_models() marks them: type 'vlm', or 'vision' in capabilities), or leave images= out." + quoted,
            **kw,
        )
    if "response_format" in low or "validation error" in low:  # the latter: pydantic-based servers (llama.cpp's)
        return InvalidRequestError(
            (
                "LM Studio rejected response_format: use {'type': 'json_schema', 'json_schema': {...}} or "
                "{'type': 'text'}."
                if "response_format" in low
                else f"The server at {base_url} rejected a request parameter (wrong type or value): check the "
                "parameters named in its message."
            )
            + quoted,
            **kw,
        )
    if status_code == 429:
        return RateLimitError(
            f"LM Studio at {base_url} is rate limiting requests (HTTP 429). Wait and retry, or send fewer requests "
            "at once." + quoted,
            retry_after=retry_after_seconds(retry_after),
            **kw,
        )
    if status_code == 503:
        return ServerBusyError(
            f"LM Studio at {base_url} is busy (HTTP 503), often while loading a model. Retry in a moment." + quoted,
            retry_after=retry_after_seconds(retry_after),
            **kw,
        )
    if status_code == 404 and method and path:
        return EndpointNotSupportedError(
            f"The server at {base_url} has no {method} {path} (HTTP 404): it may be an older LM Studio or another "
            "OpenAI-compatible server." + quoted,
            **kw,
        )
    if status_code >= 500:
        return ServerError(
            f"LM Studio at {base_url} failed with HTTP {status_code}. Check the server log in LM Studio's Developer "
            "tab; retrying may help." + quoted,
            **kw,
        )
    return LMStudioAPIError(
        f"LM Studio at {base_url} rejected {method} {path} (HTTP {status_code})." + quoted,
        **kw,
    )
