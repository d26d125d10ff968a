"""``%lm_chat``: a panel on the kernel's shared client and current model; a bad value or model is a one-line
``UsageError`` with what is allowed, and no panel is opened."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import error_line, recorder, run

from lm_notebook import ChatPanel, LMStudioClient, get_client, set_client
from lm_notebook.magics import chat as chat_magics
from lm_notebook.testing import MockLMStudioServer


def panels(ip: InteractiveShell) -> list[ChatPanel]:
    magics = ip.magics_manager.registry["ChatMagics"]
    assert isinstance(magics, chat_magics.ChatMagics)
    return magics.panels


def test_lm_chat_magic_shows_a_panel_on_the_shared_client_and_current_model(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    set_client(LMStudioClient(lmstudio_mock.url, timeout=10, model="openai/gpt-oss-20b"))
    chat_magics.register(ip)  # twice is harmless
    try:
        ip.run_line_magic("lm_chat", "-o chat -s 'Be brief.' -t 0.3")
        chat = ip.user_ns["chat"]
        assert isinstance(chat, ChatPanel)
        assert chat.client is get_client() and chat.model == "openai/gpt-oss-20b"
        assert chat.system == "Be brief." and chat.params["temperature"] == 0.3
        bundle = recorder(ip).sent[-1]["content"]["data"]
        assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["text/plain"] == repr(chat)
        assert chat.send("Hi").wait(10) is not None
    finally:
        chat_magics.unregister(ip)
        ip.user_ns.pop("chat", None)
    assert "closed" in repr(chat)  # unloading closes the panels %lm_chat opened
    assert "lm_chat" not in ip.magics_manager.magics["line"]


def test_lm_chat_passes_integrations_to_the_panel(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    set_client(LMStudioClient(lmstudio_mock.url, timeout=10, model="qwen2.5-7b-instruct"))
    chat_magics.register(ip)
    try:
        ip.run_line_magic("lm_chat", "-o chat --integration mcp/playwright --integration mcp/github")
        chat = ip.user_ns["chat"]
        assert chat.integrations == ["mcp/playwright", "mcp/github"]
        assert chat.send("look it up").wait(10) is not None
        assert "playwright_search" in chat._views[chat._conversation.entries[-1]].tools_box.value
    finally:
        chat_magics.unregister(ip)
        ip.user_ns.pop("chat", None)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("-t 9", "temperature must be a number from 0 to 2, not 9.0"),
        ("-t -1", "temperature must be a number from 0 to 2, not -1.0"),
        ("--max-tokens 0", "max_tokens must be a whole number from 1 to 10,000,000, or -1 for no limit, not 0"),
        ('-m ""', "model must be a model id such as"),
    ],
)
def test_a_value_out_of_range_is_refused_with_the_range(ip: InteractiveShell, capsys: pytest.CaptureFixture[str],
                                                        line: str, words: str) -> None:
    res = run(ip, f"%lm_chat {line}")
    assert not res.success
    err = capsys.readouterr().err
    assert err.startswith(f"UsageError: {words}") and err.count("\n") == 1 and "Traceback" not in err
    assert panels(ip) == [] and recorder(ip).sent == []  # refused before a panel was shown, never clamped


def test_an_unknown_model_is_refused_as_lm_use_refuses_it(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    lm_use_says = error_line(run(ip, "%lm_use qwen2.5-7b")).removeprefix("ModelNotFoundError: ")
    capsys.readouterr()
    res = run(ip, "%lm_chat -m qwen2.5-7b")
    assert not res.success
    line = capsys.readouterr().err
    assert line.startswith('UsageError: LM Studio at http://127.0.0.1:') and line.count("\n") == 1
    assert 'has no model "qwen2.5-7b". Did you mean "qwen2.5-7b-instruct"?' in line
    assert line == f"UsageError: {lm_use_says}\n"  # the same words as %lm_use
    assert panels(ip) == []


def test_a_model_named_is_used_as_given_and_none_means_the_current_one(ip: InteractiveShell) -> None:
    run(ip, "%lm_use qwen2.5-7b-instruct")
    assert run(ip, "%lm_chat -m google/gemma-3-4b").success
    assert run(ip, "%lm_chat").success
    named, current = panels(ip)
    assert named.model == "google/gemma-3-4b" and current.model == "qwen2.5-7b-instruct"
