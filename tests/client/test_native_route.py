"""The routing rule (one pure function) as a table, and the native route's request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from lm_notebook import LMStudioClient, LMStudioRequestError
from lm_notebook.client.native_route import choose_route, native_payload, why_not_native

SYS = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello"}
IMAGE_USER = {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}

# (route, server has the native route, messages, params) → the route taken
TABLE: list[tuple[str, bool | None, list[dict[str, Any]], dict[str, Any], str]] = [
    ("auto", True, [USER], {}, "native"),
    ("auto", True, [SYS, USER], {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                                 "repeat_penalty": 1.1, "max_tokens": 64, "reasoning_effort": "low"}, "native"),
    ("auto", True, [USER], {"context_length": 8192}, "native"),
    ("auto", True, [IMAGE_USER], {}, "native"),
    ("auto", True, [USER], {"stream_options": {"include_usage": True}}, "native"),  # the client's own field
    # not known yet: the rule says "openai"; the client learns it before sending (greeting + /api/v1/models, once a
    # client: RoutingClient._routed) and sends the native body instead when the server has the route
    ("auto", None, [USER], {}, "openai"),
    ("auto", False, [USER], {}, "openai"),  # LM Studio 0.3, llama.cpp
    ("auto", True, [SYS, USER, ASSISTANT, USER], {}, "openai"),  # a history
    ("auto", True, [USER], {"tools": [{"type": "function"}]}, "openai"),
    ("auto", True, [USER], {"response_format": {"type": "text"}}, "openai"),
    ("auto", True, [USER], {"seed": 1}, "openai"),
    ("auto", True, [USER], {"stop": ["\n"]}, "openai"),
    ("auto", True, [USER], {"presence_penalty": 0.5}, "openai"),
    ("auto", True, [USER], {"frequency_penalty": 0.5}, "openai"),
    ("auto", True, [USER], {"logit_bias": {"1": 2}}, "openai"),
    ("auto", True, [ASSISTANT], {}, "openai"),
    ("auto", None, [USER], {"store": True}, "native"),  # native-only parameters choose the native route
    ("auto", None, [USER], {"previous_response_id": "resp_1"}, "native"),  # …and fail clearly where it is missing
    ("auto", True, [USER], {"integrations": [], "seed": 1}, "openai"),  # no integration: nothing native-only
    ("auto", None, [USER], {"integrations": ["mcp/playwright"]}, "native"),
    ("openai", True, [USER], {}, "openai"),
    ("openai", True, [USER], {"store": False}, "openai"),
    ("native", None, [USER], {}, "native"),
    ("native", False, [SYS, USER], {"max_tokens": 10}, "native"),
]


@pytest.mark.parametrize(("route", "available", "messages", "params", "expected"), TABLE)
def test_the_routing_rule(route: str, available: bool | None, messages: list[dict[str, Any]],
                          params: dict[str, Any], expected: str) -> None:
    assert choose_route(route, native_available=available, messages=messages, params=params) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("route", "messages", "params", "said"), [
    ("native", [USER], {"seed": 1}, "cannot carry the parameter seed"),
    ("native", [SYS, USER, ASSISTANT, USER], {}, "a conversation of several turns"),
    ("native", [USER], {"tools": []}, "the parameter tools"),
    ("auto", [USER], {"store": True, "response_format": {"type": "text"}}, "store (native-only)"),
    ("openai", [USER], {"integrations": ["mcp/x"]}, "integrations exist(s) only on LM Studio 0.4's native"),
    ("openai", [USER], {"previous_response_id": "resp_1"}, "route='openai' was asked for"),
])
def test_a_request_the_chosen_route_cannot_carry_is_refused_in_one_line(
        route: str, messages: list[dict[str, Any]], params: dict[str, Any], said: str) -> None:
    with pytest.raises(LMStudioRequestError) as info:
        choose_route(route, native_available=True, messages=messages, params=params)  # type: ignore[arg-type]
    assert said in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("route", ["auto", "openai", "native"])
def test_native_only_parameters_where_the_server_is_known_to_have_no_native_route_are_refused(route: str) -> None:
    with pytest.raises(LMStudioRequestError) as info:
        choose_route(route, native_available=False, messages=[USER],  # type: ignore[arg-type]
                     params={"previous_response_id": "resp_1"})
    assert "previous_response_id need(s) LM Studio 0.4's native chat route, and this server has none" in str(info.value)


def test_why_not_native_names_the_reason() -> None:
    assert why_not_native([USER], {}) is None
    assert why_not_native([USER], {"seed": 3}) == "the parameter seed"


def test_the_native_body_uses_the_native_names_and_does_not_store_by_default() -> None:
    body = native_payload([SYS, USER], "m", True, {"max_tokens": 64, "reasoning_effort": "none", "temperature": 0.1,
                                                   "integrations": ["mcp/playwright"], "context_length": 4096})
    assert body == {"model": "m", "system_prompt": "Be brief.", "input": "Hi", "max_output_tokens": 64,
                    "reasoning": "off", "temperature": 0.1, "integrations": ["mcp/playwright"],
                    "context_length": 4096, "stream": True, "store": False}
    assert native_payload([USER], "m", False, {"max_tokens": -1})["store"] is False
    assert "max_output_tokens" not in native_payload([USER], "m", False, {"max_tokens": -1})
    stored = native_payload([USER], "m", False, {"store": True, "previous_response_id": "resp_9"})
    assert stored["store"] is True and stored["previous_response_id"] == "resp_9"


def test_images_become_native_input_items() -> None:
    body = native_payload([IMAGE_USER], "m", False, {})
    assert body["input"] == [{"type": "message", "content": "What is it?"},
                             {"type": "image", "data_url": "data:image/png;base64,AAAA"}]


def test_a_bad_route_is_refused_where_it_is_given() -> None:
    with pytest.raises(LMStudioRequestError, match='route must be "auto"'):
        LMStudioClient("http://127.0.0.1:9", route="fast")  # type: ignore[arg-type]
    client = LMStudioClient("http://127.0.0.1:9", route="native")
    assert client.route == "native"
    assert LMStudioClient.from_client(client).route == "native" and client.with_options(timeout=5).route == "native"
    with pytest.raises(LMStudioRequestError):
        client.route = "x"  # type: ignore[assignment]
    client.close()
