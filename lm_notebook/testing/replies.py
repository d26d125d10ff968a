"""Deterministic reply text, thinking, tool-call arguments, embeddings, and token counting.

A *token* here is a word with its leading whitespace, one punctuation mark with its leading whitespace, or trailing
whitespace: ``tokenize("Hi, you!") == ["Hi", ",", " you", "!"]``. Tokens always join back to the text, one streamed
chunk carries one token, so usage counts equal the number of chunks streamed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
# chat-template overhead per message: role markers and separators, like a real template adds
MESSAGE_OVERHEAD_TOKENS = 4


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list (images count as nothing)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(count_tokens(message_text(m.get("content"))) + MESSAGE_OVERHEAD_TOKENS for m in messages) + 2


def _rng(*key: Any) -> random.Random:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


_SUBJECTS = ["the model", "a local server", "the notebook", "this approach", "the tokenizer", "each request",
             "the context window", "a quantized model", "the cache", "streaming output"]
_VERBS = ["keeps", "handles", "reduces", "improves", "depends on", "changes", "balances", "exposes", "limits",
          "simplifies"]
_OBJECTS = ["memory use", "latency", "the first token", "throughput", "the answer's quality", "batch size",
            "the prompt length", "GPU offload", "numerical precision", "the reply format"]
_ASIDES = ["in practice", "for most workloads", "on a laptop", "at 4-bit precision", "with a warm cache",
           "when the prompt is short", "as a rule of thumb", "on Apple silicon"]
_TERMS = ["Context length", "Temperature", "Quantization", "Batching", "Time to first token", "Throughput",
          "Seed", "Top-p sampling", "Stop strings", "System prompt"]
_CODE = [
    ("python", ["def summarize(text: str, limit: int = {n}) -> str:",
                '    """Keep the first sentences of a long text."""',
                "    words = text.split()",
                "    return \" \".join(words[:limit])"]),
    ("python", ["import statistics", "", "latencies = [{n}, {m}, {k}]",
                "print(f\"median: {{statistics.median(latencies)}} ms\")"]),
    ("bash", ["lms load qwen2.5-7b-instruct --context-length {n}", "lms ps"]),
]


def _sentence(rng: random.Random) -> str:
    text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.5:
        text += f" {rng.choice(_ASIDES)}"
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _markdown_reply(rng: random.Random, topic: str) -> str:
    """Paragraphs, a bullet list and a code block, with a non-ASCII character or two, ~150-250 tokens."""
    about = f"*{topic}*" if topic else "your question"
    opening = f"Here is a short answer about {about} — {rng.choice(_ASIDES)}. {_paragraph(rng, rng.randint(2, 3))}"
    items = [f"- **{term}**: {_sentence(rng)}" for term in rng.sample(_TERMS, rng.randint(3, 4))]
    lang, lines = rng.choice(_CODE)
    code = "\n".join(lines).format(n=rng.randint(2, 9) * 512, m=rng.randint(20, 90), k=rng.randint(20, 90))
    closing = f"{_paragraph(rng, rng.randint(1, 2))} That's the gist — ask again for more détail."
    return f"{opening}\n\nKey points:\n\n" + "\n".join(items) + f"\n\n```{lang}\n{code}\n```\n\n{closing}"


def _topic(messages: Sequence[Mapping[str, Any]]) -> str:
    return " ".join(_WORD.findall(last_user_text(messages))[:4]).lower()


def reply_text(model: str, messages: Sequence[Mapping[str, Any]], seed: Any = None, temperature: Any = None) -> str:
    """A realistic Markdown reply, a pure function of its arguments."""
    return _markdown_reply(_rng(model, list(messages), seed, temperature), _topic(messages))


def reply_tokens_exact(
    count: int, model: str, messages: Sequence[Mapping[str, Any]], seed: Any = None, temperature: Any = None
) -> list[str]:
    """Exactly ``count`` tokens of reply text (more paragraphs appended as needed, then cut)."""
    rng = _rng(model, list(messages), seed, temperature)
    topic = _topic(messages)
    tokens: list[str] = []
    while len(tokens) < count:
        tokens.extend(tokenize(("\n\n" if tokens else "") + _markdown_reply(rng, topic)))
    del tokens[count:]
    return tokens


def reasoning_text(model: str, messages: Sequence[Mapping[str, Any]], count: int) -> list[str]:
    """``count`` tokens of plausible thinking."""
    rng = _rng("thinking", model, list(messages))
    topic = _topic(messages) or "the question"
    tokens = tokenize(f"The user asks about {topic}. Let me think it through step by step.")
    while len(tokens) < count:
        tokens.extend(tokenize(" " + _sentence(rng)))
    return tokens[:count]


def _value_for(schema: Mapping[str, Any], name: str, rng: random.Random, hint: str, depth: int = 0) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return json_instance(schema, rng, hint, depth + 1) if depth < 4 else {}
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        n = max(int(schema.get("minItems", 2)), 1)
        return [_value_for(items, name, rng, hint, depth + 1) for _ in range(n)] if depth < 4 else []
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return hint or f"example {name}"


def json_instance(schema: Mapping[str, Any], rng: random.Random, hint: str = "", depth: int = 0) -> dict[str, Any]:
    """An object satisfying a (simple) JSON schema: every property present, in schema order."""
    props = schema.get("properties") or {}
    return {name: _value_for(sub if isinstance(sub, Mapping) else {}, name, rng, hint, depth)
            for name, sub in props.items()}


def tool_arguments(parameters: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> str:
    hint = _topic(messages)
    required = parameters.get("required")
    props = parameters.get("properties") or {}
    if isinstance(required, list):
        parameters = {**parameters, "properties": {k: v for k, v in props.items() if k in required}}
    return json.dumps(json_instance(parameters, _rng("tool", list(messages)), hint), ensure_ascii=False)


def tool_call_id(messages: Sequence[Mapping[str, Any]], index: int) -> str:
    """A numeric id like LM Studio's (``"814890118"``)."""
    return str(_rng("call", list(messages), index).randrange(100_000_000, 999_999_999))


def split_pieces(text: str, rng_key: str) -> list[str]:
    """Cut tool-call arguments into small pieces, the way they arrive from a model (2-6 characters)."""
    rng = _rng("pieces", rng_key)
    pieces = []
    i = 0
    while i < len(text):
        step = rng.randint(2, 6)
        pieces.append(text[i:i + step])
        i += step
    return pieces


def embedding(text: str, model: str, dimensions: int) -> list[float]:
    """A unit vector from the text's hash: equal texts give equal vectors."""
    rng = _rng("embed", model, text)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def cut_at_stop(text: str, stop: str | Iterable[str] | None) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    if stop is None:
        return text, False
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str) and s]
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
