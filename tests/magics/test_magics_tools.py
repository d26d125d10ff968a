"""``%%lm --tools`` in a real kernel against the fake server: the calls as blocks above the answer, -o keeping the
ActResult, the model's bad calls shown (never a crash), an interrupt during a call, one-line usage errors."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest
from kernel_driver import ANSI, Kernel, Run, kernel_for

from lm_notebook.display.frontend import CellOutputs
from lm_notebook.testing import MockLMStudioServer, default_models

MODEL = "qwen2.5-7b-instruct"

FUNCTIONS = '''
import time

def lookup(city: str) -> dict:
    """Facts about a city.

    Args:
        city: the city's name.
    """
    return {"city": city, "population": 2_100_000}

def plot_it(title: str) -> str:
    """Draw a plot."""
    return f"plotted {title}"

def stuck(title: str) -> str:
    """Takes forever."""
    import os, urllib.request
    urllib.request.urlopen(os.environ["LMSTUDIO_BASE_URL"] + "/stuck-is-running").read()  # tells the test
    time.sleep(600)
    return "never"

import asyncio, threading
astuck_cancelled = threading.Event()

async def astuck(title: str) -> str:
    """Takes forever, at an await."""
    import os, urllib.request
    urllib.request.urlopen(os.environ["LMSTUDIO_BASE_URL"] + "/astuck-is-running").read()  # tells the test
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        astuck_cancelled.set()
        raise
    return "never"

not_a_function = 3
'''


@pytest.fixture(scope="module")
def server() -> Iterator[MockLMStudioServer]:
    models = [dataclasses.replace(m, tokens_per_second=400) if m.id == MODEL else m for m in default_models()]
    with MockLMStudioServer(models=models) as fake:
        yield fake


@pytest.fixture(scope="module")
def kernel(server: MockLMStudioServer) -> Iterator[Kernel]:
    with kernel_for(server.url) as k:
        assert k.run(f"%load_ext lm_notebook\n%lm_use {MODEL}").status == "ok"
        assert k.run(FUNCTIONS).status == "ok"
        yield k


def saved(run: object) -> list[dict[str, object]]:
    outputs = CellOutputs()
    for message in run.messages:  # type: ignore[attr-defined]
        outputs.add(message)
    return outputs.outputs()


def test_calls_show_as_blocks_above_the_answer(kernel: Kernel) -> None:
    run = kernel.run("%%lm --tools lookup,plot_it -o r\nlookup the city, then plot_it")
    assert run.status == "ok"
    live = [str(m["content"]["data"]) for m in run.of_type("display_data", "update_display_data")
            if m["content"].get("transient", {}).get("display_id")]
    assert any("lm-tool-call" in text for text in live), "the finished blocks should be seen live"
    outputs = saved(run)
    assert [o["output_type"] for o in outputs] == ["display_data", "execute_result"]
    blocks = outputs[0]["data"]
    assert blocks["text/html"].count("<details") == 2  # type: ignore[index, union-attr]
    assert "<code>lookup</code>" in blocks["text/html"] and "population" in blocks["text/html"]  # type: ignore[index]
    assert blocks["text/plain"].splitlines()[0].startswith('🔧 lookup(city="')  # type: ignore[index, union-attr]
    answer = outputs[1]["data"]["text/markdown"]  # type: ignore[index]
    assert answer.startswith("From the tools: lookup returned:") and "lm-tool-call" not in answer
    check = kernel.run("assert type(r).__name__ == 'ActResult' and r.rounds == 2, r\n"
                       "assert [c.name for c in r.calls] == ['lookup', 'plot_it'] and all(c.ok for c in r.calls)")
    assert check.status == "ok", check.text()


def test_a_bad_call_is_shown_and_sent_back(kernel: Kernel, server: MockLMStudioServer) -> None:
    server.set_fault("tool_unknown_name", times=1)
    run = kernel.run("%%lm --tools lookup -o bad\nlookup it")
    assert run.status == "ok"
    blocks = saved(run)[0]["data"]
    assert "lm-tool-error" in blocks["text/html"]  # type: ignore[index]
    assert "There is no tool named" in blocks["text/plain"]  # type: ignore[index]
    assert kernel.run("assert bad.tool_errors == 1 and bad.calls[0].failure == 'unknown_tool'").status == "ok"


def test_no_stream_shows_the_same(kernel: Kernel) -> None:
    run = kernel.run("%%lm --tools lookup --no-stream -o quiet\nlookup it")
    assert run.status == "ok"
    assert [o["output_type"] for o in saved(run)] == ["display_data", "execute_result"]
    assert kernel.run("assert quiet.rounds == 2").status == "ok"


def interrupted(kernel: Kernel, server: MockLMStudioServer, cell_text: str, running_path: str) -> Run:
    """Run ``cell_text`` and press Stop once the function tells ``running_path``; the cell's run."""
    runs: list[Run] = []
    before = len(server.wait_for_requests(0, path=running_path))  # an earlier test's function told it too
    cell = threading.Thread(target=lambda: runs.append(kernel.run(cell_text, timeout=120)))
    cell.start()
    server.wait_for_requests(before + 1, path=running_path, timeout=60)  # this cell's function is running
    for _ in range(60):
        # Stop, pressed again while the cell runs: on a loaded machine ipykernel 7 can lose one SIGINT
        kernel.km.interrupt_kernel()
        cell.join(2)
        if not cell.is_alive():
            break
    assert runs, "the cell did not end after Stop"
    (run,) = runs
    return run


