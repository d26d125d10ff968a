"""Stop pressed again while a stopped ``%%lm`` cell winds down (shows what it keeps, makes its one line), in a real
``InteractiveShell`` against the fake server, with real SIGINTs: the cell still ends in its one line, with all it
shows and keeps; the press is held until the cell ends (then Ctrl-C works as before)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import error_line, run, use

import lm_notebook.magics.tool_cells as tool_cells
from lm_notebook.client.act_types import ActInterrupted
from lm_notebook.display.act_view import ToolCallsView
from lm_notebook.display.answer import TerminalStreamView
from lm_notebook.testing import CHAT_PATHS, MockLMStudioServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends a real SIGINT (POSIX signals)")
CHAT = "/v1/chat/completions"


def pressed_again(sigint: Callable[[], None], original: Callable[..., Any], presses: list[str]) -> Callable[..., Any]:
    """``original``, with Stop pressed again as it starts (the wind-down of the stopped cell)."""
    def winding_down(*args: Any, **kwargs: Any) -> Any:
        presses.append("again")
        sigint()
        return original(*args, **kwargs)
    return winding_down


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "no-stream"])
def test_stop_pressed_again_while_a_stopped_tools_cell_winds_down(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, sigint: Callable[[], None],
        monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    use(ip)
    presses: list[str] = []

    def stuck(title: str) -> str:
        """Takes forever."""
        presses.append("stop")
        sigint()  # Stop, while the function runs
        return "never"

    ip.user_ns["stuck"] = stuck
    if stream:
        monkeypatch.setattr(ToolCallsView, "show_blocks", pressed_again(sigint, ToolCallsView.show_blocks, presses))
    else:
        monkeypatch.setattr(tool_cells, "show_bundle", pressed_again(sigint, tool_cells.show_bundle, presses))
    res = run(ip, f"%%lm --tools stuck{'' if stream else ' --no-stream'} -o cut\nstuck it")
    assert presses == ["stop", "again"]
    assert isinstance(res.error_in_exec, ActInterrupted), res.error_in_exec
    shown = "the calls and the partial answer are" if stream else "the calls are"
    assert error_line(res) == f"ActInterrupted: stopped by you; {shown} shown above and in cut."
    assert [(c.name, c.failure) for c in ip.user_ns["cut"].calls] == [("stuck", "stopped")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C works again once the cell ended"


def test_stop_pressed_again_while_a_stopped_answer_winds_down(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, sigint: Callable[[], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    use(ip)
    presses: list[str] = []
    add = TerminalStreamView.add

    def shown(view: TerminalStreamView, part: Any) -> None:
        add(view, part)
        if part.kind == "content" and not presses:
            presses.append("stop")
            sigint()  # Stop, once the answer shows

    monkeypatch.setattr(TerminalStreamView, "add", shown)
    monkeypatch.setattr(TerminalStreamView, "show_final",
                        pressed_again(sigint, TerminalStreamView.show_final, presses))
    res = run(ip, "%%lm -o cut\nhello")
    assert presses == ["stop", "again"]
    assert isinstance(res.error_in_exec, KeyboardInterrupt), res.error_in_exec
    assert error_line(res) == "KeyboardInterrupt: stopped by you; the partial answer is shown above and in cut."
    assert ip.user_ns["cut"].content
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C works again once the cell ended"


def test_stop_while_a_no_stream_tools_cell_asks_the_model(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, sigint: Callable[[], None]) -> None:
    """Stop before the model's first answer in ``%%lm --tools --no-stream``: one line, not a raw traceback."""
    use(ip)
    def stuck(title: str) -> str:
        """Never called."""
        return "never"

    ip.user_ns["stuck"] = stuck
    lmstudio_mock.set_fault("stall", seconds=600, after_chunks=0, times=1)
    presser = threading.Thread(target=lambda: (lmstudio_mock.wait_for_requests(1, path=CHAT, timeout=60), sigint()))
    presser.start()
    try:
        res = run(ip, "%%lm --tools stuck --no-stream\nstuck it")
    finally:
        presser.join()
    assert isinstance(res.error_in_exec, ActInterrupted), res.error_in_exec  # act() says what it kept: the prompt
    assert error_line(res) == "ActInterrupted: stopped before the answer arrived; the connection is closed."
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C works again once the cell ended"


