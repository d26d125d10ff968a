"""``%%lm -i NAME`` (images from variables or files, thumbnails above the answer) and ``--schema NAME`` (the JSON
growing live, then the parsed object) in a real ``InteractiveShell`` against the fake server over loopback HTTP."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from magic_shell import error_line, recorder, run, shown, use
from PIL import Image
from pydantic import BaseModel

import lm_notebook.display.answer
from lm_notebook.testing import MockLMStudioServer

VISION = "google/gemma-3-4b"


class City(BaseModel):
    name: str
    population: int


def usage(res: ExecutionResult) -> str:
    """The message of the UsageError a cell stopped with (IPython shows it as one line, no traceback)."""
    assert isinstance(res.error_in_exec, UsageError), res.error_in_exec
    return str(res.error_in_exec)


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell updates displays in place, as a Jupyter kernel does."""
    monkeypatch.setattr(lm_notebook.display.answer, "live_updates_supported", lambda shell: True)


def png(path: Path, size: tuple[int, int]) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", size, "navy").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.usefixtures("live")
def test_images_from_a_variable_and_a_file_go_to_the_model_with_thumbnails_above_the_answer(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, tmp_path: Path
) -> None:
    use(ip, VISION)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50)
    fig.add_subplot().bar(["a", "b"], [3, 5])
    ip.user_ns["fig"] = fig
    chart = png(tmp_path / "chart.png", (64, 32))
    res = run(ip, f"%%lm -i fig -i {chart} -o ans\nWhat do these show?")
    assert res.success, res.error_in_exec
    parts = lmstudio_mock.last_request.chat_body["messages"][-1]["content"]  # type: ignore[union-attr]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert ip.user_ns["ans"].content.startswith("I see 2 images: 100×50 pixels (PNG), 64×32 pixels (PNG).")
    kept = shown(ip, res.result)  # what a saved notebook holds: the thumbnails once, then the answer
    assert len(kept) == 2 and kept[0]["text/plain"] == ("[image: matplotlib Figure: 100×50 PNG]\n"
                                                       "[image: chart.png: 64×32 PNG]")
    assert kept[0]["text/html"].count('<img src="data:image/png;base64,') == 2
    assert "I see 2 images" in kept[1]["text/markdown"]


def test_without_streaming_the_thumbnails_come_first_too(ip: InteractiveShell, tmp_path: Path) -> None:
    use(ip, VISION)
    chart = png(tmp_path / "chart.png", (20, 10))
    res = run(ip, f"%%lm --no-stream -i {chart}\nDescribe it.")
    kept = shown(ip, res.result)
    assert kept[0]["text/plain"] == "[image: chart.png: 20×10 PNG]"
    assert "I see an image of 20×10" in kept[1]["text/plain"]


def test_a_missing_image_or_schema_is_one_line_before_anything_is_sent(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    use(ip, VISION)
    lmstudio_mock.clear_requests()
    assert usage(run(ip, "%%lm -i nothing_here\nHi")).startswith(
        "-i nothing_here: there is no variable 'nothing_here' and no file 'nothing_here'")
    ip.user_ns["n"] = 42
    assert usage(run(ip, "%%lm -i n\nHi")).startswith("-i: images[0] is 42 (int), not an image.")
    assert usage(run(ip, "%%lm --schema Nope\nHi")).startswith("--schema Nope: there is no variable 'Nope'.")
    assert usage(run(ip, "%%lm --schema n\nHi")).startswith("--schema n: schema=42 (int) is not")
    assert lmstudio_mock.requests == []


def test_a_model_without_vision_is_refused_in_one_line(ip: InteractiveShell, tmp_path: Path) -> None:
    use(ip)
    chart = png(tmp_path / "chart.png", (8, 8))
    line = error_line(run(ip, f"%%lm -i {chart}\nWhat is it?"))
    assert line.startswith('LMStudioRequestError: Model "qwen2.5-7b-instruct" on ') and VISION in line


@pytest.mark.usefixtures("live")
def test_a_schema_streams_json_then_shows_the_parsed_object(ip: InteractiveShell) -> None:
    use(ip)
    ip.user_ns["City"] = City
    res = run(ip, "%%lm --schema City -o city\nThe largest city in France?")
    assert res.success, res.error_in_exec
    assert isinstance(res.result.parsed, City) and ip.user_ns["city"].parsed == res.result.parsed
    live = [m["content"]["data"]["text/markdown"] for m in recorder(ip).sent
            if m["msg_type"] in ("display_data", "update_display_data") and m["content"]["transient"]]
    assert live and all(text.startswith("```json\n") for text in live)  # the live view shows the JSON as it grows
    final = shown(ip, res.result)[-1]["text/markdown"]
    assert final.startswith("| field | value |\n|---|---|\n| name | ") and "| population | " in final


@pytest.mark.usefixtures("live")
def test_an_answer_that_breaks_the_schema_is_one_line_and_keeps_the_raw_text(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer
) -> None:
    use(ip)
    ip.user_ns["City"] = City
    for flags in ("", "--no-stream"):
        lmstudio_mock.set_fault("break_schema", times=1)
        res = run(ip, f"%%lm {flags} --schema City -o raw\nThe largest city in France?")
        assert error_line(res).startswith("AnswerFormatError: The answer is JSON but breaks the schema City at $.name")
        assert '"population"' in ip.user_ns["raw"].content and ip.user_ns["raw"].parsed is None
        assert '"population"' in shown(ip)[-1]["text/plain"]  # the raw answer is shown above the error
        recorder(ip).sent.clear()


def test_chat_cells_remember_the_image_and_send_it_again_as_parts(ip: InteractiveShell,
                                                                  lmstudio_mock: MockLMStudioServer,
                                                                  tmp_path: Path) -> None:
    use(ip, VISION)
    chart = png(tmp_path / "chart.png", (30, 20))
    assert run(ip, f"%%lm --chat -i {chart}\nWhat is it?").success
    first = lmstudio_mock.last_request.chat_body["messages"][-1]  # type: ignore[union-attr]
    assert run(ip, "%%lm --chat\nAnd its colour?").success
    sent = lmstudio_mock.last_request
    assert sent is not None and sent.path == "/v1/chat/completions"  # earlier turns go on the OpenAI route
    messages = sent.chat_body["messages"]  # type: ignore[index]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0] == first and [p["type"] for p in messages[0]["content"]] == ["text", "image_url"]
    assert messages[2] == {"role": "user", "content": "And its colour?"}
    assert "30×20" in messages[1]["content"]


def test_max_image_edge_sets_the_downscale_edge_of_the_cell(ip: InteractiveShell, tmp_path: Path) -> None:
    use(ip, VISION)
    chart = png(tmp_path / "chart.png", (400, 200))
    res = run(ip, f"%%lm --no-stream --max-image-edge 100 -i {chart} -o ans\nDescribe it.")
    assert res.success, res.error_in_exec
    assert ip.user_ns["ans"].content.startswith("I see an image of 100×50 pixels")
    assert usage(run(ip, f"%%lm --max-image-edge 0 -i {chart}\nHi")) == (
        "--max-image-edge must be a positive number of pixels, not 0.")
