"""What a ``%%lm`` cell and the listing magics show about the wait and the server: "Loading MODEL…" while a model
loads just in time, the bundled fake server named wherever models or answers are shown, every code block of ``-f
code`` (real ``InteractiveShell``, fake server over loopback HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import MODEL, recorder, run, shown, use

import lm_notebook.display.answer
from lm_notebook import LMStudioClient, get_client, set_client
from lm_notebook.display.render import CodeBlock
from lm_notebook.testing import MockLMStudioServer

NOT_LOADED = "google/gemma-3-4b"  # listed by the default fake server, not loaded


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell updates displays in place, as a Jupyter kernel does."""
    monkeypatch.setattr(lm_notebook.display.answer, "live_updates_supported", lambda shell: True)


def first_live_view(ip: InteractiveShell) -> str:
    first = recorder(ip).sent[0]
    assert first["msg_type"] == "display_data" and first["content"]["transient"]["display_id"]
    return str(first["content"]["data"]["text/markdown"])


# --- item 6: a just-in-time load says so -------------------------------------------------------------------------


@pytest.mark.usefixtures("live")
def test_a_model_listed_as_not_loaded_shows_loading_until_it_answers(ip: InteractiveShell) -> None:
    use(ip, NOT_LOADED)  # the listing says it is not loaded: known without asking again
    assert run(ip, "%%lm\nHi").success
    assert f"<sub>Loading {NOT_LOADED}… 0 s" in first_live_view(ip)
    recorder(ip).sent.clear()
    assert run(ip, "%%lm\nHi again").success  # it answered, so it is loaded now
    assert "waiting for the first token…" in first_live_view(ip)


@pytest.mark.usefixtures("live")
def test_a_model_whose_state_is_unknown_is_not_said_to_load_and_nothing_is_asked_first(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    lmstudio_mock.clear_requests()
    assert run(ip, f"%%lm -m {NOT_LOADED}\nHi").success  # never listed: only who answers is asked first
    assert "waiting for the first token…" in first_live_view(ip)
    # once a client: which LM Studio answers (its 0.4 model list), so the answer takes the native route
    assert [r.path for r in lmstudio_mock.requests] == ["/lmstudio-greeting", "/api/v1/models", "/api/v1/chat"]
    lmstudio_mock.clear_requests()
    assert run(ip, f"%%lm -m {NOT_LOADED}\nHi").success
    assert [r.path for r in lmstudio_mock.requests] == ["/api/v1/chat"]


# --- item 26: the bundled fake server is named -------------------------------------------------------------------


def test_the_fake_server_is_named_where_models_settings_and_answers_are_shown(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    use(ip)
    run(ip, "%lm_models")
    run(ip, "%lm_config")
    table, settings = (bundle["text/plain"] for bundle in shown(ip))
    assert "bundled fake LM Studio server" in table and "LMSTUDIO_BASE_URL" in table
    (server,) = [row for row in settings.splitlines() if row.startswith("server ")]
    assert "The bundled fake LM Studio server (lm_notebook.testing): canned answers, no real model." in server
    assert "%config LMMagics.base_url = 'http://127.0.0.1:1234'" in server and "lms server start" in server
    answer = run(ip, "%%lm --no-stream\nHi").result
    assert answer.fake_server and answer._repr_mimebundle_()["text/markdown"].endswith("· fake server</sub>")
    # who answers is asked once, by the first magic that needs to know
    assert [r.path for r in lmstudio_mock.requests].count("/lmstudio-greeting") == 1


def test_the_first_answer_of_a_fresh_client_already_says_fake_server(ip: InteractiveShell,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    use(ip)  # lists the models; who answers is not known before the first answer
    assert run(ip, "%%lm -o ans\nHi").success
    footer = capsys.readouterr().out.strip().splitlines()[-1]
    assert footer.startswith(f"— {MODEL} · ") and footer.endswith(" · fake server")
    assert ip.user_ns["ans"].fake_server


class RealLooking(httpx.HTTPTransport):
    """The fake server, greeting as LM Studio itself does (no ``lm_notebook_fake``)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/lmstudio-greeting":
            return httpx.Response(200, json={"lmstudio": True})
        return super().handle_request(request)


@pytest.fixture
def real_looking(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(lmstudio_mock.url, timeout=10, transport=RealLooking()) as client:
        set_client(client)
        yield client


@pytest.mark.usefixtures("real_looking")
def test_a_real_server_is_not_called_fake(ip: InteractiveShell) -> None:
    use(ip)
    run(ip, "%lm_models")
    run(ip, "%lm_config")
    table, settings = (bundle["text/plain"] for bundle in shown(ip))
    assert "fake" not in table
    assert "server          a real server (not the bundled fake)" in settings
    answer = run(ip, "%%lm --no-stream\nHi").result
    assert not answer.fake_server and "fake" not in answer._repr_mimebundle_()["text/markdown"]


def test_nothing_answering_is_said_in_lm_config(ip: InteractiveShell) -> None:
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    assert run(ip, "%lm_config").success
    (server,) = [row for row in shown(ip)[-1]["text/plain"].splitlines() if row.startswith("server ")]
    assert "nothing answers there: start LM Studio's server (Developer tab, or `lms server start`)" in server


# --- item 24: -f code keeps every block --------------------------------------------------------------------------

TWO_BLOCKS = "Here:\n```python\nprint(1)\n```\nThen run:\n```bash\necho hi\n```\nDone."


@pytest.mark.usefixtures("live")
@pytest.mark.parametrize("stream", ["", " --no-stream"])
def test_format_code_shows_every_block_and_the_result_holds_them(ip: InteractiveShell,
                                                                 lmstudio_mock: MockLMStudioServer,
                                                                 stream: str) -> None:
    use(ip)
    lmstudio_mock.script(MODEL, TWO_BLOCKS)
    res = run(ip, f"%%lm -f code -o c{stream}\nTwo snippets")
    c = ip.user_ns["c"]
    assert res.result is c
    assert c.code == (CodeBlock("python", "print(1)"), CodeBlock("bash", "echo hi"))
    markdown = c._repr_mimebundle_()["text/markdown"]
    assert markdown.startswith("```python\nprint(1)\n```\n\n```bash\necho hi\n```")
    assert "Then run:" not in markdown


@pytest.mark.usefixtures("live")
def test_the_first_live_view_of_a_fresh_client_already_says_fake_server(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    use(ip)  # lists the models; who answers is not known before the first answer
    assert get_client().server_is_fake is None
    lmstudio_mock.clear_requests()
    assert run(ip, "%%lm\nHi").success
    assert first_live_view(ip).endswith("· fake server</sub>")  # live, not only in the final footer
    # asked once, before the request, as the request itself would have asked (the model list told the server's
    # version when %lm_use listed the models: the answer takes LM Studio 0.4's native route)
    assert [r.path for r in lmstudio_mock.requests] == ["/lmstudio-greeting", "/api/v1/chat"]
