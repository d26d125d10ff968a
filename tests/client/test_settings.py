"""Settings checked where they are set: timeouts (infinity is no read timeout; NaN, booleans, zero, negatives
refused), base URLs as users paste them, and a URL's user and password (sent as Basic auth, never shown)."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from lm_notebook import AsyncLMStudioClient, LMStudioClient, LMStudioError, LMStudioRequestError
from lm_notebook.client import normalize_base_url, resolve_timeout
from lm_notebook.testing import MockLMStudioServer


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LMSTUDIO_TIMEOUT", "LMSTUDIO_BASE_URL", "LM_API_TOKEN", "LMSTUDIO_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


# --- 8. timeouts -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("inf"), 1e12])
def test_infinity_and_huge_timeouts_mean_no_read_timeout_and_work_over_http(
    server: MockLMStudioServer, value: float
) -> None:
    model = server.loaded_models()[0]
    with LMStudioClient(server.url, timeout=value) as client:
        assert client.timeout.read is None and client.timeout.connect == 5.0  # connect stays short
        assert client.chat("hi", model=model).content  # before the fix: OverflowError at request time
        assert "".join(client.stream_chat("hi", model=model))

    async def run() -> str:
        async with AsyncLMStudioClient(server.url, timeout=value) as aclient:
            return (await aclient.chat("hi", model=model)).content

    assert asyncio.run(run())


def test_lmstudio_timeout_inf_is_no_read_timeout(server: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSTUDIO_TIMEOUT", "inf")
    with LMStudioClient(server.url) as client:
        assert client.timeout.read is None and client.timeout.connect == 5.0
        assert client.chat("hi", model=server.loaded_models()[0]).content


def test_an_httpx_timeout_with_infinite_limits_is_no_limit() -> None:
    timeout = resolve_timeout(httpx.Timeout(float("inf"), connect=3))
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (3, None, None, None)


@pytest.mark.parametrize("value", [float("nan"), True, False, 0, 0.0, -1, -0.5, "soon", float("-inf")])
def test_bad_timeouts_are_refused_at_construction_naming_the_setting(value: Any) -> None:
    for make in (LMStudioClient, AsyncLMStudioClient):
        with pytest.raises(LMStudioRequestError) as info:
            make(timeout=value)
        text = one_line(info.value)
        assert text.startswith("timeout must be") and repr(value) in text and "inf" in text


@pytest.mark.parametrize("value", ["nan", "0", "-5", "soon", "true"])
def test_bad_lmstudio_timeout_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LMSTUDIO_TIMEOUT", value)
    with pytest.raises(LMStudioRequestError) as info:
        LMStudioClient()
    text = one_line(info.value)
    assert text.startswith("LMSTUDIO_TIMEOUT must be") and repr(value) in text


def test_a_bad_limit_in_an_httpx_timeout_is_refused_by_name() -> None:
    with pytest.raises(LMStudioRequestError, match=r"^timeout\.read must be"):
        LMStudioClient(timeout=httpx.Timeout(5.0, read=float("nan")))


# --- 9. base URLs as users paste them -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("pasted", "base"),
    [
        ("http://localhost:1234/v1/chat/completions", "http://localhost:1234"),
        ("http://localhost:1234/v1/chat/completions/", "http://localhost:1234"),
        ("http://localhost:1234/v1/models", "http://localhost:1234"),
        ("http://localhost:1234/v1", "http://localhost:1234"),
        ("http://localhost:1234/v1/", "http://localhost:1234"),
        ("http://localhost:1234/api/v0", "http://localhost:1234"),
        ("http://localhost:1234/api/v0/models", "http://localhost:1234"),
        ("http://localhost:1234/api/v1", "http://localhost:1234"),
        ("http://localhost:1234/api/v1/chat", "http://localhost:1234"),
        ("http://localhost:1234/api/v1/models/", "http://localhost:1234"),
        ("http://localhost:1234//", "http://localhost:1234"),
        ("localhost:1234", "http://localhost:1234"),
        ("  127.0.0.1:1234/v1  ", "http://127.0.0.1:1234"),
        ("http://[::1]:1234/v1/chat/completions", "http://[::1]:1234"),
        ("https://gpu.example.org/lmstudio/v1/chat/completions?x=1", "https://gpu.example.org/lmstudio"),
        ("http://localhost:1234/lmstudio-greeting", "http://localhost:1234"),
    ],
)
def test_pasted_endpoints_are_reduced_to_the_servers_base(pasted: str, base: str) -> None:
    assert normalize_base_url(pasted) == base
    assert LMStudioClient(pasted).base_url == base


@pytest.mark.parametrize("tail", ["/v1/chat/completions", "/v1/models/", "/api/v1", "/api/v0", "/api/v1/chat"])
def test_a_pasted_endpoint_reaches_the_server_over_http(server: MockLMStudioServer, tail: str) -> None:
    with LMStudioClient(server.url + tail) as client:
        assert len(client.list_models()) == len(server.models)  # /api/v1 used to list 0 models
        assert client.chat("hi", model=server.loaded_models()[0]).content  # /v1/chat/completions was doubled
    assert {r.path for r in server.requests} <= {"/lmstudio-greeting", "/api/v1/models", "/v1/chat/completions",
                                                 "/api/v1/chat"}  # after the 0.4 model list, the native chat


@pytest.mark.parametrize(
    "bad", ["::1:1234", "http://::1:1234", "http://[::1:1234", "http://localhost:abc", "http://localhost:99999",
            "ws://localhost:1234", "http://:1234", "   ", "http://a b:1234"],
)
def test_an_unusable_url_is_one_clear_line_naming_it(bad: str) -> None:
    with pytest.raises(LMStudioRequestError) as info:
        LMStudioClient(bad)
    text = one_line(info.value)
    assert text.startswith((f"base_url {bad.strip()!r}", f"base_url must be the server's address, not {bad!r}"))
    assert "http://[::1]:1234" in text and "http://127.0.0.1:1234" in text
    assert not isinstance(info.value.__cause__, httpx.InvalidURL)


def test_an_unusable_lmstudio_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSTUDIO_BASE_URL", "::1:1234")
    with pytest.raises(LMStudioRequestError, match=r"^LMSTUDIO_BASE_URL '::1:1234' is not a URL"):
        LMStudioClient()


# --- 9. a URL's user and password: sent as Basic auth, never shown --------------------------------------------------

PASSWORD = "Pw-7f3kq9-Zz"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_user_and_password_in_the_url_are_sent_as_basic_auth_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(401, json={"error": {"code": "invalid_api_key", "message": "denied"}})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        return httpx.Response(200, json={"lmstudio": True})

    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    url = f"http://alice:{PASSWORD}@studio.local:1234/v1/chat/completions"
    client = LMStudioClient(url, transport=httpx.MockTransport(handler))
    twin = AsyncLMStudioClient.from_client(client, transport=httpx.MockTransport(handler))
    same = client.with_options(timeout=9, transport=httpx.MockTransport(handler))
    other = client.with_options(base_url="http://elsewhere:1234", transport=httpx.MockTransport(handler))
    shown += [repr(c) for c in (client, twin, same, other)] + [client.base_url, str(vars(client))]
    assert client.base_url == "http://studio.local:1234"

    def failure(call: Callable[[], object]) -> None:
        with pytest.raises(LMStudioError) as info:
            call()
        shown.append(str(info.value))
        shown.append("".join(traceback.format_exception(info.value)))

    failure(lambda: client.chat("hi", model="m"))  # 401
    failure(lambda: list(client.stream_chat("hi", model="m")))
    failure(lambda: LMStudioClient(f"http://alice:{PASSWORD}@::1:1234"))  # unparseable
    failure(lambda: LMStudioClient(f"http://alice:{PASSWORD}@localhost:99999"))
    failure(lambda: LMStudioClient(url, api_key="sk-lm-a:b"))  # both would need the Authorization header
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    failure(lambda: LMStudioClient(f"http://alice:{PASSWORD}@127.0.0.1:{port}").list_models())  # refused
    same.list_models()
    other.list_models()

    assert {r.headers["authorization"] for r in seen if r.url.host == "studio.local"} == {basic("alice", PASSWORD)}
    assert all("authorization" not in r.headers for r in seen if r.url.host == "elsewhere")  # not sent elsewhere
    assert all(PASSWORD not in str(r.url) for r in seen)
    for text in [*shown, caplog.text]:
        assert PASSWORD not in text
    assert "alice:***@" in " ".join(shown)  # the bad URL is shown, masked


def test_a_bad_port_after_a_user_and_password_is_called_a_bad_port_not_ipv6() -> None:
    with pytest.raises(LMStudioRequestError) as info:
        LMStudioClient(f"http://alice:{PASSWORD}@localhost:12x")
    text = one_line(info.value)
    assert text.startswith("base_url 'http://alice:***@localhost:12x' is not a URL")
    assert "port" in text.lower() and "12x" in text and "IPv6" not in text.split("(an IPv6 address goes")[0]
    assert PASSWORD not in text


@pytest.mark.parametrize("token", ["sk-lm-ü", "sk-lm-abc:déf", "sk-lm-\u2013dash"])
def test_a_non_ascii_token_is_refused_in_one_line_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    with pytest.raises(LMStudioRequestError) as info:
        LMStudioClient(api_key=token)
    text = one_line(info.value)
    assert "API token" in text and token not in text and "sk-lm-XXXXXXXX" in text
    monkeypatch.setenv("LM_API_TOKEN", token)
    with pytest.raises(LMStudioRequestError) as from_env:
        AsyncLMStudioClient()
    assert token not in one_line(from_env.value)
