"""``schema=`` against llama.cpp's server and a real model: the answer is constrained to the schema by the server's
grammar, not by luck. llama-cpp-python refuses LM Studio's ``json_schema`` form (a 500 naming ``json_object``), so
the client sends its ``{"type": "json_object", "schema": ...}`` form instead, and remembers it."""

from __future__ import annotations

from pydantic import BaseModel
from real_server import SMOLLM2

from lm_notebook import LMStudioClient


class City(BaseModel):
    city: str
    population: int


def test_smollm2_answers_with_a_valid_object_for_a_pydantic_schema(real_client: LMStudioClient) -> None:
    prompt = "Give the largest city of France and its population as JSON."
    result = real_client.chat(prompt, model=SMOLLM2, schema=City, temperature=0, seed=1, max_tokens=60)
    assert isinstance(result.parsed, City) and result.parsed.city
    with real_client.stream_chat(prompt, model=SMOLLM2, schema=City, temperature=0, seed=1, max_tokens=60) as s:
        pieces = list(s)
    streamed = s.result()
    assert len(pieces) > 3 and isinstance(streamed.parsed, City)
    assert real_client._wants_json_object  # learned from the server's refusal, sent in its form since
