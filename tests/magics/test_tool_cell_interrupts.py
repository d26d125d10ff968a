"""``%%lm --tools -o NAME`` stopped by a real Ctrl-C while the answer round streams, in a real ``InteractiveShell``
against the fake server: ``NAME`` keeps the whole conversation so far (the prompt, the tool round and its result,
the answer as far as it came), wherever the Ctrl-C lands (in the round's read, or in the cell's display code: the
stream is closed then, not read on)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import error_line, run, use

from lm_notebook.display.answer import TerminalStreamView
from lm_notebook.testing import MockLMStudioServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends a real SIGINT (POSIX signals)")
CHAT = "/v1/chat/completions"


@pytest.mark.parametrize("where", ["display", "another_thread"])
def test_ctrl_c_while_the_answer_streams_keeps_the_conversation(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer,
                                                                sigint: Any, monkeypatch: pytest.MonkeyPatch,
                                                                where: str) -> None:
    """``display``: the Ctrl-C is raised in the cell's display of the first answer text (the stream is then closed,
    not read on: the answer stalls after its first chunks); ``another_thread``: pressed from another thread once
    that text is shown, it lands in the read of the stalled round (or, the machine busy, in the display)."""
    use(ip)

    def lookup(city: str) -> str:
        """Facts about a city."""
        lmstudio_mock.set_fault("stall", seconds=600, after_chunks=2, times=1)  # the answer round stalls
        return f"{city}: 2.1 million people"

    ip.user_ns["lookup"] = lookup
    pressed: list[threading.Thread] = []
    add = TerminalStreamView.add

    def shown(view: TerminalStreamView, part: Any) -> None:  # the cell shows a piece of the answer
        add(view, part)
        answering = len([r for r in lmstudio_mock.requests if r.path == CHAT]) == 2
        if answering and part.kind == "content" and not pressed:
            pressed.append(threading.Thread(target=sigint))
            if where == "display":
                sigint()
            else:
                pressed[0].start()

    monkeypatch.setattr(TerminalStreamView, "add", shown)
    try:
        res = run(ip, "%%lm --tools lookup -o cut\nlookup Paris")
    finally:
        if pressed and pressed[0].ident is not None:
            pressed[0].join()
    assert pressed, "the answer text was never shown"
    assert isinstance(res.error_in_exec, KeyboardInterrupt), res.error_in_exec
    assert "stopped by you; the calls and the partial answer are shown above and in cut." in error_line(res)
    cut = ip.user_ns["cut"]
    assert cut.stopped and cut.result.stopped and cut.rounds == 2
    assert [(c.name, c.failure) for c in cut.calls] == [("lookup", None)]
    assert [m["role"] for m in cut.messages] == ["user", "assistant", "tool", "assistant"], cut.messages
    assert cut.messages[2]["content"] == cut.calls[0].output
    assert cut.messages[3] == {"role": "assistant", "content": cut.content} and cut.content
    assert len([r for r in lmstudio_mock.requests if r.path == CHAT]) == 2
