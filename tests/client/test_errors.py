"""Error classification and messages; and each error's fields, as the client raises it over loopback HTTP against
the fake server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from lm_notebook import (
    AuthenticationError,
    LMStudioClient,
    LMStudioStreamError,
    NoModelLoadedError,
    RateLimitError,
)
from lm_notebook.client import errors
from lm_notebook.client.downloads import DownloadJob
from lm_notebook.client.error_classification import classify_error, ids_from_message, parse_error_body
from lm_notebook.client.errors import ContextLengthExceededError, LMStudioAPIError, ModelNotFoundError, suggest_model
from lm_notebook.client.transport_errors import translate_transport_error
from lm_notebook.client.types import ChatResult
from lm_notebook.testing import MockLMStudioServer, ModelSpec

E = TypeVar("E", bound=errors.LMStudioError)

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
        _broken_answer(),
        errors.ModelDownloadError("LM Studio could not download m.", model="m", job_id="job_1"),
        errors.DownloadPausedError("The download of m is paused.", job=DownloadJob("m", "paused", job_id="job_2")),
    ]


def _broken_answer() -> errors.AnswerFormatError:
    from lm_notebook.client.schemas import AnswerSchema

    schema = AnswerSchema.of({"type": "object", "properties": {"year": {"type": "integer"}}, "required": ["year"]})
    try:
        schema.parsed(ChatResult(content='{"year": "soon"}'))
    except errors.AnswerFormatError as err:
        return err
    raise AssertionError("the answer should have broken the schema")


def error_classes() -> set[type[errors.LMStudioError]]:
    return {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.LMStudioError)}


def test_every_error_class_is_made_somewhere_here() -> None:
    assert {type(err) for err in one_of_each()} == error_classes()


@pytest.mark.parametrize("err", one_of_each(), ids=lambda e: type(e).__name__)
def test_str_is_the_message(err: errors.LMStudioError) -> None:
    assert isinstance(err.message, str) and err.message
    assert str(err) == err.message


# --- each error's fields carry the real values where the client raises it (loopback HTTP, the fake server) -----

QWEN, GEMMA = "qwen2.5-7b-instruct", "google/gemma-3-4b"


@pytest.fixture
def fake() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=[ModelSpec(QWEN, loaded=True, context_length=4096), ModelSpec(GEMMA)]) as server:
        yield server


def raised(expected: type[E], call: Callable[[], object]) -> E:
    with pytest.raises(expected) as info:
        call()
    assert type(info.value) is expected and str(info.value) == info.value.message
    return info.value


def test_model_not_found_names_the_model_asked_for_and_the_ids_the_server_has(fake: MockLMStudioServer) -> None:
    with LMStudioClient(fake.url) as client:
        err = raised(ModelNotFoundError, lambda: client.chat("hi", model="qwen-7b"))
    assert (err.model, err.available, err.status_code) == ("qwen-7b", [QWEN, GEMMA], 400)


def test_authentication_error_says_whether_a_token_was_sent() -> None:
    with MockLMStudioServer(auth_token="sk-lm-right:secret") as server:
        with LMStudioClient(server.url) as client:
            none_sent = raised(AuthenticationError, client.list_models)
        with LMStudioClient(server.url, api_key="sk-lm-wrong:nope") as client:
            refused = raised(AuthenticationError, client.list_models)
    assert (none_sent.token_sent, none_sent.status_code) == (False, 401)
    assert (refused.token_sent, refused.status_code) == (True, 401)


def test_no_model_loaded_says_the_model_is_downloaded() -> None:
    with MockLMStudioServer(models=[ModelSpec(GEMMA)], jit_loading=False) as server, \
            LMStudioClient(server.url) as client:
        err = raised(NoModelLoadedError, lambda: client.chat("hi", model=GEMMA))
    assert (err.model, err.downloaded) == (GEMMA, True)


def test_context_length_exceeded_carries_the_real_numbers(fake: MockLMStudioServer) -> None:
    with LMStudioClient(fake.url) as client:
        err = raised(ContextLengthExceededError, lambda: client.chat("word " * 5000, model=QWEN, max_tokens=100))
    assert (err.model, err.prompt_tokens, err.context_length, err.max_context_length, err.max_tokens,
            err.suggested_context_length) == (QWEN, 5007, 4096, 32768, 100, 8192)


def test_a_stream_error_says_whether_the_answer_was_dropped(fake: MockLMStudioServer) -> None:
    with LMStudioClient(fake.url) as client:
        fake.set_fault("drop", model=QWEN, after_chunks=2, times=1)
        dropped = raised(LMStudioStreamError, lambda: client.stream_chat("hi", model=QWEN).text())
        fake.set_fault("stream_error", model=QWEN, after_chunks=2, times=1)
        reported = raised(LMStudioStreamError, lambda: client.stream_chat("hi", model=QWEN).text())
    assert dropped.dropped is True and reported.dropped is False
    for err in (dropped, reported):
        assert err.partial is not None and err.partial_content == err.partial.content != ""


def test_rate_limit_error_carries_the_servers_retry_after(fake: MockLMStudioServer) -> None:
    with LMStudioClient(fake.url) as client:
        fake.set_fault("429", model=QWEN, times=1, retry_after=3)
        err = raised(RateLimitError, lambda: client.chat("hi", model=QWEN))
    assert (err.retry_after, err.status_code) == (3.0, 429)


def test_str_follows_the_message() -> None:
    err = errors.NoCurrentModelError("No model selected: pick one in the Model list.")
    assert str(err) == err.message == "No model selected: pick one in the Model list."
    err.message = "changed"
    assert str(err) == "changed"
