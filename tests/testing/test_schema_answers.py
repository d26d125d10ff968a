"""The fake server's JSON-schema answers: valid for the schema (checked with jsonschema), deterministic, streamed in
pieces; the ``break_schema`` fault makes them invalid on demand."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import jsonschema
import pytest
from pydantic import BaseModel, Field

from lm_notebook.testing import MockLMStudioServer
from lm_notebook.testing.schema_answers import json_answer


class Line(BaseModel):
    sku: str = Field(min_length=4, max_length=8)
    quantity: int = Field(ge=1, le=9)
    price: float = Field(gt=0, lt=5)


class Order(BaseModel):
    id: str
    status: Literal["open", "paid", "shipped"]
    lines: list[Line] = Field(min_length=1, max_length=3)
    note: str | None = None
    placed: str = Field(json_schema_extra={"format": "date"})


SCHEMAS: list[dict[str, Any]] = [
    Order.model_json_schema(),
    {"type": "object", "properties": {"a": {"const": 3}, "b": {"type": ["null", "integer"], "minimum": 10},
                                      "c": {"type": "array", "prefixItems": [{"type": "boolean"}], "minItems": 1,
                                            "maxItems": 1}},
     "required": ["a", "b", "c"]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "x": {"allOf": [{"type": "object", "properties": {"y": {"type": "number"}},
                                                       "required": ["y"]}]}},
     "required": ["when", "x"], "additionalProperties": False},
    {"type": "array", "items": {"enum": ["red", "green"]}, "minItems": 3},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["pydantic-order", "const-null", "allof-format", "array-enum"])
def test_answers_satisfy_their_schema_and_are_deterministic(schema: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "An order for three lamps"}]
    text = json_answer(schema, "m", messages, seed=1)
    jsonschema.validate(json.loads(text), schema)
    assert json_answer(schema, "m", messages, seed=1) == text


@pytest.mark.parametrize("schema", SCHEMAS, ids=["pydantic-order", "const-null", "allof-format", "array-enum"])
def test_a_broken_answer_breaks_its_schema(schema: dict[str, Any]) -> None:
    text = json_answer(schema, "m", [{"role": "user", "content": "hi"}], seed=1, broken=True)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(text), schema)


def _chat(server: MockLMStudioServer, **body: Any) -> httpx.Response:
    payload = {"model": "qwen2.5-7b-instruct", "messages": [{"role": "user", "content": "An order"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "Order", "strict": True,
                                                                          "schema": Order.model_json_schema()}},
               **body}
    return httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=30)


def test_the_server_streams_the_json_in_pieces_and_breaks_it_on_demand(lmstudio_mock: MockLMStudioServer) -> None:
    streamed = _chat(lmstudio_mock, stream=True)
    deltas = [json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
              for line in streamed.text.splitlines() if line.startswith("data: {")]
    whole = _chat(lmstudio_mock).json()["choices"][0]["message"]["content"]
    assert len([d for d in deltas if d]) > 10 and "".join(deltas) == whole
    Order.model_validate_json(whole)
    fault = lmstudio_mock.set_fault("break_schema", times=1)
    broken = _chat(lmstudio_mock).json()["choices"][0]["message"]["content"]
    assert fault.hits == 1 and "id" not in json.loads(broken)
    assert _chat(lmstudio_mock).json()["choices"][0]["message"]["content"] == whole  # the fault was used up


def test_a_model_whose_engine_ignores_the_schema_answers_around_broken_json(lmstudio_mock: MockLMStudioServer) -> None:
    from lm_notebook import AnswerFormatError, LMStudioClient

    with LMStudioClient(lmstudio_mock.url) as client, pytest.raises(AnswerFormatError) as info:
        client.chat("An order", model="deepseek-r1-distill-qwen-7b", schema=Order)
    assert info.value.raw.startswith("Here is the JSON you asked for:\n\n```json\n{")
    assert info.value.path == "$.id" and info.value.validation_error == "Field required"
