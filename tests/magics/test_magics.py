"""The magics in a real ``InteractiveShell`` against the fake LM Studio server (real loopback HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

import lm_notebook.display.answer
from lm_notebook import LMStudioClient, get_client, set_client
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    LMStudioConnectionError,
    LMStudioError,
    ModelNotFoundError,
    NoModelLoadedError,
)
from lm_notebook.display.answer import PLACEHOLDER, RenderedChatResult
from lm_notebook.testing import MockLMStudioServer

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MODEL = "qwen2.5-7b-instruct"


class Recorder(DisplayPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[dict[str, Any], str | None, bool]] = []

    def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                update: bool = False, **kw: Any) -> None:
        self.sent.append((data, (transient or {}).get("display_id"), update))

    def shown(self) -> list[dict[str, Any]]:
        """Outputs a frontend would keep: new displays, with updates applied to the display they name."""
        outputs: list[dict[str, Any]] = []
        ids: dict[str, int] = {}
        for data, display_id, update in self.sent:
            if update:
                if display_id in ids:
                    outputs[ids[display_id]] = data
                continue
            if display_id:
                ids[display_id] = len(outputs)
            outputs.append(data)
        return outputs


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture
def ip(shell: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch,
       capsys: pytest.CaptureFixture[str]) -> Iterator[InteractiveShell]:
    """A shell with freshly loaded magics, a recording display publisher and the shared client on the fake server."""
    monkeypatch.setenv("LMSTUDIO_BASE_URL", lmstudio_mock.url)
    set_client(LMStudioClient(lmstudio_mock.url, timeout=10))
    shell.config.pop("LMMagics", None)  # %config in an earlier test must not leak into this one
    shell.run_line_magic("unload_ext", "lm_notebook")
    shell.run_line_magic("load_ext", "lm_notebook")
    saved = shell.display_pub
    shell.display_pub = Recorder()
    capsys.readouterr()
    try:
        yield shell
    finally:
        shell.display_pub = saved
        for name in ("ans", "models", "data", "topic", "items"):
            shell.user_ns.pop(name, None)
        set_client(None)


def run(ip: InteractiveShell, source: str) -> ExecutionResult:
    return ip.run_cell(source, store_history=True)


def shown(ip: InteractiveShell) -> list[dict[str, Any]]:
    return ip.display_pub.shown()  # type: ignore[no-any-return, attr-defined]


def error_line(res: ExecutionResult) -> str:
    """The exact lines IPython shows for the cell's exception (its _render_traceback_)."""
    err = res.error_in_exec or res.error_before_exec
    assert err is not None, "the cell should have failed"
    lines = err._render_traceback_()  # type: ignore[union-attr]
    assert len(lines) == 1
    return ANSI.sub("", lines[0])


def use(ip: InteractiveShell) -> None:
    assert run(ip, f"%lm_use {MODEL}").success
    ip.display_pub.sent.clear()  # type: ignore[attr-defined]


# --- loading, settings ------------------------------------------------------------------------------------------


def test_loading_twice_is_harmless_and_unload_removes_the_magics(ip: InteractiveShell) -> None:
    before = len(ip.configurables)
    lm_notebook_magics = ip.magics_manager.registry["LMMagics"]
    run(ip, "%load_ext lm_notebook")
    from lm_notebook.magics import register

    register(ip)
    assert ip.magics_manager.registry["LMMagics"] is lm_notebook_magics
    assert len(ip.configurables) == before
    run(ip, "%unload_ext lm_notebook")
    assert "lm" not in ip.magics_manager.magics["cell"]
    assert "lm_models" not in ip.magics_manager.magics["line"]
    run(ip, "%load_ext lm_notebook")
    assert "lm" in ip.magics_manager.magics["cell"]


def test_help_lists_every_option(ip: InteractiveShell) -> None:
    doc = ip.magics_manager.magics["cell"]["lm"].__doc__
    for flag in ("-m", "-s", "-t", "--max-tokens", "--seed", "-f", "-o", "--chat", "--no-stream", "--no-interpolate"):
        assert flag in doc
    assert "{markdown,text,code,json}" in doc


