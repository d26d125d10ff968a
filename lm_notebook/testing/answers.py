"""The bodies of non-streamed answers (chat, text completion, and the native ``/api/v0`` extras), and ``usage``."""

from __future__ import annotations

from typing import Any

from lm_notebook.testing.catalogue import ModelSpec
from lm_notebook.testing.faults import Quirks
from lm_notebook.testing.generation import Generation


def answer_body(spec: ModelSpec, gen: Generation, *, path: str, chunk_id: str, created: int, usage: dict[str, Any],
                quirks: Quirks, elapsed: float, completion: bool, context_length: int) -> dict[str, Any]:
    """The whole answer of a request that did not stream; ``elapsed`` is the generation's time on the server clock."""
    content = gen.text("content")
    if completion:
        return {"id": chunk_id, "object": "text_completion", "created": created, "model": spec.id,
                "choices": [{"index": 0, "text": content, "logprobs": None, "finish_reason": gen.finish_reason}],
                "usage": usage, "system_fingerprint": spec.id}
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if spec.reasoning in ("reasoning", "reasoning_content"):
        message[spec.reasoning] = gen.text(spec.reasoning)
    tool_calls = [{"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                  for t in gen.tool_calls]
    if quirks.extended_fields:
        message.setdefault("reasoning_content", "")
        message["tool_calls"] = tool_calls
    elif tool_calls:
        message["tool_calls"] = tool_calls
    answer: dict[str, Any] = {
        "id": chunk_id, "object": "chat.completion", "created": created, "model": spec.id,
        "choices": [{"index": 0, "logprobs": None, "finish_reason": gen.finish_reason, "message": message}],
        "usage": usage,
    }
    if path.startswith("/api/v0/"):
        generated = max(gen.completion_tokens, 1)
        ttft = spec.ttft or min(elapsed, 0.001)
        answer["stats"] = {"tokens_per_second": round(generated / max(elapsed - ttft, 1e-3), 2)
                           if not spec.tokens_per_second else spec.tokens_per_second,
                           "time_to_first_token": round(ttft, 3), "generation_time": round(elapsed, 3),
                           "stop_reason": gen.stop_reason}
        answer["model_info"] = {"arch": spec.arch, "quant": spec.quantization, "format": spec.format,
                                "context_length": context_length}
        answer["runtime"] = {"name": "llama.cpp-linux-x86_64-avx2" if spec.format == "gguf"
                             else "mlx-llm-mac-arm64-apple-metal-advsimd",
                             "version": "1.3.0", "supported_formats": [spec.format]}
    elif quirks.extended_fields:
        answer["stats"] = {}
    answer["system_fingerprint"] = spec.id
    return answer


def usage_body(n_prompt: int, gen: Generation, extended: bool) -> dict[str, Any]:
    """The ``usage`` object: prompt and completion tokens (and the reasoning ones, in newer builds)."""
    usage: dict[str, Any] = {"prompt_tokens": n_prompt, "completion_tokens": gen.completion_tokens,
                             "total_tokens": n_prompt + gen.completion_tokens}
    if extended:
        usage["completion_tokens_details"] = {"reasoning_tokens": gen.reasoning_count}
    return usage
