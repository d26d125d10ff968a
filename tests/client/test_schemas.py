"""``schema=``: a pydantic model or a JSON-schema dict sent as LM Studio's ``response_format``, the answer parsed and
validated, over loopback HTTP against the fake server (sync and async twins); llama.cpp's form after a refusal
(httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import httpx
import jsonschema
import pytest
from client_doubles import DONE, Harness, chunk, completion, sse_response
from pydantic import BaseModel

from lm_notebook import AnswerFormatError, AsyncLMStudioClient, LMStudioClient, LMStudioError, LMStudioRequestError
from lm_notebook.client.schemas import AnswerSchema, json_path, parse_json_answer
from lm_notebook.testing import MockLMStudioServer

MODEL = "qwen2.5-7b-instruct"


class Address(BaseModel):
    city: str
    postcode: str


class Person(BaseModel):
    name: str
    age: int
    role: Literal["author", "reviewer"]
    tags: list[str]
    address: Address
    nickname: str | None = None


BOOK = {
    "title": "Book",
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "year": {"type": "integer", "minimum": 1450, "maximum": 2030},
        "genre": {"enum": ["novel", "essay", "poetry"]},
        "authors": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}},
                                               "required": ["name"]}, "minItems": 1},
        "in_print": {"type": "boolean"},
    },
    "required": ["title", "year", "genre", "authors"],
    "additionalProperties": False,
}


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(mode: str, url: str, method: str, *args: Any, **kw: Any) -> Any:
    """``client.method(*args, **kw)`` on the sync or async twin (a stream is read to its result)."""
    if mode == "sync":
        with LMStudioClient(url, model=MODEL) as client:
            if method == "stream_chat":
                with client.stream_chat(*args, **kw) as stream:
                    pieces = list(stream)
                return pieces, stream.result()
            return getattr(client, method)(*args, **kw)

    async def run() -> Any:
        async with AsyncLMStudioClient(url, model=MODEL) as client:
            if method == "stream_chat":
                async with client.stream_chat(*args, **kw) as stream:
                    pieces = [p async for p in stream]
                return pieces, await stream.result()
            return await getattr(client, method)(*args, **kw)

    return asyncio.run(run())


def test_a_pydantic_schema_is_sent_as_json_schema_and_parsed(lmstudio_mock: MockLMStudioServer, mode: str) -> None:
    result = call(mode, lmstudio_mock.url, "chat", "Who wrote it?", schema=Person)
    assert isinstance(result.parsed, Person)
    assert result.parsed.role in ("author", "reviewer") and isinstance(result.parsed.address, Address)
    assert Person.model_validate_json(result.content) == result.parsed
    sent = lmstudio_mock.requests[-1].json["response_format"]
    assert sent == {"type": "json_schema",
                    "json_schema": {"name": "Person", "strict": True, "schema": Person.model_json_schema()}}


def test_a_dict_schema_is_validated_and_parsed_to_the_value(lmstudio_mock: MockLMStudioServer, mode: str) -> None:
    result = call(mode, lmstudio_mock.url, "chat", "A book, please.", schema=BOOK)
    assert result.parsed == json.loads(result.content)
    jsonschema.validate(result.parsed, BOOK)
    assert lmstudio_mock.requests[-1].json["response_format"]["json_schema"]["name"] == "Book"


def test_a_streamed_schema_answer_grows_as_json_then_parses(lmstudio_mock: MockLMStudioServer, mode: str) -> None:
    pieces, result = call(mode, lmstudio_mock.url, "stream_chat", "Who wrote it?", schema=Person)
    assert len(pieces) > 10 and "".join(pieces) == result.content  # the JSON came in many pieces
    assert isinstance(result.parsed, Person)


@pytest.mark.parametrize("schema", [Person, BOOK], ids=["pydantic", "dict"])
def test_an_answer_that_breaks_the_schema_is_an_answer_format_error(
    lmstudio_mock: MockLMStudioServer, mode: str, schema: Any
) -> None:
    lmstudio_mock.set_fault("break_schema", times=2)
    for method in ("chat", "stream_chat"):
        with pytest.raises(AnswerFormatError) as info:
            call(mode, lmstudio_mock.url, method, "Who wrote it?", schema=schema)
        err = info.value
        missing = "name" if schema is Person else "title"
        assert isinstance(err, LMStudioError) and isinstance(err, ValueError) and str(err) == err.message
        assert err.raw == err.result.content and missing not in json.loads(err.raw)
        # pydantic points at the missing field, jsonschema at the object missing it
        assert err.path == ("$.name" if schema is Person else "$") and "required" in err.validation_error.lower()
        assert f"breaks the schema {'Person' if schema is Person else 'Book'} at {err.path}" in err.message


def test_the_path_points_into_nested_json() -> None:
    schema = AnswerSchema.of(Person)
    from lm_notebook import ChatResult

    bad = {"name": "Ada", "age": 36, "role": "author", "tags": ["x", 3], "address": {"city": "London"}}
    with pytest.raises(AnswerFormatError) as info:
        schema.parsed(ChatResult(json.dumps(bad)))
    assert info.value.path == "$.tags[1]"
    dict_schema = AnswerSchema.of(BOOK)
    with pytest.raises(AnswerFormatError) as info:
        dict_schema.parsed(ChatResult(json.dumps({"title": "Emma", "year": 1815, "genre": "novel",
                                                  "authors": [{"name": 7}]})))
    assert info.value.path == "$.authors[0].name" and "not of type 'string'" in info.value.validation_error
    assert json_path(()) == "$"


def test_an_answer_that_is_not_json_keeps_the_raw_text(lmstudio_mock: MockLMStudioServer, mode: str) -> None:
    lmstudio_mock.script(MODEL, "Sure! Here is the person you asked for.")
    with pytest.raises(AnswerFormatError, match="not valid JSON") as info:
        call(mode, lmstudio_mock.url, "chat", "Who?", schema=BOOK)
    assert info.value.raw == "Sure! Here is the person you asked for." and info.value.path is None
    assert info.value.validation_error.startswith("Expecting value")


def test_an_answer_cut_at_max_tokens_says_so(lmstudio_mock: MockLMStudioServer) -> None:
    with pytest.raises(AnswerFormatError, match=r"cut at max_tokens.*raise max_tokens"):
        call("sync", lmstudio_mock.url, "chat", "Who?", schema=Person, max_tokens=5)


def test_a_stopped_stream_is_not_parsed(lmstudio_mock: MockLMStudioServer) -> None:
    with LMStudioClient(lmstudio_mock.url, model=MODEL) as client, client.stream_chat("Who?", schema=Person) as s:
        for _ in s:
            break
    result = s.result()
    assert result.stopped and result.parsed is None


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (42, r"schema=42 \(int\) is not a schema"),
        (dict, "is a class but not a pydantic model"),
        ({"type": "objekt"}, "is not a valid JSON schema"),
    ],
)
def test_a_bad_schema_is_refused_before_sending(lmstudio_mock: MockLMStudioServer, schema: Any, message: str) -> None:
    with LMStudioClient(lmstudio_mock.url, model=MODEL) as client:
        for method in (client.chat, client.stream_chat):
            with pytest.raises(LMStudioRequestError, match=message):
                method("hi", schema=schema)
        with pytest.raises(LMStudioRequestError, match="schema= or response_format=, not both"):
            client.chat("hi", schema=BOOK, response_format={"type": "text"})
    assert [r for r in lmstudio_mock.requests if r.path == "/v1/chat/completions"] == []


def test_a_missing_jsonschema_is_named_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(LMStudioRequestError, match=r"pip install 'lm_notebook\[json\]'"):
        AnswerSchema.of(BOOK)
    assert isinstance(AnswerSchema.of(Person), AnswerSchema)  # a pydantic model needs no jsonschema


def test_json_in_a_fence_is_still_json() -> None:
    assert parse_json_answer('Here it is:\n```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_answer(' [1, 2] ') == [1, 2]


# --- llama.cpp's server: LM Studio's form refused, its own taken ------------------------------------------------

REFUSAL = ("1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or "
           "'json_object' [type=literal_error, input_value='json_schema', input_type=str]")


def llama_cpp(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/lmstudio-greeting":
        return httpx.Response(404, text="Not Found")
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
    body = json.loads(request.content)
    if body["response_format"]["type"] != "json_object":
        return httpx.Response(500, json={"detail": REFUSAL, "response_format": "json_object"})
    if body.get("stream"):
        return sse_response([chunk('{"name": "Ada", '), chunk('"age": 36}'), chunk(finish="stop"), DONE])
    return httpx.Response(200, json=completion('{"name": "Ada", "age": 36}'))


class Small(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize("mode_", ["sync", "async"])
def test_a_server_that_refuses_json_schema_gets_its_json_object_form(mode_: str) -> None:
    h = Harness(mode_, llama_cpp)
    assert h.call("chat", "hi", model="m", schema=Small).parsed == Small(name="Ada", age=36)
    chats = [json.loads(r.content) for r in h.requests if r.url.path == "/v1/chat/completions"]
    assert [c["response_format"]["type"] for c in chats] == ["json_schema", "json_object"]
    assert chats[-1]["response_format"]["schema"] == Small.model_json_schema()
    out = Harness(mode_, llama_cpp).stream("hi", schema=Small)
    assert out.error is None and out.result is not None and out.result.parsed == Small(name="Ada", age=36)


def test_the_json_object_form_is_remembered_by_the_client() -> None:
    h = Harness("sync", llama_cpp)
    with h.sync_client() as client:
        client.chat("hi", model="m", schema=Small)
        with client.stream_chat("hi", model="m", schema=Small) as s:
            assert s.result().parsed == Small(name="Ada", age=36)
    kinds = [json.loads(r.content)["response_format"]["type"] for r in h.requests if r.url.path.endswith("completions")]
    assert kinds == ["json_schema", "json_object", "json_object"]