def test_config_traitlets_reach_the_request(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    run(ip, "%config LMMagics.temperature = 0.2")
    run(ip, "%config LMMagics.max_tokens = 64")
    run(ip, "%config LMMagics.system = 'Be terse.'")
    assert run(ip, "%%lm\nHi").success
    body = lmstudio_mock.last_request.json  # type: ignore[union-attr]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    # flags win over settings
    assert run(ip, "%%lm -t 0.9 --max-tokens 8 --seed 7 -s 'You are a pirate.'\nHi").success
    body = lmstudio_mock.last_request.json  # type: ignore[union-attr]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.9, 8, 7)
    assert body["messages"][0]["content"] == "You are a pirate."


def test_base_url_setting_replaces_the_shared_client(ip: InteractiveShell) -> None:
    use(ip)
    run(ip, "%config LMMagics.base_url = 'http://127.0.0.1:9/v1'")
    res = run(ip, "%%lm\nHi")
    assert get_client().base_url == "http://127.0.0.1:9"
    assert get_client().current_model == MODEL  # the chosen model survives the switch
    assert error_line(res).startswith("LMStudioConnectionError: LM Studio is not reachable at http://127.0.0.1:9")


def test_lm_config_shows_address_model_and_defaults(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    run(ip, "%lm_config")
    plain = shown(ip)[-1]["text/plain"]
    assert f"base_url        {lmstudio_mock.url}" in plain
    assert f"current model   {MODEL}" in plain
    assert "default_format  markdown" in plain and "chat_memory     20 exchanges" in plain


# --- %lm_models / %lm_use ---------------------------------------------------------------------------------------


def test_lm_models_asks_the_server_and_marks_the_current_model(ip: InteractiveShell) -> None:
    use(ip)
    assert run(ip, "%lm_models -o models").success
    table = shown(ip)[-1]["text/plain"].splitlines()
    assert table[0].split() == ["id", "type", "state", "format", "quantization", "arch", "context"]
    current = [line for line in table if line.startswith("▶")]
    assert len(current) == 1 and MODEL in current[0] and "loaded" in current[0]
    assert [m.id for m in ip.user_ns["models"]][:2] == [MODEL, "google/gemma-3-4b"]


def test_lm_models_with_no_models_says_how_to_get_one(ip: InteractiveShell) -> None:
    server = MockLMStudioServer(models=[]).start()
    try:
        run(ip, f"%config LMMagics.base_url = '{server.url}'")
        assert run(ip, "%lm_models").success
        assert "has no models. Download one" in shown(ip)[-1]["text/plain"]
    finally:
        server.stop()


def test_lm_use_sets_the_shared_client_model(ip: InteractiveShell) -> None:
    assert run(ip, "%lm_use google/gemma-3-4b").success
    assert get_client().current_model == "google/gemma-3-4b"
    assert "not loaded yet" in shown(ip)[-1]["text/plain"]


def test_lm_use_refuses_an_unknown_id_with_the_list_and_the_closest(ip: InteractiveShell) -> None:
    res = run(ip, "%lm_use qwen2.5-7b")
    line = error_line(res)
    assert line.startswith('ModelNotFoundError: LM Studio at http://127.0.0.1:')
    assert 'Did you mean "qwen2.5-7b-instruct"?' in line and "google/gemma-3-4b" in line
    assert get_client().current_model is None
    err = res.error_in_exec
    assert isinstance(err, ModelNotFoundError)
    assert err.model == "qwen2.5-7b" and "qwen2.5-7b-instruct" in err.available
    assert str(err) == err.message and line == f"ModelNotFoundError: {err.message}"


# --- %%lm: output, value, formats ------------------------------------------------------------------------------


def test_the_answer_is_the_cell_value_and_stored_with_o(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lm_notebook.display.answer, "live_updates_supported", lambda shell: True)
    use(ip)
    lmstudio_mock.script(MODEL, "# Title\n\nSome **bold** text.")
    res = run(ip, "%%lm -o ans\nWrite a title")
    assert res.success
    value = res.result
    assert isinstance(value, RenderedChatResult) and value is ip.user_ns["ans"]
    assert value.content == "# Title\n\nSome **bold** text." and value.finish_reason == "stop"
    # the displayhook shows the value; the cell's only other output is the emptied live display
    assert shown(ip) == [PLACEHOLDER]
    sent = ip.display_pub.sent  # type: ignore[attr-defined]
    assert sent[0][0] == PLACEHOLDER and not sent[0][2] and sent[-1] == (PLACEHOLDER, sent[0][1], True)
    md = value._repr_mimebundle_()["text/markdown"]
    assert md.startswith("# Title\n\nSome **bold** text.\n\n<sub>qwen2.5-7b-instruct · ")


def test_in_a_terminal_tokens_are_written_and_not_shown_twice(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    use(ip)
    lmstudio_mock.script(MODEL, "Plain answer.")
    res = run(ip, "%%lm -o ans\nHi")
    out = capsys.readouterr().out
    assert res.success and res.result is None
    assert out.count("Plain answer.") == 1 and "— qwen2.5-7b-instruct · " in out
    assert ip.user_ns["ans"].content == "Plain answer."


def test_no_stream_waits_for_the_whole_answer(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    lmstudio_mock.script(MODEL, "Blocking answer.")
    res = run(ip, "%%lm --no-stream\nHi")
    assert isinstance(res.result, RenderedChatResult) and res.result.content == "Blocking answer."
    assert lmstudio_mock.last_request.json["stream"] is False  # type: ignore[union-attr]
    assert shown(ip) == []


def test_format_json_parses_and_keeps_the_value(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    lmstudio_mock.script(MODEL, '```json\n{"name": "Ada", "born": 1815}\n```')
    res = run(ip, "%%lm -f json -o data --no-stream\nGive me JSON")
    assert res.result.parsed == {"name": "Ada", "born": 1815}
    assert ip.user_ns["data"].parsed["born"] == 1815
    assert res.result._repr_mimebundle_()["text/markdown"].startswith('```json\n{\n  "name": "Ada"')


def test_format_json_invalid_is_one_line_and_keeps_the_raw_text(ip: InteractiveShell,
                                                                lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    lmstudio_mock.script(MODEL, "Sure! Here it is: {name: Ada}")
    res = run(ip, "%%lm -f json -o data\nGive me JSON")
    assert error_line(res).startswith("AnswerFormatError: The answer is not valid JSON (")
    assert ip.user_ns["data"].content == "Sure! Here it is: {name: Ada}"


def test_format_code_and_text(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    lmstudio_mock.script(MODEL, "Here:\n```rust\nfn main() {}\n```\nEnjoy.", "<i>raw</i>")
    code = run(ip, "%%lm -f code --no-stream\nRust hello").result
    assert code._repr_mimebundle_()["text/markdown"].startswith("```rust\nfn main() {}\n```")
    text = run(ip, "%%lm -f text --no-stream\nraw").result
    assert "&lt;i&gt;raw&lt;/i&gt;" in text._repr_mimebundle_()["text/html"]


def test_thinking_is_kept_apart_from_the_answer(ip: InteractiveShell) -> None:
    for model in ("openai/gpt-oss-20b", "deepseek-r1-distill-qwen-7b"):  # `reasoning` field, <think> tags
        res = run(ip, f"%%lm -m {model} --no-stream\nThink first")
        assert res.result.reasoning and "<think>" not in res.result.content
        md = res.result._repr_mimebundle_()["text/markdown"]
        assert md.startswith("<details><summary>Thinking (")


def test_cut_at_max_tokens_is_in_the_footer(ip: InteractiveShell) -> None:
    use(ip)
    res = run(ip, "%%lm --max-tokens 5 --no-stream\nWrite a lot")
    assert res.result.finish_reason == "length"
    assert "· cut at max tokens</sub>" in res.result._repr_mimebundle_()["text/markdown"]


# --- interpolation ----------------------------------------------------------------------------------------------


def test_references_are_filled_and_other_braces_stay(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    ip.user_ns.update(topic="tides", items=["moon", "sun"])
    run(ip, '%%lm\nExplain {topic} and {items[0]}, answer as {"why": "..."} not {nothing}; {{topic}}')
    sent = lmstudio_mock.last_request.json["messages"][-1]["content"]  # type: ignore[union-attr]
    assert sent == 'Explain tides and moon, answer as {"why": "..."} not {nothing}; {topic}'
    run(ip, "%%lm --no-interpolate\nExplain {topic}")
    assert lmstudio_mock.last_request.json["messages"][-1]["content"] == "Explain {topic}"  # type: ignore[union-attr]


def test_a_reference_that_fails_is_a_usage_error(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    use(ip)
    ip.user_ns["items"] = ["moon"]
    res = run(ip, "%%lm\nAbout {items[3]}")
    assert not res.success
    assert "UsageError: Could not fill {items[3]} from your variables: IndexError" in capsys.readouterr().err


# --- conversation memory ----------------------------------------------------------------------------------------


def test_chat_continues_across_cells_bounded_and_reset(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    run(ip, "%config LMMagics.chat_memory = 2")
    for i in range(3):
        lmstudio_mock.script(MODEL, f"answer {i}")
        assert run(ip, f"%%lm --chat\nquestion {i}").success
    lmstudio_mock.script(MODEL, "answer 3")
    run(ip, "%%lm --chat\nquestion 3")
    messages = lmstudio_mock.last_request.json["messages"]  # type: ignore[union-attr]
    assert [m["content"] for m in messages] == ["question 1", "answer 1", "question 2", "answer 2", "question 3"]
    run(ip, "%%lm\nno memory here")
    assert len(lmstudio_mock.last_request.json["messages"]) == 1  # type: ignore[union-attr]
    run(ip, "%lm_reset")
    assert "2 exchanges forgotten" in shown(ip)[-1]["text/plain"]
    run(ip, "%%lm --chat\nfresh")
    assert len(lmstudio_mock.last_request.json["messages"]) == 1  # type: ignore[union-attr]


# --- errors: one line each, traceback on demand ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        ("-f yaml", "argument -f/--format: invalid choice: 'yaml'"),
        ("-o 1x", "-o needs a Python variable name, not '1x'."),
        ("--max-tokens many", "argument --max-tokens: invalid int value: 'many'"),
    ],
)
def test_bad_flags_are_usage_errors(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], line: str,
                                    message: str) -> None:
    use(ip)
    res = run(ip, f"%%lm {line}\nHi")
    assert not res.success
    err = capsys.readouterr().err
    assert err.startswith("UsageError: ") and message in err and "Traceback" not in err


def test_empty_cell_and_no_model_are_usage_errors(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%lm\n\n")
    assert "The %%lm cell is empty" in capsys.readouterr().err
    run(ip, "%%lm\nHi")
    assert "No model selected: choose one with %lm_use MODEL" in capsys.readouterr().err


def test_server_not_running(ip: InteractiveShell) -> None:
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    line = error_line(run(ip, "%%lm\nHi"))
    assert line.startswith("LMStudioConnectionError: LM Studio is not reachable at http://127.0.0.1:9")
    assert "lms server start" in line


def test_unknown_model_suggests_lm_use(ip: InteractiveShell) -> None:
    res = run(ip, "%%lm -m qwen-7b\nHi")
    line = error_line(res)
    assert line.startswith('ModelNotFoundError: LM Studio at http://127.0.0.1:')
    assert "Choose one with %lm_use MODEL" in line and "qwen2.5-7b-instruct" in line
    # the line is built from the error's fields; the error itself is the client's, as raised
    err = res.error_in_exec
    assert isinstance(err, ModelNotFoundError)
    assert err.model == "qwen-7b" and "qwen2.5-7b-instruct" in err.available
    assert str(err) == err.message and "%lm_use" not in err.message and line != f"ModelNotFoundError: {err.message}"


@pytest.mark.lmstudio_mock(jit_loading=False)
def test_no_model_loaded(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.unload_all()
    res = run(ip, "%%lm -m google/gemma-3-4b\nHi")
    err = res.error_in_exec
    assert isinstance(err, NoModelLoadedError)
    # the client's advice, shown as it is (its wording is the client's tests' business)
    assert error_line(res) == f"NoModelLoadedError: {err.message}"
    assert "load" in err.message


def test_context_length_exceeded(ip: InteractiveShell) -> None:
    use(ip)
    res = run(ip, "%%lm\n" + "word " * 5000)
    err = res.error_in_exec
    assert isinstance(err, ContextLengthExceededError)
    assert error_line(res) == f"ContextLengthExceededError: {err.message}"
    assert "context" in err.message


def test_stream_broken_midway_keeps_the_partial_answer_visible(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lm_notebook.display.answer, "live_updates_supported", lambda shell: True)
    use(ip)
    lmstudio_mock.set_fault("drop", after_chunks=5, times=1)
    res = run(ip, "%%lm -o ans\nHi")
    assert error_line(res).startswith("LMStudioStreamError: ")
    outputs = shown(ip)
    assert outputs[0] == PLACEHOLDER and len(outputs) == 2
    assert "· incomplete (error below)</sub>" in outputs[1]["text/markdown"]
    assert ip.user_ns["ans"].content and ip.user_ns["ans"].content in outputs[1]["text/markdown"]


def test_lm_last_error_shows_the_full_traceback(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%lm_last_error")
    assert "No lm magic has failed" in capsys.readouterr().out
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    run(ip, "%%lm\nHi")
    capsys.readouterr()
    run(ip, "%lm_last_error")
    out = ANSI.sub("", capsys.readouterr().out)
    assert "Traceback" in out and "ConnectError" in out and "LMStudioConnectionError" in out


def test_errors_are_lm_studio_errors_underneath(ip: InteractiveShell) -> None:
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL))
    res = run(ip, "%%lm\nHi")
    err = res.error_in_exec
    assert isinstance(err, LMStudioError) and isinstance(err, LMStudioConnectionError)
    # what happened, where, and what to do — the same text in str(), in a log, and on the one line shown
    assert err.base_url == "http://127.0.0.1:9"
    assert str(err) == err.message == err.args[0]
    assert err.message.startswith("LM Studio is not reachable at http://127.0.0.1:9")
    assert "lms server start" in err.message
    assert error_line(res) == f"LMStudioConnectionError: {err.message}"
