"""Messages are checked before anything is sent: the accepted forms pass, everything else is one line that shows
them (each case for the sync and the async client, through ``httpx.MockTransport``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from client_doubles import Harness, completion

from lm_notebook import LMStudioRequestError

ACCEPTED = '{"role": "user", "content": "Hi"}'  # a piece of the accepted forms every refusal shows


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def harness(mode: str) -> Harness:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(200, json=completion("ok"))
        return httpx.Response(200, json={"lmstudio": True})

    return Harness(mode, handle, model="m")


TOOL_CALL = {"id": "1", "type": "function", "function": {"name": "add", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("Hi", [{"role": "user", "content": "Hi"}]),
        ({"role": "user", "content": "Hi"}, [{"role": "user", "content": "Hi"}]),  # one message: a list of one
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]),
        ([{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                       {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
         [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                       {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
        ([{"role": "user", "content": "2+3?"}, {"role": "assistant", "tool_calls": [TOOL_CALL]},
          {"role": "tool", "tool_call_id": "1", "content": "5"}],
         [{"role": "user", "content": "2+3?"}, {"role": "assistant", "tool_calls": [TOOL_CALL]},
          {"role": "tool", "tool_call_id": "1", "content": "5"}]),
        ([{"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}, {"role": "user", "content": "and?"}],
         [{"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}, {"role": "user", "content": "and?"}]),
        (({"role": "user", "content": "a tuple"},), [{"role": "user", "content": "a tuple"}]),
    ],
)
def test_accepted_forms_are_sent_as_messages(mode: str, given: Any, sent: list[dict[str, Any]]) -> None:
    h = harness(mode)
    assert h.call("chat", given).content == "ok"
    assert h.body()["messages"] == sent


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (42, "messages is 42 (int)"),
        (None, "messages is None"),
        (b"hi", "messages is b'hi' (bytes)"),
        ([], "messages is empty"),
        (["hi"], "messages[0] is 'hi' (str), not a message dict"),
        ([{"role": "wizard", "content": "x"}], "messages[0] has role 'wizard'"),
        ({"role": "wizard", "content": "x"}, "the message has role 'wizard'"),
        ([{"content": "x"}], "messages[0] has no 'role'"),
        ([{"role": "user"}], "messages[0] (user) has no content"),
        ([{"role": "user", "content": None}], "messages[0] (user) has no content"),
        ([{"role": "assistant"}], "messages[0] (assistant) has no content"),  # no tool_calls: it needs content
        ([{"role": "user", "content": "ok"}, {"role": "user", "content": 42}],
         "messages[1] has content 42, which is neither a string nor a list of parts"),
        ([{"role": "user", "content": {"text": "x"}}], "messages[0] has content {'text': 'x'}"),
        ([{"role": "user", "content": [{"text": "x"}]}], "messages[0].content[0] is {'text': 'x'}, not a part"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages[0].content[0] is a text part"),
        ([{"role": "user", "content": []}], "messages[0] has content []"),
    ],
)
def test_invalid_messages_are_refused_before_sending_showing_the_accepted_forms(
    mode: str, given: Any, says: str
) -> None:
    h = harness(mode)
    with pytest.raises(LMStudioRequestError) as info:
        h.call("chat", given)
    text = str(info.value)
    assert "\n" not in text and says in text and ACCEPTED in text, text
    assert h.requests == []  # refused before anything was sent


def test_stream_chat_and_send_message_check_messages_too(mode: str) -> None:
    h = harness(mode)
    with pytest.raises(LMStudioRequestError, match="has role 'wizard'"):
        h.stream([{"role": "wizard", "content": "x"}])
    with pytest.raises(LMStudioRequestError, match=r"messages\[0\] \(user\) has no content"):
        h.call("send_message", "Hi", conversation_history=[{"role": "user"}])
    assert h.requests == []
