"""``%config LMMagics.…``: every setting is checked when it is set, refused in one line that names the setting, the
value and what is allowed, and the previous value is kept; magics refuse arguments they do not take."""

from __future__ import annotations

import logging

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import MODEL, run, shown, use

from lm_notebook import get_client
from lm_notebook.magics.lm import LMMagics
from lm_notebook.testing import MockLMStudioServer


def magics(ip: InteractiveShell) -> LMMagics:
    found = ip.magics_manager.registry["LMMagics"]
    assert isinstance(found, LMMagics)
    return found


def config(ip: InteractiveShell, caplog: pytest.LogCaptureFixture, statement: str) -> list[str]:
    """Run ``%config statement``; the errors it logged (IPython's %config logs a refusal, it does not raise)."""
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        run(ip, f"%config {statement}")
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "line",
    ["%lm_config bogus", "%lm_reset bogus", "%lm_last_error --all", "%lm_models bogus", "%lm_use a b"],
)
def test_a_magic_refuses_arguments_it_does_not_take(ip: InteractiveShell, capsys: pytest.CaptureFixture[str],
                                                    line: str) -> None:
    res = run(ip, line)
    assert not res.success
    err = capsys.readouterr().err
    assert err.startswith("UsageError: unrecognized arguments: ") and err.count("\n") == 1
    assert shown(ip) == []  # nothing was done


SETTINGS = ["timeout", "chat_memory", "temperature", "max_tokens", "base_url", "default_format",
            "updates_per_second", "system"]


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("timeout", "0", 'must be a positive number of seconds, or float("inf") for no read timeout; not 0.'),
        ("timeout", "-5", "must be a positive number of seconds"),
        ("timeout", "float('nan')", "not nan."),
        ("timeout", "True", "not True."),  # not 1 s
        ("timeout", "'soon'", "not 'soon'."),
        ("timeout", "1e-6", "must be at least 1 s: it is how long a magic waits to connect to LM Studio"),
        ("timeout", "0.5", "so a shorter wait fails every request; not 0.5 (float('inf') waits for ever)."),
        ("chat_memory", "-1", "must be a whole number of exchanges, 0 or more (0 remembers nothing); not -1."),
        ("chat_memory", "2.5", "not 2.5."),
        ("chat_memory", "True", "not True."),
        ("temperature", "5", "must be a number from 0 to 2, or None for the model's own; not 5."),
        ("temperature", "-0.1", "not -0.1."),
        ("max_tokens", "0", "must be a whole number of tokens from 1 up, or -1 (or None) for no limit; not 0."),
        ("max_tokens", "'many'", "not 'many'."),
        ("base_url", "'::1:1234'", "is not a URL (an IPv6 address without brackets): write it like http://"),
        ("base_url", "'ftp://host:1234'", "is not an http:// or https:// address"),
        ("base_url", "'http://user:secret@host:99999'", "has port 99999; a port is 1 to 65535"),
        ("default_format", "'yaml'", "must be one of markdown, text, code, json; not 'yaml'."),
        ("updates_per_second", "0", "must be a number of repaints a second above 0 (10 is the default); not 0."),
        ("system", "42", "must be the system prompt as a string ('' for none); not 42."),
    ],
)
def test_a_bad_setting_is_refused_in_one_line_and_the_previous_value_kept(
    ip: InteractiveShell, caplog: pytest.LogCaptureFixture, setting: str, value: str, words: str
) -> None:
    before = {name: getattr(magics(ip), name) for name in SETTINGS}
    (message,) = config(ip, caplog, f"LMMagics.{setting} = {value}")
    assert message.startswith(f"LMMagics.{setting} ") and words in message and "\n" not in message
    assert "secret" not in message  # a URL's password is never shown
    assert {name: getattr(magics(ip), name) for name in SETTINGS} == before
    # the refused value did not stay in the shell's config: the extension loads again with the value kept
    run(ip, "%reload_ext lm_notebook")
    assert getattr(magics(ip), setting) == before[setting]


