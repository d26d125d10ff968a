"""``%%lm`` in a real kernel (through jupyter_client) against the fake server: live display updates, interrupts,
one-line errors — what JupyterLab, Notebook 7 and VS Code receive on iopub."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kernel_driver import ANSI, Kernel, kernel_for

from lm_notebook.display.frontend import CellOutputs
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec, default_models
from lm_notebook.testing.native_chat import LOAD_PROGRESS_STEPS

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


def _live_answer_text(outputs: CellOutputs) -> str:
    """The answer's text as a frontend shows it live: every output's Markdown in order, less the tail's cursor and
    footer."""
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs.outputs())
    return markdown.split("▌")[0]


def test_streaming_shows_finished_blocks_once_and_repaints_the_tail_then_shows_the_exact_answer(
    kernel: Kernel,
) -> None:
    run = kernel.run("%%lm -o ans\nTell me about tides")
    assert run.status == "ok"
    kinds = [m["msg_type"] for m in run.messages]
    assert kinds[0] == "execute_input"
    first = run.messages[1]
    assert first["msg_type"] == "display_data"
    assert "waiting for the first token" in first["content"]["data"]["text/markdown"]
    # what a frontend shows while it streams: the answer so far, growing, in outputs it appends and updates (looked
    # at after each repaint: one that finishes blocks updates the tail to them, then appends the new tail at once)
    live = CellOutputs()
    shown: list[str] = []
    streaming = run.messages[1:-2]
    for message, following in zip(streaming, [*streaming[1:], None], strict=True):
        live.add(message)
        if following is None or following["msg_type"] != "display_data":
            shown.append(_live_answer_text(live))
    answer = run.messages[-1]["content"]["data"]["text/plain"]
    assert all(answer.startswith(text) for text in shown)
    growing = [len(t) for t in shown]
    # seen growing: how many repaints a one-second answer gets depends on how busy the machine is, not their order
    assert growing == sorted(growing) and growing[-1] > 0 and len(set(growing)) >= 3
    assert len(live.outputs()) >= 2, "finished blocks are outputs of their own"
    # a finished block is sent once: only the last output of the moment (the tail) is ever repainted
    tails = {m["content"]["transient"]["display_id"] for m in run.of_type("display_data")[1:]}
    assert len(tails) == len(live.outputs()) - 1
    # throttled: ≤ ~10 display messages a second however fast the tokens come (200 tokens/s here)
    seconds = run.idle_at - run.started
    assert len(run.of_type("display_data", "update_display_data")) <= 12 * seconds + 3
    # the live view goes when the answer comes: a saved notebook holds the answer once
    assert kinds[-2:] == ["clear_output", "execute_result"] and run.messages[-2]["content"]["wait"] is True
    final = run.messages[-1]["content"]["data"]
    assert "▌" not in final["text/markdown"]
    assert "<sub>qwen2.5-7b-instruct · 200 tokens · " in final["text/markdown"]
    assert final["text/markdown"].endswith(" · fake server</sub>")
    saved = CellOutputs()
    for message in run.messages:
        saved.add(message)
    assert [o["output_type"] for o in saved.outputs()] == ["execute_result"]
    assert kernel.run("assert ans.completion_tokens == 200 and not ans.stopped").status == "ok"


def test_interrupt_stops_the_answer_and_the_kernel_takes_the_next_cell(kernel: Kernel) -> None:
    # the answer would stream for minutes: the cell ending (kernel.run returns) is the interrupt stopping it
    run = kernel.run(f"%%lm -m {SLOW} -o cut\nA long story", interrupt_when="tokens · streaming")
    assert run.interrupted_at is not None, "the answer never started streaming"
    assert run.status == "error"  # so "Run all" stops here, as after any interrupt
    displays = run.of_type("display_data")
    # the live view said it was streaming when the interrupt went (a repaint after it may seal a finished block,
    # which has no footer: the last update is not the one to look at)
    assert run.interrupted_index is not None
    assert "tokens · streaming" in str(run.messages[run.interrupted_index - 1]["content"]["data"])
    partial = displays[-1]["content"]["data"]["text/markdown"]
    assert "· stopped · fake server</sub>" in partial
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


@pytest.mark.parametrize(
    ("line", "words"),
    [("%lm_config bogus", "unrecognized arguments: bogus"), ("%lm_reset now", "unrecognized arguments: now")],
)
def test_an_argument_a_magic_does_not_take_is_a_usage_error_line(kernel: Kernel, line: str, words: str) -> None:
    run = kernel.run(line)
    assert run.status == "error"
    (stream,) = run.of_type("stream")
    assert stream["content"]["name"] == "stderr" and stream["content"]["text"] == f"UsageError: {words}\n"
    assert not run.of_type("display_data")


def test_a_bad_setting_is_refused_when_set_and_the_previous_value_kept(kernel: Kernel) -> None:
    assert kernel.run("%config LMMagics.timeout = 120").status == "ok"
    try:
        run = kernel.run("%config LMMagics.timeout = 0")
        (stream,) = run.of_type("stream")
        assert stream["content"]["name"] == "stderr" and stream["content"]["text"].count("\n") == 1
        assert stream["content"]["text"].endswith(
            'LMMagics.timeout must be a positive number of seconds, or float("inf") for no read timeout; not 0.\n'
        )
        kept = kernel.run("%lm_config")
        (table,) = kept.of_type("display_data")
        assert "timeout         120 s" in table["content"]["data"]["text/plain"]
        assert kernel.run("%%lm\nHi").status == "ok"  # and the next cell is answered, not a traceback
    finally:
        kernel.run("%config LMMagics.timeout = None")


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


def test_a_cold_model_on_lm_studio_0_4_paints_its_load_progress_before_the_first_token(kernel: Kernel) -> None:
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec("m", load_time=5.0, reply_tokens=5)], clock=clock) as loading:
        assert kernel.run(f"%config LMMagics.base_url = '{loading.url}'\n%lm_use m").status == "ok"
        try:
            msg_id = kernel.kc.execute("%%lm\nHi")
            painted: list[str] = []  # each distinct load-progress line, in the order the cell showed them
            steps = 0
            first_token_at: int | None = None
            answer = ""  # the cell's value: the answer, with the load in its footer
            while True:
                msg = kernel.kc.get_iopub_msg(timeout=60)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
                if msg["msg_type"] == "execute_result":
                    answer = str(msg["content"]["data"].get("text/plain", ""))
                shown = str(msg["content"].get("data", {}).get("text/markdown", ""))
                line = re.search(r"Loading m [▓░]+ \d+ %", shown)
                if line and line.group(0) not in painted:
                    painted.append(line.group(0))
                    # the cell showed this step: let the server's load go one step further (while it loads, its
                    # load and its next progress pause wait on the clock; after the last progress, only the load)
                    steps += 1
                    if steps < LOAD_PROGRESS_STEPS:
                        clock.advance_to(clock.wait_for_pending(2)[0])
                    elif steps == LOAD_PROGRESS_STEPS:
                        clock.wait_for_pending(1)
                        clock.advance_to(5.0)
                if first_token_at is None and "tokens · streaming" in shown:
                    first_token_at = len(painted)
            kernel.kc.get_shell_msg(timeout=10)
        finally:
            kernel.run(f"%config LMMagics.base_url = ''\n%lm_use {MODEL}")
    assert painted == [f"Loading m {'▓' * k * 2}{'░' * (10 - k * 2)} {k * 20} %" for k in range(5)]
    assert len(painted) >= 3 and (first_token_at is None or first_token_at == len(painted))
    # the live lines are gone from the saved cell: its footer says the load happened and how long it took
    assert "Loading" not in answer and "loaded in 5.0 s" in answer and "(server)" in answer
    assert loading.counters.model("m").loads == 1


def run_and_act(kernel: Kernel, code: str, *, when: str, act: Callable[[], None], timeout: float = 60) -> list[Any]:
    """Execute ``code``; once an output of the cell contains ``when``, call ``act`` (once). The cell's messages."""
    msg_id = kernel.kc.execute(code)
    messages: list[Any] = []
    acted = False
    while True:
        msg = kernel.kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                break
            continue
        messages.append(msg)
        if not acted and when in str(msg["content"].get("data", "")):
            acted = True
            act()
    kernel.kc.get_shell_msg(timeout=10)
    assert acted, f"no output of the cell said {when!r}"
    return messages


