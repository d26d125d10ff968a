"""The panel's settings are checked where they are set: a temperature, a token limit or a model id it cannot use is
refused with the rule (never clamped, never replaced by a default), at construction and when set later; a model the
server does not list is refused as ``%lm_use`` refuses it. Against the fake LM Studio server over real loopback HTTP.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from ipywidgets.widgets import widget as widget_module
from panel_page import MODEL, chat_requests, page_text

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.client.errors import LMStudioRequestError, ModelNotFoundError
from lm_notebook.testing import MockLMStudioServer

BAD_TEMPERATURES = [5, 2.01, -1, -0.1, float("nan"), float("inf"), "0.5", True, [0.5]]
BAD_MAX_TOKENS = [0, -2, 10**8, 1.5, "7", True]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_widgets() -> int:
    """Widgets with an open comm (``Widget.widgets`` says the same, with a deprecation warning)."""
    return len(widget_module._instances)


@pytest.mark.parametrize("value", BAD_TEMPERATURES, ids=repr)
def test_a_temperature_out_of_range_is_refused_with_the_range(lmstudio_client: LMStudioClient, value: Any) -> None:
    before = _open_widgets()
    with pytest.raises(LMStudioRequestError, match="temperature must be a number from 0 to 2, not "):
        ChatPanel(lmstudio_client, temperature=value)
    assert _open_widgets() == before  # refused before anything was built


@pytest.mark.parametrize("value", BAD_MAX_TOKENS, ids=repr)
def test_max_tokens_out_of_range_is_refused_with_the_range(lmstudio_client: LMStudioClient, value: Any) -> None:
    rule = "max_tokens must be a whole number from 1 to 10,000,000, or -1 for no limit, not "
    with pytest.raises(LMStudioRequestError, match=rule):
        ChatPanel(lmstudio_client, max_tokens=value)


def test_the_edges_of_the_ranges_are_allowed(
    lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer
) -> None:
    with ChatPanel(lmstudio_client, temperature=0, max_tokens=1) as chat:
        assert (chat.temperature, chat.max_tokens) == (0.0, 1)
        chat.temperature, chat.max_tokens = 2, -1
        assert chat.send("Hi").wait(10) is not None
        body = chat_requests(lmstudio_mock)[-1]
        # no limit: -1 on the OpenAI route, left out on the native one (its default)
        assert (body["temperature"], body.get("max_tokens", -1)) == (2.0, -1)
    with ChatPanel(lmstudio_client, temperature=None, max_tokens=None) as chat:  # None: the defaults
        assert (chat.temperature, chat.max_tokens) == (0.7, -1)


def test_settings_set_later_are_refused_not_clamped(panel: ChatPanel) -> None:
    panel.temperature, panel.max_tokens = 1.5, 300
    for bad in (5, -1, float("nan")):
        with pytest.raises(LMStudioRequestError, match="from 0 to 2"):
            panel.temperature = bad
        with pytest.raises(LMStudioRequestError, match="from 0 to 2"):
            panel.temperature_slider.value = bad  # the widget itself, from code: ipywidgets would clamp it
    for bad_tokens in (0, -5, 10**8):
        with pytest.raises(LMStudioRequestError, match="-1 for no limit"):
            panel.max_tokens = bad_tokens
    with pytest.raises(LMStudioRequestError, match="-1 for no limit"):
        panel.max_tokens_input.value = -5
    assert (panel.temperature, panel.max_tokens) == (1.5, 300)  # nothing was clamped or half-set
    assert (panel.params["temperature"], panel.params["max_tokens"]) == (1.5, 300)


@pytest.mark.parametrize("model", ["", "   ", 42], ids=repr)
def test_an_empty_model_is_refused_not_replaced_by_the_current_one(lmstudio_client: LMStudioClient, model: Any) -> None:
    with pytest.raises(LMStudioRequestError, match="model must be a model id"):
        ChatPanel(lmstudio_client, model=model)


def test_setting_an_empty_model_later_is_refused(panel: ChatPanel) -> None:
    with pytest.raises(LMStudioRequestError, match="model must be a model id"):
        panel.model = " "
    assert panel.model == MODEL


def test_a_model_the_server_does_not_list_is_refused_with_the_nearest_one(lmstudio_client: LMStudioClient) -> None:
    before = _open_widgets()
    with pytest.raises(ModelNotFoundError) as caught:
        ChatPanel(lmstudio_client, model="qwen2.5-7b")
    err = caught.value
    assert err.model == "qwen2.5-7b" and MODEL in err.available
    assert f'has no model "qwen2.5-7b". Did you mean "{MODEL}"?' in err.message
    assert "Available: " in err.message and "ChatPanel(model=...)" in err.message
    assert _open_widgets() == before  # the half-built panel closed its widgets
    with ChatPanel(lmstudio_client, model=f"  {MODEL} ") as chat:  # a listed id is fine (surrounding spaces too)
        assert chat.model == MODEL


def test_a_model_is_not_refused_when_the_server_cannot_be_asked() -> None:
    with LMStudioClient(f"http://127.0.0.1:{_free_port()}") as client, ChatPanel(client, model="any-model") as chat:
        assert chat.model == "any-model" and "Could not list models" in chat.status.value


def test_an_unlisted_current_model_is_said_in_the_status_when_the_list_arrives(
    lmstudio_mock: MockLMStudioServer,
) -> None:
    # not named to the panel (it comes from the client), so it is not refused: the listing says it instead
    with LMStudioClient(lmstudio_mock.url, model="gemma-3-4b") as client, ChatPanel(client) as chat:
        chat.refresh_models()
        assert 'has no model "gemma-3-4b". Did you mean "google/gemma-3-4b"?' in page_text(chat.status)
        assert "color:#b71c1c" in chat.status.value  # said as an error
