"""One exception tree for everything that can go wrong talking to LM Studio.

::

    LMStudioError
    ├── LMStudioConnectionError        server not reachable (refused, DNS, connect timeout)
    ├── LMStudioTimeoutError           no answer within the read timeout (e.g. a very slow model load)
    ├── NoCurrentModelError            the client has no model to send to (client-side)
    ├── LMStudioRequestError           a request LM Studio would reject, caught before sending (ValueError too)
    ├── LMStudioStreamError            the stream broke or carried an error after the 200 (keeps the partial text)
    └── LMStudioAPIError               the server answered with an error (status, parsed body)
        ├── AuthenticationError        401: a token is required or wrong
        ├── ModelNotFoundError         unknown model id (lists the available ids)
        ├── NoModelLoadedError         nothing loaded and just-in-time loading off
        ├── ModelLoadError             the model failed to load
        ├── ContextLengthExceededError the prompt does not fit the loaded context
        ├── RateLimitError             429 (``retry_after`` seconds when the server says)
        ├── ServerBusyError            503
        ├── InvalidRequestError        400 for a parameter LM Studio rejects
        ├── ServerError                other 5xx
        └── EndpointNotSupportedError  the server does not have this route (too old, or not LM Studio)

Every error may carry ``partial`` (the :class:`~lm_notebook.types.ChatResult` received before it happened), so nothing
already streamed is lost. This module is stdlib only; HTTP-library errors are translated in ``client.py``.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lm_notebook.client.types import ChatResult

START_SERVER_HINT = "Start it in the Developer tab or with `lms server start`."


class LMStudioError(Exception):
    """Root of every error this package raises."""

    partial: ChatResult | None = None

    def __init__(self, message: str, *, partial: ChatResult | None = None) -> None:
        super().__init__(message)
        self.message = message
        if partial is not None:
            self.partial = partial

    @property
    def partial_content(self) -> str:
        """The answer text received before the error ("" when none)."""
        return self.partial.content if self.partial is not None else ""


class LMStudioConnectionError(LMStudioError):
    """LM Studio is not reachable at the base URL."""

    def __init__(
        self, base_url: str, detail: str = "", *, partial: ChatResult | None = None, message: str | None = None
    ) -> None:
        self.base_url = base_url
        why = f" ({detail})" if detail else ""
        super().__init__(
            message or f"LM Studio is not reachable at {base_url}{why} — is the server running? {START_SERVER_HINT}",
            partial=partial,
        )


class LMStudioTimeoutError(LMStudioError):
    """The server took longer than the read timeout to answer."""


class NoCurrentModelError(LMStudioError):
    """No model was given and none is selected."""

    def __init__(self) -> None:
        super().__init__(
            "No model selected: call set_current_model('model-id') (or pass model=...); "
            "list_models() shows the ids LM Studio has."
        )


class LMStudioRequestError(LMStudioError, ValueError):
    """A request that LM Studio would reject, refused before anything is sent."""


class LMStudioStreamError(LMStudioError):
    """The stream ended with an error after the server had answered 200.

    ``dropped`` is True when the connection broke or the server cut the answer short (worth retrying), False when
    the server sent an error or a malformed chunk (a retry would fail the same way).
    """

    dropped: bool = False


class LMStudioAPIError(LMStudioError):
    """The server answered with an error status (or a 200 whose body is an error)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        server_message: str = "",
        partial: ChatResult | None = None,
    ) -> None:
        super().__init__(message, partial=partial)
        self.status_code = status_code
        self.body = body
        self.server_message = server_message


class AuthenticationError(LMStudioAPIError):
    """LM Studio requires an API token, or the one sent is wrong."""


class ModelNotFoundError(LMStudioAPIError):
    """The requested model id is not one LM Studio knows."""

    available: list[str]
    model: str | None


class NoModelLoadedError(LMStudioAPIError):
    """No model is loaded (and just-in-time loading is off)."""


class ModelLoadError(LMStudioAPIError):
    """LM Studio tried to load the model and failed."""


class ContextLengthExceededError(LMStudioAPIError):
    """The prompt (and history) does not fit in the model's loaded context length."""


