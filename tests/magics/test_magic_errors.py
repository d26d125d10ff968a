"""The magics' errors in a real ``InteractiveShell`` against the fake server: one line each, in the magics' verbs
and with the real numbers, built from the exception's fields; the traceback on demand (``%lm_last_error``)."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import ANSI, MODEL, error_line, run, shown, use

import lm_notebook.display.answer
from lm_notebook import LMStudioClient, set_client
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    LMStudioConnectionError,
    LMStudioError,
    ModelNotFoundError,
    NoModelLoadedError,
    RateLimitError,
)
from lm_notebook.testing import ManualClock, MockLMStudioServer

# --- errors: one line each, traceback on demand ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        ("-f yaml", "argument -f/--format: invalid choice: 'yaml'"),
        ("-o 1x", "-o needs a Python variable name, not '1x'."),
        ("--max-tokens many", "argument --max-tokens: invalid int value: 'many'"),
        # out of range: refused with the range, as the settings and the chat panel refuse it (never clamped)
        ("-t 9", "-t/--temperature must be a number from 0 to 2; not 9.0."),
        ("-t nan", "-t/--temperature must be a number from 0 to 2; not nan."),
        ("--max-tokens 0", "--max-tokens must be a whole number of tokens from 1 up, or -1 for no limit; not 0."),
    ],
)
def test_bad_flags_are_usage_errors(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], line: str,
                                    message: str) -> None:
    use(ip)
    res = run(ip, f"%%lm {line}\nHi")
    assert not res.success
    err = capsys.readouterr().err
    assert err.startswith("UsageError: ") and message in err and "Traceback" not in err


def test_empty_cell_and_no_model_are_usage_errors(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%lm\n\n")
    assert "The %%lm cell is empty" in capsys.readouterr().err
    run(ip, "%%lm\nHi")
    assert "No model selected: choose one with %lm_use MODEL" in capsys.readouterr().err


def test_server_not_running(ip: InteractiveShell) -> None:
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    line = error_line(run(ip, "%%lm\nHi"))
    assert line.startswith("LMStudioConnectionError: LM Studio is not reachable at http://127.0.0.1:9")
    assert "lms server start" in line


def test_unknown_model_suggests_lm_use(ip: InteractiveShell) -> None:
    res = run(ip, "%%lm -m qwen-7b\nHi")
    line = error_line(res)
    assert line.startswith('ModelNotFoundError: LM Studio at http://127.0.0.1:')
    assert "Choose one with %lm_use MODEL" in line and "qwen2.5-7b-instruct" in line
    # the line is built from the error's fields; the error itself is the client's, as raised
    err = res.error_in_exec
    assert isinstance(err, ModelNotFoundError)
    assert err.model == "qwen-7b" and "qwen2.5-7b-instruct" in err.available
    assert str(err) == err.message and "%lm_use" not in err.message and line != f"ModelNotFoundError: {err.message}"


@pytest.mark.lmstudio_mock(jit_loading=False)
def test_no_model_loaded(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.unload_all()
    res = run(ip, "%%lm -m google/gemma-3-4b\nHi")
    err = res.error_in_exec
    assert isinstance(err, NoModelLoadedError)
    # the client's advice, shown as it is (its wording is the client's tests' business)
    assert error_line(res) == f"NoModelLoadedError: {err.message}"
    assert "load" in err.message


def test_context_length_exceeded(ip: InteractiveShell) -> None:
    use(ip)
    res = run(ip, "%%lm\n" + "word " * 5000)
    err = res.error_in_exec
    assert isinstance(err, ContextLengthExceededError)
    assert error_line(res) == f"ContextLengthExceededError: {err.message}"
    assert "context" in err.message
    # the prompt alone is too long under --chat too, with nothing remembered: no word about the conversation
    res = run(ip, "%%lm --chat\n" + "word " * 5000)
    assert error_line(res) == f"ContextLengthExceededError: {res.error_in_exec}"


@pytest.mark.parametrize("stream", ["", " --no-stream"])
def test_chat_overflow_says_the_conversation_grew_and_how_to_shrink_it(ip: InteractiveShell,
                                                                       lmstudio_mock: MockLMStudioServer,
                                                                       stream: str) -> None:
    use(ip)
    cell = f"%%lm --chat{stream}\n" + "word " * 1500  # about 1500 tokens; the model's context is 4096
    assert run(ip, cell).success and run(ip, cell).success
    res = run(ip, cell)  # the third prompt, after two remembered exchanges, does not fit
    err = res.error_in_exec
    assert isinstance(err, ContextLengthExceededError)
    assert err.context_length == 4096 and err.prompt_tokens is not None and err.prompt_tokens > 4096
    assert error_line(res) == (
        f"ContextLengthExceededError: {err.message} Under --chat the conversation is what grew: 2 remembered "
        "exchanges went before this prompt. Forget them with %lm_reset, or keep fewer with %config "
        "LMMagics.chat_memory = 1."
    )
    assert "%lm_reset" not in err.message and str(err) == err.message  # the client's error, as it was raised
    # the advice works: with one exchange remembered the same prompt fits
    run(ip, "%config LMMagics.chat_memory = 1")
    assert run(ip, cell).success
    sent = lmstudio_mock.last_request.chat_body["messages"]  # type: ignore[union-attr]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]


@pytest.mark.parametrize("stream", ["", " --no-stream"])
def test_rate_limited_says_how_long_to_wait(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer,
                                            stream: str) -> None:
    use(ip)
    lmstudio_mock.set_fault("429", times=1, retry_after=7)
    res = run(ip, f"%%lm{stream}\nHi")
    err = res.error_in_exec
    assert isinstance(err, RateLimitError) and err.retry_after == 7
    assert error_line(res) == f"RateLimitError: {err.message} The server asked to wait: try again in 7 s."
    assert "7 s" not in err.message
    assert run(ip, f"%%lm{stream}\nHi").success  # once only: the next cell is answered


def test_stream_broken_midway_keeps_the_partial_answer_visible(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lm_notebook.display.answer, "live_updates_supported", lambda shell: True)
    use(ip)
    lmstudio_mock.set_fault("drop", after_chunks=5, times=1)
    res = run(ip, "%%lm -o ans\nHi")
    assert error_line(res).startswith("LMStudioStreamError: ")
    (kept,) = shown(ip)  # the live view went when the partial answer came
    assert "· incomplete (error below)" in kept["text/markdown"]
    assert ip.user_ns["ans"].content and ip.user_ns["ans"].content in kept["text/markdown"]


def test_lm_last_error_shows_the_full_traceback(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    # through IPython's display, as every magic's output (never written to sys.stdout directly)
    run(ip, "%lm_last_error")
    assert capsys.readouterr().out == ""
    assert "No lm magic has failed" in shown(ip)[-1]["text/plain"]
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    run(ip, "%%lm\nHi")
    capsys.readouterr()
    run(ip, "%lm_last_error")
    assert capsys.readouterr().out == ""
    out = ANSI.sub("", shown(ip)[-1]["text/plain"])
    assert "Traceback" in out and "ConnectError" in out and "LMStudioConnectionError" in out


def test_errors_are_lm_studio_errors_underneath(ip: InteractiveShell) -> None:
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    res = run(ip, "%%lm\nHi")
    err = res.error_in_exec
    assert isinstance(err, LMStudioError) and isinstance(err, LMStudioConnectionError)
    # what happened, where, and what to do — the same text in str(), in a log, and on the one line shown
    assert err.base_url == "http://127.0.0.1:9"
    assert str(err) == err.message == err.args[0]
    assert err.message.startswith("LM Studio is not reachable at http://127.0.0.1:9")
    assert "lms server start" in err.message
    assert error_line(res) == f"LMStudioConnectionError: {err.message}"


@pytest.mark.skipif(sys.platform == "win32", reason="sends a real SIGINT (POSIX signals); runs on the Linux CI")
@pytest.mark.lmstudio_mock(clock=ManualClock())
def test_ctrl_c_while_a_fresh_client_asks_which_route_is_the_usual_one_line(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.set_fault("stall", path="/api/v1/models", seconds=600, times=1)  # the route probe hangs

    def press_stop() -> None:  # Ctrl-C once the cell's first request waits for the probe's answer
        lmstudio_mock.wait_for_requests(1, path="/api/v1/models")
        os.kill(os.getpid(), signal.SIGINT)

    stop = threading.Thread(target=press_stop)
    stop.start()
    try:
        res = run(ip, f"%%lm -m {MODEL}\nHi")
    finally:
        stop.join()
    assert isinstance(res.error_in_exec, KeyboardInterrupt)
    assert "stopped by you" in error_line(res)  # not a traceback through httpcore's recv
    assert [r.path for r in lmstudio_mock.requests] == ["/lmstudio-greeting", "/api/v1/models"]