def test_a_just_in_time_load_says_loading_with_the_seconds_before_the_first_token(kernel: Kernel) -> None:
    clock = ManualClock()
    model = ModelSpec("m", loaded=False, load_time=30.0, reply_tokens=5)
    # LM Studio 0.3: no load progress from the server (0.4's is the next test), the cell counts the seconds
    with MockLMStudioServer(models=[model], clock=clock, version="0.3") as loading:

        def finish_the_load() -> None:
            assert clock.wait_for_pending() == [30.0]  # the server is loading "m" and the cell still shows no token
            clock.advance(30.0)

        assert kernel.run(f"%config LMMagics.base_url = '{loading.url}'\n%lm_use m").status == "ok"
        try:
            messages = run_and_act(kernel, "%%lm -o loaded\nHi", when="Loading m…", act=finish_the_load)
        finally:
            kernel.run(f"%config LMMagics.base_url = ''\n%lm_use {MODEL}")
    shown = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data", "execute_result")]
    first = shown[0]["content"]["data"]["text/markdown"]
    assert shown[0]["msg_type"] == "display_data" and "<sub>Loading m… 0 s" in first  # painted before the request
    # every live view until the answer streams says the model is loading (the load was still pending when the test
    # saw it: no token could have come), never "waiting for the first token"
    live = [str(m["content"]["data"]) for m in shown[:-1]]
    assert all("Loading m…" in view or " · streaming…" in view for view in live)
    final = shown[-1]
    assert final["msg_type"] == "execute_result" and "Loading" not in str(final["content"]["data"])
    assert final["content"]["data"]["text/markdown"].endswith(" · fake server</sub>")
    assert loading.counters.model("m").loads == 1


def test_interrupting_lm_load_says_in_one_line_that_it_stopped_waiting(kernel: Kernel) -> None:
    clock = ManualClock()  # the load lasts until the test moves the clock: only the interrupt ends the cell
    with MockLMStudioServer(models=[ModelSpec("m", load_time=30.0)], clock=clock) as loading:
        assert kernel.run(f"%config LMMagics.base_url = '{loading.url}'").status == "ok"
        try:
            run = kernel.run("%lm_load m", interrupt_when="Loading m… 0 s")
        finally:
            clock.advance(30.0)
            kernel.run(f"%config LMMagics.base_url = ''\n%lm_use {MODEL}")
    assert run.status == "error" and not run.of_type("error")  # no traceback: one line, as a UsageError is shown
    (stream,) = run.of_type("stream")
    assert stream["content"]["name"] == "stderr"
    assert stream["content"]["text"].startswith("UsageError: Stopped waiting for m: LM Studio may go on loading it")
    lines = [str(m["content"]["data"]["text/plain"]) for m in run.of_type("display_data", "update_display_data")]
    assert lines[-1].startswith("Stopped waiting for m after") and "LM Studio may go on loading it" in lines[-1]
