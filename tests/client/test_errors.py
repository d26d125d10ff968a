"""Error classification and messages, independent of HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lm_notebook.client import errors
from lm_notebook.client.error_classification import classify_error, ids_from_message, parse_error_body
from lm_notebook.client.errors import ContextLengthExceededError, LMStudioAPIError, ModelNotFoundError, suggest_model
from lm_notebook.client.transport_errors import translate_transport_error
from lm_notebook.client.types import ChatResult

IDS = ["qwen2.5-7b-instruct", "google/gemma-3-4b", "openai/gpt-oss-20b", "deepseek-r1-distill-qwen-7b",
       "text-embedding-nomic-embed-text-v1.5"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("qwen-7b", "qwen2.5-7b-instruct"), ("qwen2.5-7b", "qwen2.5-7b-instruct"), ("gemma", "google/gemma-3-4b"),
     ("GPT-OSS", "openai/gpt-oss-20b"), ("nomic", "text-embedding-nomic-embed-text-v1.5"), ("zzz", None)],
)
def test_did_you_mean(typed: str, meant: str | None) -> None:
    assert suggest_model(typed, IDS) == meant


def test_both_error_body_shapes_and_plain_text() -> None:
    assert parse_error_body('{"error": "text"}')[1:] == ("text", None)
    body, message, code = parse_error_body('{"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}')
    assert (message, code) == ("m", "c") and body["error"]["param"] == "p"
    assert parse_error_body("Internal Server Error")[1:] == ("Internal Server Error", None)
    assert parse_error_body("")[1:] == ("", None)


def test_ids_listed_in_lm_studios_message() -> None:
    msg = 'Invalid model identifier "x". Please specify a valid downloaded model (e.g., a, b/c, d@q4_k_m).'
    assert ids_from_message(msg) == ["a", "b/c", "d@q4_k_m"]


def test_context_message_variants() -> None:
    for text in ("Trying to keep the first 15857 tokens when context the overflows.",
                 "Input does not fit in context length.",
                 "the request exceeds the available context size, try increasing it"):
        err = classify_error(status_code=400, body=None, message=text, code=None, base_url="u", method="POST",
                             path="/v1/chat/completions")
        assert isinstance(err, ContextLengthExceededError), text


def test_unknown_400_is_a_plain_api_error_with_the_server_text() -> None:
    err = classify_error(status_code=400, body={"error": "weird"}, message="weird", code=None, base_url="u",
                         method="POST", path="/v1/chat/completions")
    assert type(err) is LMStudioAPIError and '"weird"' in err.message and err.status_code == 400


def test_model_not_found_without_any_ids_says_how_to_download() -> None:
    err = classify_error(status_code=404, body=None, message='Model "m" not found', code=None, base_url="u",
                         method="POST", path="/v1/chat/completions", available=[])
    assert isinstance(err, ModelNotFoundError) and "lms get" in err.message


def test_a_pydantic_validation_error_is_an_invalid_request_not_a_server_fault() -> None:
    from lm_notebook.client.errors import InvalidRequestError

    text = "1 validation error for CreateChatCompletionRequest\ntemperature\n  Input should be a valid number"
    err = classify_error(status_code=500, body=None, message=text, code=None, base_url="u", method="POST",
                         path="/v1/chat/completions")
    assert isinstance(err, InvalidRequestError) and "rejected a request parameter" in err.message


# --- every error class: its fields are set where it is made, and str(err) is its message ---------------------------

URL = "http://studio.local:1234"


def _answer(status: int, message: str, **kw: Any) -> LMStudioAPIError:
    return classify_error(status_code=status, body={"error": message}, message=message, code=None, base_url=URL,
                          method="POST", path="/v1/chat/completions", **kw)


def one_of_each() -> list[errors.LMStudioError]:
    """An error of every class, each made the way the package makes it."""
    partial = ChatResult(content="so far", streaming=True)
    translate = translate_transport_error
    return [
        translate(httpx.ConnectError("connection refused"), base_url=URL, read_timeout=5),
        translate(httpx.ReadTimeout("timed out"), base_url=URL, read_timeout=5, partial=partial, streaming=True),
        translate(httpx.LocalProtocolError("illegal header"), base_url=URL, read_timeout=5),
        translate(httpx.ReadError("reset"), base_url=URL, read_timeout=5, partial=partial, streaming=True),
        errors.NoCurrentModelError(),
        errors.LMStudioRequestError("temperature must be a number ≥ 0, not -1."),
        _answer(401, "An LM Studio API token is required"),
        _answer(404, 'Model "qwen-7b" not found', available=["qwen2.5-7b-instruct"]),
        _answer(400, 'Invalid model identifier "x" (e.g., a, b)'),  # the ids from the server's own message
        _answer(400, "No models loaded. Please load a model."),
        _answer(400, 'Failed to load model "x". Error: Error loading model.'),
        _answer(400, "Input does not fit in context length.", partial=partial),
        _answer(400, "'response_format.type' must be 'json_schema' or 'text'"),
        _answer(429, "Too many requests", retry_after="3"),
        _answer(503, "busy"),
        _answer(500, "boom"),
        _answer(200, "Unexpected endpoint or method. (GET /api/v1/models)"),
        _answer(418, "I'm a teapot"),
        errors.needs_newer_lmstudio("load_model()", _answer(404, "Not Found"), URL, "Load it with `lms load m`."),
        errors.ClientClosedError("LMStudioClient", URL, partial=partial),
    ]


def error_classes() -> set[type[errors.LMStudioError]]:
    return {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.LMStudioError)}


def fields_of(cls: type[errors.LMStudioError]) -> set[str]:
    """Every field the class declares, its bases' included."""
    return {name for base in cls.__mro__ if issubclass(base, errors.LMStudioError)
            for name in vars(base).get("__annotations__", {})}


def test_every_error_class_is_made_somewhere_here() -> None:
    assert {type(err) for err in one_of_each()} == error_classes()


@pytest.mark.parametrize("err", one_of_each(), ids=lambda e: type(e).__name__)
def test_every_field_is_set_and_str_is_the_message(err: errors.LMStudioError) -> None:
    assert isinstance(err.message, str) and err.message
    assert str(err) == err.message
    for name in fields_of(type(err)):
        assert hasattr(err, name), f"{type(err).__name__}.{name} is not set"
    if isinstance(err, errors.ModelNotFoundError):
        assert isinstance(err.available, list) and err.available and err.model
    if isinstance(err, (errors.RateLimitError,)):
        assert err.retry_after == 3.0


def test_str_follows_the_message() -> None:
    err = errors.NoCurrentModelError("No model selected: pick one in the Model list.")
    assert str(err) == err.message == "No model selected: pick one in the Model list."
    err.message = "changed"
    assert str(err) == "changed"