@pytest.mark.parametrize("no_stream", [False, True], ids=["streamed", "no-stream"])
def test_interrupt_during_a_call_stops_the_loop(kernel: Kernel, server: MockLMStudioServer, no_stream: bool) -> None:
    """Stop while a plain function runs: the act ends, ``-o`` keeps it and the message says so (with --no-stream
    too: before, its cell kept nothing and pointed at an ``err.act_result`` no notebook has)."""
    kernel.run("cut = None")
    flag = " --no-stream" if no_stream else ""
    run = interrupted(kernel, server, f"%%lm --tools stuck{flag} -o cut\nstuck", "/stuck-is-running")
    assert run.status == "error"
    (error,) = run.of_type("error")
    shown = "the calls are" if no_stream else "the calls and the partial answer are"
    assert [ANSI.sub("", line) for line in error["content"]["traceback"]] == [
        f"ActInterrupted: stopped by you; {shown} shown above and in cut."
    ]
    if no_stream:
        assert "stuck(title=" in str(run.of_type("display_data")), "the stopped call's block is shown"
    else:
        live = [str(m["content"]["data"]) for m in run.of_type("display_data", "update_display_data")
                if m["content"].get("transient", {}).get("display_id")]
        assert any("stuck(title=" in text and "running…" in text for text in live), "the running call is shown live"
    check = kernel.run("assert cut.stopped and cut.rounds == 1, cut\n"
                       "assert [(c.name, c.failure) for c in cut.calls] == [('stuck', 'stopped')], cut.calls")
    assert check.status == "ok", check.text()


def test_interrupt_during_an_async_call_cancels_it(kernel: Kernel, server: MockLMStudioServer) -> None:
    """Stop while an ``async def`` tool awaits: the coroutine is cancelled and the cell ends at once; ``-o`` keeps
    the finished call and a conversation to continue from."""
    run = interrupted(kernel, server, "%%lm --tools plot_it,astuck -o acut\nplot_it then astuck",
                      "/astuck-is-running")
    assert run.status == "error"
    (error,) = run.of_type("error")
    assert ANSI.sub("", error["content"]["traceback"][0]).endswith("stopped by you; the calls and the partial answer "
                                                                   "are shown above and in acut.")
    check = kernel.run(
        "assert astuck_cancelled.wait(30), 'the coroutine was not cancelled'\n"
        "assert acut.stopped and acut.rounds == 1, acut\n"
        "assert [(c.name, c.failure) for c in acut.calls] == [('plot_it', None), ('astuck', 'stopped')], acut.calls\n"
        "assert [m['role'] for m in acut.messages] == ['user', 'assistant', 'tool', 'tool'], acut.messages")
    assert check.status == "ok", check.text()


@pytest.mark.parametrize(("line", "words"), [
    ("--tools nowhere", "there is no 'nowhere' in the notebook"),
    ("--tools not_a_function", "not_a_function is not a function (it is int 3)"),
    ("--tools ,", "--tools needs the names of your functions"),
])
def test_bad_tools_are_one_line_usage_errors(kernel: Kernel, line: str, words: str) -> None:
    run = kernel.run(f"%%lm {line}\nhi")
    assert run.status == "error"
    (stream,) = run.of_type("stream")
    assert stream["content"]["text"].startswith("UsageError: --tools") and words in stream["content"]["text"]
    assert not run.of_type("display_data")