class RateLimitError(LMStudioAPIError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if any."""

    retry_after: float | None = None


class ServerBusyError(LMStudioAPIError):
    """503: the server is busy (often loading a model); try again shortly."""

    retry_after: float | None = None


class InvalidRequestError(LMStudioAPIError):
    """400: LM Studio rejected a request parameter (e.g. an unsupported response_format)."""


class ServerError(LMStudioAPIError):
    """A 5xx answer other than 503."""


class EndpointNotSupportedError(LMStudioAPIError):
    """The server does not have this route: an older LM Studio, or another OpenAI-compatible server."""


# --- classification -------------------------------------------------------------------------------------------

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
_QUOTED_MODEL = re.compile(r'identifier\s+"([^"]*)"')


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


def _shared_start(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def suggest_model(model: str, available: list[str]) -> str | None:
    """The closest available id to ``model`` (for "did you mean"), or None.

    Similarity, plus a bonus for a shared start: ``qwen-7b`` means ``qwen2.5-7b-instruct`` more than
    ``deepseek-r1-distill-qwen-7b``, though the latter contains it.
    """
    wanted = model.lower().strip()
    if not wanted or not available:
        return None

    def score(candidate: str) -> float:
        low = candidate.lower()
        shared = _shared_start(wanted, low)
        contains = 0.3 if (wanted in low or low in wanted) else 0.0
        return difflib.SequenceMatcher(None, wanted, low).ratio() + 0.5 * shared / len(wanted) + contains

    best = max(available, key=score)
    return best if score(best) >= 0.5 else None


def model_not_found_message(model: str | None, available: list[str], base_url: str) -> str:
    name = f'"{model}"' if model else "The requested model"
    shown = ", ".join(available[:20]) + (" …" if len(available) > 20 else "")
    parts = [f"Model {name} is not available on LM Studio at {base_url}."]
    if available:
        parts.append(f"Available: {shown}.")
        guess = suggest_model(model or "", available)
        if guess:
            parts.append(f'Did you mean "{guess}"?')
        parts.append("Pick one with set_current_model(...) or download the model in LM Studio.")
    else:
        parts.append("LM Studio lists no models: download one in LM Studio (Discover tab) or with `lms get`.")
    return " ".join(parts)


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
) -> LMStudioAPIError:
    """Map one error answer to the right exception with an actionable message.

    ``message`` is the server's text; the exception's message adds what to do. ``available`` (model ids) is used
    for unknown-model errors when given, else the ids LM Studio lists in its own message.
    """
    low = message.lower()
    quoted = f' Server said: "{message.strip()}"' if message.strip() else ""
    kw: dict[str, Any] = {"status_code": status_code, "body": body, "server_message": message, "partial": partial}

    if status_code == 401 or (code or "") == "invalid_api_key":
        return AuthenticationError(
            f"LM Studio at {base_url} requires an API token (HTTP {status_code}). Set the LM_API_TOKEN environment "
            "variable or pass api_key=...; create a token in LM Studio's Developer settings (Server Settings → "
            "Require Authentication).",
            **kw,
        )
    if is_unexpected_endpoint(message):
        return EndpointNotSupportedError(
            f'The server at {base_url} does not support {method} {path} (it answered "Unexpected endpoint or '
            'method"). This needs a newer LM Studio: update it, or use the OpenAI-compatible /v1 routes.',
            **kw,
        )
    if "no models loaded" in low or "no model loaded" in low:
        return NoModelLoadedError(
            "No model is loaded in LM Studio. Load one in the Developer tab, with `lms load <model>`, or with "
            "client.load_model('<model>'); or turn on just-in-time loading in the server settings." + quoted,
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
        err = ModelNotFoundError(model_not_found_message(model, ids, base_url), **kw)
        err.available = ids
        err.model = model
        return err
    if "failed to load" in low or "error loading model" in low:
        return ModelLoadError(
            "LM Studio could not load the model: it may not fit in memory, or its file is damaged. Try a smaller "
            "quantization or context length, or unload other models (`lms unload --all`)." + quoted,
            **kw,
        )
    if is_context_error(message, code):
        return ContextLengthExceededError(
            "The prompt does not fit in the model's context length. Shorten the prompt or conversation, or reload "
            "the model with a larger context (`lms load <model> --context-length 16384`, or "
            "client.load_model('<model>', context_length=16384))." + quoted,
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
        err429 = RateLimitError(
            f"LM Studio at {base_url} is rate limiting requests (HTTP 429). Wait and retry, or send fewer requests "
            "at once." + quoted,
            **kw,
        )
        err429.retry_after = retry_after_seconds(retry_after)
        return err429
    if status_code == 503:
        err503 = ServerBusyError(
            f"LM Studio at {base_url} is busy (HTTP 503), often while loading a model. Retry in a moment." + quoted,
            **kw,
        )
        err503.retry_after = retry_after_seconds(retry_after)
        return err503
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


def error_text(error: BaseException) -> str:
    """The message a user can act on (the package's errors carry one)."""
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    return f"{type(error).__name__}: {error}"