def test_good_settings_are_taken(ip: InteractiveShell, caplog: pytest.LogCaptureFixture,
                                 lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    for statement in ("timeout = float('inf')", "chat_memory = 0", "temperature = 2", "max_tokens = -1",
                      "default_format = 'text'", "updates_per_second = 4", f"base_url = '{lmstudio_mock.url}/v1/'"):
        assert config(ip, caplog, f"LMMagics.{statement}") == []
    m = magics(ip)
    assert (m.timeout, m.chat_memory, m.temperature, m.max_tokens) == (float("inf"), 0, 2.0, -1)
    client = m.client
    assert client.timeout.read is None and client.base_url == lmstudio_mock.url
    assert m.client is client and get_client() is client  # made once, not on every use
    assert run(ip, "%%lm\nHi").success
    body = lmstudio_mock.last_request.chat_body  # type: ignore[union-attr]
    # no limit: -1 on the OpenAI route, left out on the native one (its default)
    assert (body["temperature"], body.get("max_tokens", -1), body["model"]) == (2.0, -1, MODEL)


def test_a_url_with_a_password_is_passed_on_and_never_shown(ip: InteractiveShell, caplog: pytest.LogCaptureFixture,
                                                            lmstudio_mock: MockLMStudioServer) -> None:
    url = lmstudio_mock.url.replace("http://", "http://user:secret@")
    assert config(ip, caplog, f"LMMagics.base_url = '{url}'") == []
    client = magics(ip).client
    assert client.base_url == lmstudio_mock.url and "basic_auth=<set>" in repr(client)
    assert magics(ip).client is client
    run(ip, "%lm_config")
    assert "secret" not in str(shown(ip))


def test_a_bad_value_in_the_ipython_config_is_one_line_at_load(ip: InteractiveShell,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%unload_ext lm_notebook")
    ip.config.LMMagics.chat_memory = -3  # what c.LMMagics.chat_memory = -3 in ipython_config.py gives
    try:
        res = run(ip, "%load_ext lm_notebook")
        assert not res.success
        err = capsys.readouterr().err
        assert err.startswith("UsageError: LMMagics.chat_memory must be a whole number of exchanges") and "-3" in err
        assert "Fix it in your IPython config" in err and err.count("\n") == 1
    finally:
        ip.config.pop("LMMagics", None)


def test_a_url_password_stays_out_of_what_ipython_shows(ip: InteractiveShell, caplog: pytest.LogCaptureFixture,
                                                        capsys: pytest.CaptureFixture[str],
                                                        lmstudio_mock: MockLMStudioServer) -> None:
    url = lmstudio_mock.url.replace("http://", "http://user:secret@") + "/v1"
    assert config(ip, caplog, f"LMMagics.base_url = '{url}'") == []
    m = magics(ip)
    assert m.base_url == lmstudio_mock.url  # the trait: the address without the user and password
    run(ip, "%config LMMagics")
    run(ip, "%config LMMagics.base_url")
    listed = capsys.readouterr().out
    assert lmstudio_mock.url in listed and "secret" not in listed and "user:" not in listed
    assert "secret" not in repr(ip.config) and "secret" not in repr(m.config)
    # the credentials still reach the client: it sends them as HTTP Basic auth
    client = m.client
    assert client.base_url == lmstudio_mock.url and "basic_auth=<set>" in repr(client)
    assert run(ip, "%lm_models").success


def test_a_url_password_in_the_ipython_config_stays_out_of_the_shells_config(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    run(ip, "%unload_ext lm_notebook")
    # what c.LMMagics.base_url = 'http://user:secret@…' in ipython_config.py gives
    ip.config.LMMagics.base_url = lmstudio_mock.url.replace("http://", "http://user:secret@")
    try:
        assert run(ip, "%load_ext lm_notebook").success
        assert "secret" not in repr(ip.config) and magics(ip).base_url == lmstudio_mock.url
        assert "basic_auth=<set>" in repr(magics(ip).client)
    finally:
        ip.config.pop("LMMagics", None)