def test_stop_while_a_no_stream_tools_cell_waits_for_the_model_keeps_the_calls(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, sigint: Callable[[], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop while ``act()`` waits for the model's second round (after a finished call), then again while the cell
    winds down: one line, the call shown and kept in ``-o``, ``%lm_last_error`` set."""
    use(ip)
    presses: list[str] = []

    def press_at_the_answer() -> None:
        lmstudio_mock.wait_for_requests(2, path=CHAT_PATHS, timeout=30)
        presses.append("stop")
        sigint()

    def lookup(city: str) -> str:
        """Facts about a city."""
        lmstudio_mock.set_fault("stall", seconds=600, times=1)  # the next round (the answer) never comes
        threading.Thread(target=press_at_the_answer, daemon=True).start()
        return f"{city}: 2.1 million people"

    ip.user_ns["lookup"] = lookup
    monkeypatch.setattr(tool_cells, "show_bundle", pressed_again(sigint, tool_cells.show_bundle, presses))
    res = run(ip, "%%lm --tools lookup --no-stream -o cut\nlookup Paris")
    assert isinstance(res.error_in_exec, ActInterrupted), res.error_in_exec
    assert presses == ["stop", "again"]
    assert error_line(res) == "ActInterrupted: stopped by you; the calls are shown above and in cut."
    assert [(c.name, c.failure) for c in ip.user_ns["cut"].calls] == [("lookup", None)]
    assert [m["role"] for m in ip.user_ns["cut"].messages] == ["user", "assistant", "tool"]
    assert ip.magics_manager.registry["LMMagics"].last_error is res.error_in_exec  # type: ignore[attr-defined]


def press_when_asked(server: MockLMStudioServer, sigint: Callable[[], None], requests: int) -> None:
    """Stop, once the server has received ``requests`` chat requests (the last one stalled)."""
    def press() -> None:
        server.wait_for_requests(requests, path=CHAT_PATHS, timeout=30)
        sigint()

    threading.Thread(target=press, daemon=True).start()


def test_ctrl_c_works_again_in_the_rest_of_a_cell_that_caught_the_stop(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, sigint: Callable[[], None]) -> None:
    """A cell driving ``%%lm`` in a loop, catching each Stop: every prompt can be stopped, not only the first (the
    handler is back as soon as the stopped magic's wind-down is done, not only when the cell ends)."""
    use(ip)
    lmstudio_mock.set_fault("stall", seconds=600, times=None)
    handlers: list[object] = []
    ip.user_ns.update(press=lambda n: press_when_asked(lmstudio_mock, sigint, n), handlers=handlers,
                      getsignal=lambda: signal.getsignal(signal.SIGINT))
    res = run(ip, "for n, q in enumerate(['one', 'two'], 1):\n"
                  "    press(n)\n"
                  "    try:\n"
                  "        get_ipython().run_cell_magic('lm', '--no-stream', q)\n"
                  "    except KeyboardInterrupt as err:\n"
                  "        handlers.append((q, type(err).__name__, getsignal()))\n")
    assert res.error_in_exec is None, res.error_in_exec  # before: the second prompt ran to the client's timeout
    assert handlers == [(q, "KeyboardInterrupt", signal.default_int_handler) for q in ("one", "two")]


def test_ctrl_c_works_again_after_the_magic_stopped_outside_a_cell(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, sigint: Callable[[], None]) -> None:
    use(ip)
    lmstudio_mock.set_fault("stall", seconds=600, times=1)
    press_when_asked(lmstudio_mock, sigint, 1)
    with pytest.raises(KeyboardInterrupt):
        ip.run_cell_magic("lm", "--no-stream", "three")  # a script's call: no run_cell, no post_execute
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # before: SIG_IGN until some later cell
