"""The fake server of the checks' tests: ``good`` answers right, ``bad`` at length; ``judge-a`` and ``judge-b``
grade; ``embed`` embeds."""

from __future__ import annotations

from lm_notebook.testing import MockLMStudioServer, ModelSpec

PROMPTS = {"capital": "What is the capital of France?", "sum": "What is 2 + 2? Answer with a number."}
EXPECTED = {"capital": "Paris", "sum": "4"}


def checks_server() -> MockLMStudioServer:
    """Not started: ``with checks_server() as server: ...``."""
    models = [ModelSpec("good", reply_tokens=8), ModelSpec("bad", reply_tokens=60), ModelSpec("judge-a"),
              ModelSpec("judge-b"), ModelSpec("embed", type="embeddings")]
    server = MockLMStudioServer(models=models)
    server.answer("good", PROMPTS["capital"], "Paris.")
    server.answer("good", PROMPTS["sum"], "4")
    return server
