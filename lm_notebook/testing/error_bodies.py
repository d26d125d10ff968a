"""LM Studio's error answers, word for word, in the 0.3.x (string) and 0.4.x (object) styles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lm_notebook.testing.faults import ErrorStyle
from lm_notebook.testing.wire import dump_json

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> ErrorReply:
    return ErrorReply(status, dump_json(body), JSON, headers or [])


def _object(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
            code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def unexpected_endpoint(method: str, path: str) -> ErrorReply:
    # LM Studio answers unknown routes with 200, which clients must treat as an error
    return _json(200, {"error": f"Unexpected endpoint or method. ({method} {path})"})


def no_models_loaded(style: ErrorStyle) -> ErrorReply:
    message = "No models loaded. Please load a model in the developer page or use the 'lms load' command."
    if style == "0.3":
        return _json(404, {"error": message})
    return _json(400, _object(message, param="model"))


def unknown_model(model: str, available: Sequence[str], style: ErrorStyle) -> ErrorReply:
    message = (f'Invalid model identifier "{model}". Please specify a valid downloaded model '
               f"(e.g., {', '.join(available)}).")
    if style == "0.3":
        return ErrorReply(404, message.encode(), TEXT)  # older builds: plain text
    return _json(400, _object(message, param="model", code="model_not_found"))


def wrong_model_type(model: str, wanted: str, style: ErrorStyle) -> ErrorReply:
    # inferred: LM Studio refuses an embedding model for chat and an llm for embeddings
    message = f'Model "{model}" is not {wanted} model. Please specify a model of the right type.'
    return _json(400, {"error": message} if style == "0.3" else _object(message, param="model"))


def load_failed(model: str) -> ErrorReply:
    return _json(400, {"error": f'Failed to load model "{model}". Error: Error loading model.'})


def context_overflow(prompt_tokens: int, context_length: int) -> ErrorReply:
    return _json(400, {"error": (
        f"Trying to keep the first {prompt_tokens} tokens when context the overflows. However, the model is loaded "
        f"with context length of only {context_length} tokens, which is not enough. Try to load the model with a "
        "larger context length, or provide a shorter input"
    )})


def context_overflow_event(prompt_tokens: int, context_length: int) -> dict[str, Any]:
    """The body of the ``event: error`` a stream carries instead of content (0.4.21)."""
    message = (f"Input does not fit in context length. The input has {prompt_tokens} tokens, but the model is "
               f"loaded with context length of only {context_length} tokens. Try to load the model with a larger "
               "context length, or provide a shorter input.")
    return {"error": {"message": message}, "message": message}


def stream_fault_event() -> dict[str, Any]:
    message = "The model crashed while generating. Error: Unknown error."
    return {"error": {"message": message}, "message": message}


def json_object_rejected() -> ErrorReply:
    return _json(400, {"error": "'response_format.type' must be 'json_schema' or 'text'"})


def bad_request(message: str, style: ErrorStyle) -> ErrorReply:
    return _json(400, {"error": message} if style == "0.3" else _object(message))


def no_vision() -> ErrorReply:
    # LM Studio's words for images sent to a model without vision (seen on 0.3.x REST, string form)
    return _json(400, {"error": "Model does not support images. Please use a model that does."})


def bad_image(problem: str, style: ErrorStyle) -> ErrorReply:
    # inferred: a data URL LM Studio cannot decode is a 400 naming the part
    return bad_request(f"Invalid image in the request: {problem}", style)


def unauthorized() -> ErrorReply:
    return _json(401, {"error": {
        "type": "invalid_request", "code": "invalid_api_key",
        "message": "An LM Studio API token is required to make requests to this server. Provide it in the "
                   "Authorization header as 'Bearer <token>'.",
    }})


def server_error() -> ErrorReply:
    return _json(500, {"error": {"message": "Internal server error: the model crashed (injected fault).",
                                 "type": "server_error", "param": None, "code": None}})


def rate_limited(retry_after: float | None) -> ErrorReply:
    headers = []
    if retry_after is not None:
        headers.append(("Retry-After", f"{retry_after:g}"))
    return _json(429, _object("Too many requests: the server is busy. Retry later.", type_="rate_limit_error"),
                 headers)


def not_found_instance(instance_id: str, style: ErrorStyle) -> ErrorReply:
    message = f'No loaded model instance with identifier "{instance_id}".'
    return _json(400, {"error": message} if style == "0.3" else _object(message, param="instance_id"))
