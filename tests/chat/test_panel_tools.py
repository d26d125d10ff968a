"""ChatPanel(tools=[...]) against the fake server: each answer is an act, its calls shown as blocks above the text;
Stop during a call settles the answer at once and no further call or round follows."""

from __future__ import annotations

import threading

import pytest
from panel_page import answer_view, chat_requests

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.testing import MockLMStudioServer


def lookup(city: str) -> str:
    """Population of a city.

    Args:
        city: its name.
    """
    return "2.1 million"


def test_an_answer_with_tools_shows_the_calls(lmstudio_client: LMStudioClient,
                                              lmstudio_mock: MockLMStudioServer) -> None:
    with ChatPanel(lmstudio_client, tools=[lookup]) as panel:
        result = panel.send("lookup Paris").wait(10)
        assert result is not None and result.content.startswith("From the tools: lookup returned: 2.1 million")
        view = answer_view(panel)
        blocks = view.tools_box.value
        assert blocks.count("<details") == 1 and "<code>lookup</code>" in blocks and "2.1 million" in blocks
        assert view.box.children.index(view.tools_box) < view.box.children.index(view.content.box)
        assert panel.history[-1] == {"role": "assistant", "content": result.content}
        sent = chat_requests(lmstudio_mock)
        assert len(sent) == 2 and sent[0]["tools"][0]["function"]["name"] == "lookup"
        assert sent[1]["messages"][-1]["role"] == "tool"


def test_an_answer_without_tools_has_no_blocks(panel: ChatPanel) -> None:
    assert panel.send("hi").wait(10) is not None
    assert answer_view(panel).tools_box is None


def test_stop_during_a_call_settles_at_once_and_ends_the_loop(lmstudio_client: LMStudioClient,
                                                             lmstudio_mock: MockLMStudioServer) -> None:
    running, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow_lookup(city: str) -> str:
        ran.append("slow")
        running.set()
        release.wait(30)
        return "late"

    def plot_it(title: str) -> str:
        ran.append("plot")
        return "drawn"

    slow_lookup.__name__ = "lookup"
    with ChatPanel(lmstudio_client, tools=[slow_lookup, plot_it]) as panel:
        reply = panel.send("lookup then plot_it")
        assert running.wait(10)
        panel.stop()  # returns within its grace, the function still running
        assert reply.done and reply.stopped and not panel.busy
        assert "Stopped" in panel.status.value
        release.set()
        for reader in [t for t in threading.enumerate() if t.name == "lm_notebook-chat-reader"]:
            reader.join(10)  # the function returned: the loop ends there
        assert ran == ["slow"]  # plot_it never ran
        assert len(chat_requests(lmstudio_mock)) == 1  # and no round followed
        assert "running…" in answer_view(panel).tools_box.value


def test_bad_tools_are_refused_when_the_panel_is_made(lmstudio_client: LMStudioClient) -> None:
    with pytest.raises(LMStudioRequestError, match="Two tools are named 'lookup'"):
        ChatPanel(lmstudio_client, tools=[lookup, lookup])


# --- MCP integrations: tools LM Studio runs itself (native route) ----------------------------------------------------

def test_integrations_show_the_servers_tool_calls_as_blocks_and_chain_the_stored_chat(
        lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer) -> None:
    with ChatPanel(lmstudio_client, integrations=["mcp/playwright"], system="Be brief.") as panel:
        first = panel.send("find the docs").wait(10)
        assert first is not None and first.content and first.response_id
        view = answer_view(panel)
        blocks = view.tools_box.value
        assert blocks.count("<details") == 1 and "<code>playwright_search</code>" in blocks
        assert "fake playwright result" in blocks and "find the docs" in blocks  # the output and the arguments
        assert view.box.children.index(view.tools_box) < view.box.children.index(view.content.box)
        second = panel.send("and the next page?").wait(10)
        assert second is not None and second.content, panel.status.value
    sent = [r.json for r in lmstudio_mock.requests if r.path == "/api/v1/chat"]
    assert len(sent) == 2
    assert all(body["integrations"] == ["mcp/playwright"] and body["store"] is True for body in sent)
    assert sent[0]["input"] == "find the docs" and sent[0]["system_prompt"] == "Be brief."
    # the second continues the first's stored chat (the native route has no history of its own)
    assert sent[1]["input"] == "and the next page?" and sent[1]["previous_response_id"] == first.response_id
    assert "system_prompt" not in sent[1]
    assert panel.history[-1] == {"role": "assistant", "content": second.content}


def test_a_failed_integration_call_is_a_failed_block(lmstudio_client: LMStudioClient) -> None:
    with ChatPanel(lmstudio_client, integrations=["mcp/failing"]) as panel:
        assert panel.send("try it").wait(10) is not None
        blocks = answer_view(panel).tools_box.value
        assert "lm-tool-error" in blocks and "not reachable" in blocks


def test_integrations_are_checked_when_the_panel_is_made(lmstudio_client: LMStudioClient) -> None:
    with pytest.raises(LMStudioRequestError, match="cannot be combined"):
        ChatPanel(lmstudio_client, tools=[lookup], integrations=["mcp/playwright"])
    with pytest.raises(LMStudioRequestError, match="plugin ids such as 'mcp/playwright'"):
        ChatPanel(lmstudio_client, integrations=[""])
    with ChatPanel(lmstudio_client, integrations="mcp/playwright") as panel:  # one id alone
        assert panel.integrations == ["mcp/playwright"]


def test_calls_without_ids_to_one_tool_keep_their_own_blocks() -> None:
    """A server that sends no call ids: two calls to the same tool in one round are matched in order."""
    from lm_notebook.chat.tool_answers import ToolAnswerStream
    from lm_notebook.client.act_types import ActPart, ToolCallRecord

    first = ToolCallRecord("lookup", {"city": "Paris"}, round=1, id=None)
    second = ToolCallRecord("lookup", {"city": "Rome"}, round=1, id=None)
    parts = [ActPart("tool_call", "lookup", first), ActPart("tool_call", "lookup", second),
             ActPart("tool_result", "A", ToolCallRecord("lookup", {"city": "Paris"}, output="A", round=1, id=None)),
             ActPart("tool_result", "B", ToolCallRecord("lookup", {"city": "Rome"}, output="B", round=1, id=None))]
    stream = ToolAnswerStream(iter(parts))  # type: ignore[arg-type]  # what an ActStream yields, in that order
    list(stream.iter_parts())
    blocks = stream.blocks
    assert [(b.arguments, b.output, b.running) for b in blocks] == [({"city": "Paris"}, "A", False),
                                                                     ({"city": "Rome"}, "B", False)]
