"""Error classification and messages, independent of HTTP."""

from __future__ import annotations

import pytest

from lm_notebook.client.errors import (
    ContextLengthExceededError,
    LMStudioAPIError,
    ModelNotFoundError,
    classify_error,
    ids_from_message,
    parse_error_body,
    suggest_model,
)

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
