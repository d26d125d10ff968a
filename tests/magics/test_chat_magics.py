"""``%lm_chat``: a panel on the kernel's shared client and current model."""

from __future__ import annotations

from typing import Any

import pytest

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.testing import MockLMStudioServer

MODEL = "qwen2.5-7b-instruct"


def test_lm_chat_magic_shows_a_panel_on_the_shared_client_and_current_model(
    lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    from lm_notebook import get_client, set_client
    from lm_notebook.magics import chat as chat_magics

    class Recorder(DisplayPublisher):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[dict[str, Any]] = []

        def publish(self, data: Any, *args: Any, **kwargs: Any) -> None:
            self.sent.append(data)

    shell = InteractiveShell.instance()
    monkeypatch.setenv("LMSTUDIO_BASE_URL", lmstudio_mock.url)
    set_client(LMStudioClient(lmstudio_mock.url, timeout=10, model="openai/gpt-oss-20b"))
    chat_magics.register(shell)
    chat_magics.register(shell)  # twice is harmless
    saved, shell.display_pub = shell.display_pub, Recorder()
    try:
        shell.run_line_magic("lm_chat", "-o chat -s 'Be brief.' -t 0.3")
        chat = shell.user_ns["chat"]
        assert isinstance(chat, ChatPanel)
        assert chat.client is get_client() and chat.model == "openai/gpt-oss-20b"
        assert chat.system == "Be brief." and chat.params["temperature"] == 0.3
        bundle = shell.display_pub.sent[-1]  # type: ignore[attr-defined]
        assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["text/plain"] == repr(chat)
        assert chat.send("Hi").wait(10) is not None
        result = shell.run_cell("%lm_chat --max-tokens 0")
        assert result.error_in_exec is not None and "--max-tokens" in str(result.error_in_exec)
    finally:
        shell.display_pub = saved
        chat_magics.unregister(shell)
        shell.user_ns.pop("chat", None)
        set_client(None)
    assert "closed" in repr(chat)  # unloading closes the panels %lm_chat opened
    assert "lm_chat" not in shell.magics_manager.magics["line"]


# --- Markdown rendering (chat_render) ------------------------------------------------------------------------------
