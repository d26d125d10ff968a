"""The magics in a real kernel (through jupyter_client) against llama.cpp's server and real models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_driver import Kernel, kernel_for
from real_server import GEMMA3, MODELS, SMOLLM2

from lm_notebook import LMStudioClient

QUESTION = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def kernel(real_base_url: str) -> Iterator[Kernel]:
    with kernel_for(real_base_url) as k:
        assert k.run("%load_ext lm_notebook").status == "ok"
        yield k


def test_lm_models_lists_both_models(kernel: Kernel) -> None:
    run = kernel.run("%lm_models -o models")
    assert run.status == "ok", run.text()
    shown = run.text()
    for model in MODELS:
        assert model in shown
    check = kernel.run(f"assert sorted(m.id for m in models) == {sorted(MODELS)!r}, models")
    assert check.status == "ok", check.text()


def test_lm_use_takes_a_listed_model_and_refuses_a_near_miss(kernel: Kernel) -> None:
    run = kernel.run(f"%lm_use {SMOLLM2}")
    assert run.status == "ok", run.text()
    assert f"Current model: {SMOLLM2}" in run.text()
    bad = kernel.run("%lm_use smollm2")
    assert bad.status == "error"
    (error,) = bad.of_type("error")
    assert error["content"]["ename"] == "ModelNotFoundError"
    assert len(error["content"]["traceback"]) == 1
    assert f'Did you mean "{SMOLLM2}"?' in bad.text()


@pytest.mark.parametrize("model", MODELS)
def test_lm_streams_a_real_answer_into_the_cell(kernel: Kernel, real_client: LMStudioClient, model: str) -> None:
    run = kernel.run(f"%%lm -m {model} -t 0 --seed 42 --max-tokens 16 -o ans\n{QUESTION}")
    assert run.status == "ok", run.text()
    first = run.of_type("display_data")[0]
    display_id = first["content"]["transient"]["display_id"]
    updates = run.of_type("update_display_data")
    assert updates and all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    (final,) = run.of_type("execute_result")
    markdown = final["content"]["data"]["text/markdown"]
    assert "paris" in markdown.lower(), markdown
    assert f"<sub>{model} · " in markdown
    # the same answer the client gets outside the kernel (temperature 0, same seed)
    expected = real_client.chat(QUESTION, model=model, temperature=0, seed=42, max_tokens=16).content
    check = kernel.run(f"assert ans.content == {expected!r}, ans.content\nassert not ans.stopped")
    assert check.status == "ok", check.text()


def test_interrupt_stops_a_real_answer_and_the_kernel_goes_on(kernel: Kernel) -> None:
    run = kernel.run(
        f"%%lm -m {SMOLLM2} -t 0 --max-tokens 400 -o cut\nWrite a long story about a lighthouse keeper.",
        interrupt_when="tokens · streaming",
    )
    assert run.interrupted_index is not None, "the answer never started streaming: " + run.text()
    # what came after the interrupt: the stopped answer's last renders, then the KeyboardInterrupt as the cell's last
    # word (no result, nothing streaming after it); a stopped answer is one the model had not finished
    after = [m["msg_type"] for m in run.after_interrupt()]
    assert after and after[-1] == "error" and "execute_result" not in after, after
    (error,) = run.of_type("error")
    assert error["content"]["ename"] == "KeyboardInterrupt"
    check = kernel.run("assert cut.stopped and 0 < len(cut.content), cut")
    assert check.status == "ok", check.text()
    again = kernel.run(f"%%lm -m {GEMMA3} -t 0 --max-tokens 8 -f text\nWhat is 2+2?")
    assert again.status == "ok", again.text()


def test_lm_with_an_unknown_model_is_one_error_line(kernel: Kernel) -> None:
    run = kernel.run("%%lm -m no-such-model --max-tokens 4\nHi")
    assert run.status == "error"
    (error,) = run.of_type("error")
    assert error["content"]["ename"] == "ModelNotFoundError"
    assert len(error["content"]["traceback"]) == 1
    shown = run.text()
    assert all(model in shown for model in MODELS), shown
