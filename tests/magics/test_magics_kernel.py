"""``%%lm`` in a real kernel (through jupyter_client) against the fake server: live display updates, interrupts,
one-line errors — what JupyterLab, Notebook 7 and VS Code receive on iopub."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from kernel_driver import ANSI, Kernel, kernel_for

from lm_notebook.testing import MockLMStudioServer, ModelSpec, default_models

MODEL = "qwen2.5-7b-instruct"
SLOW = "slow-model"


@pytest.fixture(scope="module")
def server() -> Iterator[MockLMStudioServer]:
    models = [dataclasses.replace(m, tokens_per_second=200, reply_tokens=200) if m.id == MODEL else m
              for m in default_models()]
    # an answer that outlasts the test (over 8 minutes): only an interrupt ends a cell streaming it
    models.append(ModelSpec(SLOW, loaded=True, tokens_per_second=40, reply_tokens=20_000))
    with MockLMStudioServer(models=models) as fake:
        yield fake


@pytest.fixture(scope="module")
def kernel(server: MockLMStudioServer) -> Iterator[Kernel]:
    with kernel_for(server.url) as k:
        assert k.run(f"%load_ext lm_notebook\n%lm_use {MODEL}").status == "ok"
        yield k


def test_streaming_updates_one_display_live_then_shows_the_exact_answer(kernel: Kernel) -> None:
    run = kernel.run("%%lm -o ans\nTell me about tides")
    assert run.status == "ok"
    kinds = [m["msg_type"] for m in run.messages]
    assert kinds[0] == "execute_input"
    first = run.messages[1]
    assert first["msg_type"] == "display_data" and first["content"]["data"] == {"text/plain": ""}
    display_id = first["content"]["transient"]["display_id"]
    updates = run.of_type("update_display_data")
    assert all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    live = [u["content"]["data"]["text/markdown"] for u in updates[:-1]]
    assert len(live) >= 5, "the answer should be seen growing"
    assert "waiting for the first token" in live[0]
    growing = [len(t) for t in live[1:]]
    assert growing == sorted(growing) and growing[0] < growing[-1]
    assert updates[-1]["content"]["data"] == {"text/plain": ""}  # the live output empties itself at the end
    # throttled: ≤ ~10 repaints a second however fast the tokens come (200 tokens/s here)
    seconds = run.idle_at - run.started
    assert len(updates) <= 12 * seconds + 2
    assert kinds[-1] == "execute_result"  # the exact final render is the cell's value
    final = run.messages[-1]["content"]["data"]
    assert "▌" not in final["text/markdown"] and "<sub>qwen2.5-7b-instruct · 200 tokens · " in final["text/markdown"]
    assert kernel.run("assert ans.completion_tokens == 200 and not ans.stopped").status == "ok"


def test_interrupt_stops_the_answer_and_the_kernel_takes_the_next_cell(kernel: Kernel) -> None:
    # the answer would stream for minutes: the cell ending (kernel.run returns) is the interrupt stopping it
    run = kernel.run(f"%%lm -m {SLOW} -o cut\nA long story", interrupt_when="tokens · streaming")
    assert run.interrupted_at is not None, "the answer never started streaming"
    assert run.status == "error"  # so "Run all" stops here, as after any interrupt
    displays = run.of_type("display_data")
    assert displays[0]["content"]["data"] == {"text/plain": ""}
    partial = displays[-1]["content"]["data"]["text/markdown"]
    assert "· stopped</sub>" in partial
    (error,) = run.of_type("error")
    assert error["content"]["ename"] == "KeyboardInterrupt"
    assert [ANSI.sub("", line) for line in error["content"]["traceback"]] == [
        "KeyboardInterrupt: stopped by you; the partial answer is shown above and in cut."
    ]
    # the partial answer is kept, and the kernel takes the next cell at once
    after = kernel.run("print(cut.stopped, 0 < len(cut.content) < 5000)")
    assert after.status == "ok"
    assert after.of_type("stream")[0]["content"]["text"] == "True True\n"


@pytest.mark.parametrize(
    ("cell", "ename", "starts"),
    [
        ("%%lm -m no-such-model\nHi", "ModelNotFoundError", 'LM Studio at http://127.0.0.1:'),
        ("%%lm -f json\nHi", "AnswerFormatError", "The answer is not valid JSON"),
    ],
)
def test_errors_are_one_line(kernel: Kernel, cell: str, ename: str, starts: str) -> None:
    run = kernel.run(cell)
    assert run.status == "error"
    (error,) = run.of_type("error")
    lines = [ANSI.sub("", line) for line in error["content"]["traceback"]]
    assert len(lines) == 1 and lines[0].startswith(f"{ename}: {starts}")


def test_a_bad_flag_is_a_usage_error_line(kernel: Kernel) -> None:
    run = kernel.run("%%lm --temperature hot\nHi")
    assert run.status == "error"
    (stream,) = run.of_type("stream")
    assert stream["content"]["name"] == "stderr"
    assert stream["content"]["text"].startswith("UsageError: argument -t/--temperature: invalid float value: 'hot'")
    assert not run.of_type("error", "display_data")


def test_server_gone_is_one_line(kernel: Kernel) -> None:
    kernel.run("%config LMMagics.base_url = 'http://127.0.0.1:9'")
    try:
        run = kernel.run("%%lm\nHi")
    finally:
        kernel.run("%config LMMagics.base_url = ''\nimport os, lm_notebook\n"
                       "lm_notebook.set_client(lm_notebook.LMStudioClient(os.environ['LMSTUDIO_BASE_URL'], "
                       f"model={MODEL!r}))")
    (error,) = run.of_type("error")
    assert error["content"]["ename"] == "LMStudioConnectionError"
    assert len(error["content"]["traceback"]) == 1
