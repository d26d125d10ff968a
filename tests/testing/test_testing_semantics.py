"""The fake server's meaningful embeddings, its judge's grades, and replies keyed by prompt."""

from __future__ import annotations

import json
import math

import httpx

from lm_notebook.comparison.judge import judge
from lm_notebook.testing import MockLMStudioServer
from lm_notebook.testing.semantics import bag_of_words_embedding, judge_reply


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_texts_sharing_words_are_closer_than_texts_sharing_none() -> None:
    def vec(text: str) -> list[float]:
        return bag_of_words_embedding(text, "m", 768)

    paris = vec("The capital of France is Paris.")
    assert math.isclose(_cos(paris, vec("paris is the CAPITAL of france")), 1.0, abs_tol=1e-5)  # same words
    assert _cos(paris, vec("Paris is lovely")) > _cos(paris, vec("Quantum chromodynamics explained"))
    assert _cos(paris, vec("Quantum chromodynamics explained")) < 0.1
    assert vec("") == vec("") and math.isclose(_cos(vec("!!"), vec("!!")), 1.0, abs_tol=1e-5)  # no words: fixed


def test_the_fake_judge_grades_by_the_reference_answers_words() -> None:
    check = judge("Is it correct?", model="m")
    good = check.messages({"prompt": "Capital?", "expected": "Paris, France"}, "It is Paris in France.")
    half = check.messages({"prompt": "Capital?", "expected": "Paris, France"}, "Paris.")
    assert json.loads(judge_reply(good) or "")["score"] == 5
    assert json.loads(judge_reply(half) or "")["score"] == 3  # 1 + round(0.5 * 4)
    ten = judge("Short?", model="m", scale=10)
    short = ten.messages({"prompt": "Q"}, "A short answer.")
    long = ten.messages({"prompt": "Q"}, "word " * 80)
    assert json.loads(judge_reply(short) or "")["score"] == 10 and json.loads(judge_reply(long) or "")["score"] == 1
    assert judge_reply([{"role": "user", "content": "Answer to grade:\n<<<\nx\n>>>"}]) is None  # not a judge's


def test_the_server_answers_the_judge_and_replies_set_per_prompt(server: MockLMStudioServer) -> None:
    server.answer("*", "What is the capital of France?", "Paris.")
    server.answer("qwen2.5-7b-instruct", "Say hi", "Hi from qwen.")
    messages = judge("Correct?").messages({"prompt": "Capital?", "expected": "Paris"}, "Paris")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        def ask(content: object, model: str = "qwen2.5-7b-instruct") -> str:
            msgs = content if isinstance(content, list) else [{"role": "user", "content": content}]
            body = http.post("/v1/chat/completions", json={"model": model, "messages": msgs}).json()
            return str(body["choices"][0]["message"]["content"])

        assert ask("What is the capital of France?") == "Paris."
        assert ask("Say hi") == "Hi from qwen."
        assert ask("Say hi", "openai/gpt-oss-20b") != "Hi from qwen."
        assert json.loads(ask(messages))["score"] == 5
        server.script("qwen2.5-7b-instruct", '{"score": 2, "reason": "scripted"}')  # a script comes first
        assert json.loads(ask(messages)) == {"score": 2, "reason": "scripted"}
