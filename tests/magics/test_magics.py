"""The magics in a real ``InteractiveShell`` against the fake LM Studio server (real loopback HTTP): settings, models,
answers and formats, interpolation, conversation memory. Errors: ``test_magic_errors.py``; settings' checks:
``test_magic_settings.py``."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import MODEL, error_line, recorder, run, shown, use

import lm_notebook.display.answer
from lm_notebook import get_client
from lm_notebook.client.errors import ModelNotFoundError
from lm_notebook.display.answer import RenderedChatResult
from lm_notebook.testing import MockLMStudioServer

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
    body = lmstudio_mock.last_request.chat_body  # type: ignore[union-attr]  # on either route
    assert lmstudio_mock.last_request.path == "/api/v1/chat"  # type: ignore[union-attr]  # LM Studio 0.4's own
    assert body["temperature"] == 0.2 and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    # flags win over settings
    assert run(ip, "%%lm -t 0.9 --max-tokens 8 --seed 7 -s 'You are a pirate.'\nHi").success
    body = lmstudio_mock.last_request.json  # type: ignore[union-attr]  # a seed: the OpenAI route
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
    assert table[0].split() == ["id", "type", "state", "format", "quantization", "arch", "context", "abilities",
                                "slots"]
    current = [line for line in table if line.startswith("▶")]
    assert len(current) == 1 and MODEL in current[0] and "loaded" in current[0]
    # /api/v1/models' capabilities and the loaded instance's parallel slots
    assert current[0].split()[-2:] == ["tools", "4"]
    assert [line.split()[-2] for line in table if "google/gemma-3-4b" in line] == ["vision"]
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
    # one live display, updated in place, cleared when the value (the displayhook's) comes: the cell keeps the answer
    sent = recorder(ip).sent
    assert sent[0]["msg_type"] == "display_data" and sent[0]["content"]["transient"]["display_id"]
    assert recorder(ip).kinds()[-1] == "clear_output" and sent[-1]["content"]["wait"] is True
    assert shown(ip, value) == [value._repr_mimebundle_()]
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
    assert "· cut at max tokens · fake server</sub>" in res.result._repr_mimebundle_()["text/markdown"]


# --- interpolation ----------------------------------------------------------------------------------------------


def test_references_are_filled_and_other_braces_stay(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    use(ip)
    ip.user_ns.update(topic="tides", items=["moon", "sun"])
    run(ip, '%%lm\nExplain {topic} and {items[0]}, answer as {"why": "..."} not {nothing}; {{topic}}')
    sent = lmstudio_mock.last_request.chat_body["messages"][-1]["content"]  # type: ignore[union-attr]
    assert sent == 'Explain tides and moon, answer as {"why": "..."} not {nothing}; {topic}'
    run(ip, "%%lm --no-interpolate\nExplain {topic}")
    assert lmstudio_mock.last_request.chat_body["messages"][-1]["content"] == "Explain {topic}"  # type: ignore[union-attr]


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
    messages = lmstudio_mock.last_request.chat_body["messages"]  # type: ignore[union-attr]
    assert [m["content"] for m in messages] == ["question 1", "answer 1", "question 2", "answer 2", "question 3"]
    run(ip, "%%lm\nno memory here")
    assert len(lmstudio_mock.last_request.chat_body["messages"]) == 1  # type: ignore[union-attr]
    run(ip, "%lm_reset")
    assert "2 exchanges forgotten" in shown(ip)[-1]["text/plain"]
    run(ip, "%%lm --chat\nfresh")
    assert len(lmstudio_mock.last_request.chat_body["messages"]) == 1  # type: ignore[union-attr]
