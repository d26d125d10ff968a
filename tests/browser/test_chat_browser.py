"""The chat panel in a real browser: JupyterLab runs notebooks/chat_panel.ipynb, a user types, watches, stops.

Saves a screenshot of the panel (``docs/chat_panel.png`` when it is missing or ``LMNB_UPDATE_SCREENSHOT=1``; always
in the test's temporary directory).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from lm_notebook.testing import MockLMStudioServer

MODEL = "qwen2.5-7b-instruct"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat_panel.png"
RUN_ALL = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.sessionContext.ready;
    await app.commands.execute('notebook:clear-all-cell-outputs');
    app.commands.execute('notebook:run-all-cells');
}"""


# in the page: record the answer's length at every change the page makes to this message
RECORD_LENGTHS = """(box) => {
    window.__lmnbLengths = [];
    const record = () => {
        const answer = box.querySelector('.lmnb-answer');
        window.__lmnbLengths.push(answer ? answer.innerText.length : 0);
    };
    record();
    new MutationObserver(record).observe(box, {subtree: true, childList: true, characterData: true});
}"""


def text_length(locator: Any) -> int:
    return len(locator.inner_text())


def last(chat: Any, selector: str) -> Any:
    return chat.locator(selector).last


def open_and_run_notebook(page: Any, lab: Any) -> Any:
    page.goto(lab.notebook_url("chat_panel.ipynb"))
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel); }",
        timeout=60_000,
    )
    page.evaluate(RUN_ALL)
    # the last cell prints this: once it shows, every cell has run
    page.locator(".jp-OutputArea-output", has_text="thought first: True").last.wait_for(timeout=60_000)
    chat = page.locator(".lmnb-chat").first
    chat.wait_for(timeout=30_000)
    chat.scroll_into_view_if_needed()
    # the Enter-key handler comes with the panel (an HTML widget of its own): no extension is installed
    page.wait_for_function("() => window.__lmnbEnterKey === true", timeout=10_000)
    return chat


def test_type_watch_it_stream_then_stop_a_long_answer(
    page: Any, lab: Any, fake_lmstudio: MockLMStudioServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect  # here: without Playwright the fixtures skip (or fail in CI) instead

    fake_lmstudio.update_model(MODEL, tokens_per_second=0, reply_tokens=None, ttft=0.0)
    chat = open_and_run_notebook(page, lab)
    answers_before = chat.locator(".lmnb-assistant").count()
    assert answers_before >= 3  # the notebook's own cells talked through the panel

    # --- a message typed into the panel streams in, visibly growing -------------------------------------------
    fake_lmstudio.update_model(MODEL, tokens_per_second=30, reply_tokens=90)  # about 3 s
    box = chat.locator(".lmnb-input textarea")
    box.click()
    box.press_sequentially("Hello from the browser")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    box.press_sequentially("on two lines")
    assert "\n" in box.input_value()
    page.keyboard.press("Enter")  # sends
    user = last(chat, ".lmnb-user")
    user.filter(has_text="on two lines").wait_for(timeout=10_000)
    assert "Hello from the browser\non two lines" in user.inner_text()
    page.wait_for_function(
        "() => document.querySelector('.lmnb-chat .lmnb-input textarea').value === ''", timeout=5_000
    )
    reply_box = chat.locator(".lmnb-assistant").nth(answers_before)
    reply_box.wait_for(timeout=10_000)
    # every change the page makes to the answer is recorded as it happens (no sampling on a timer)
    reply_box.evaluate(RECORD_LENGTHS)
    footer = reply_box.locator(".lmnb-footer-line")
    footer.filter(has_text="finish:").wait_for(timeout=30_000)
    assert "finish: stop" in footer.inner_text(), footer.inner_text()
    lengths: list[int] = page.evaluate("window.__lmnbLengths")
    growing = [n for n in lengths if n > 0]
    assert len(set(growing)) >= 3, f"the answer should be seen growing in the page: {lengths}"
    assert growing == sorted(growing)
    assert text_length(reply_box.locator(".lmnb-answer")) >= max(growing)

    # --- a long answer, stopped with the Stop button ----------------------------------------------------------
    fake_lmstudio.update_model(MODEL, tokens_per_second=30, reply_tokens=5000)  # nearly 3 minutes unstopped
    abandoned = fake_lmstudio.counters.abandoned
    box.click()
    box.press_sequentially("Now write a very long essay")
    chat.locator("button", has_text="Send").click()  # the button sends too, the text typed just before included
    last(chat, ".lmnb-user").filter(has_text="very long essay").wait_for(timeout=10_000)
    essay_box = chat.locator(".lmnb-assistant").nth(answers_before + 1)
    essay = essay_box.locator(".lmnb-answer")
    expect(essay).to_have_text(re.compile(r"[\s\S]{60}"), timeout=15_000)  # the long answer is streaming
    stop = chat.locator("button", has_text="Stop")
    assert stop.is_enabled()
    stop.click()
    essay_box.locator(".lmnb-footer-line").filter(has_text="stopped").wait_for(timeout=10_000)
    chat.locator(".lmnb-status", has_text="Stopped").wait_for(timeout=10_000)
    # Stop closed the connection: the fake server saw the client leave mid-answer and stopped generating
    fake_lmstudio.wait_until(lambda: fake_lmstudio.counters.abandoned == abandoned + 1)
    partial = essay.inner_text()
    assert 60 <= len(partial) < 5000
    assert stop.is_disabled() and chat.locator("button", has_text="Send").is_enabled()

    shot = tmp_path / "chat_panel.png"
    chat.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if not SCREENSHOT.exists() or os.environ.get("LMNB_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)

    # --- another model from the list; the conversation goes on ------------------------------------------------
    other = "google/gemma-3-4b"
    fake_lmstudio.update_model(other, tokens_per_second=60, reply_tokens=30)
    chat.locator("select").select_option(other)
    box.click()
    box.press_sequentially("And what do you think?")
    page.keyboard.press("Enter")
    last(chat, ".lmnb-assistant .lmnb-head").filter(has_text=other).wait_for(timeout=10_000)
    last(chat, ".lmnb-assistant .lmnb-footer-line").filter(has_text="finish: stop").wait_for(timeout=15_000)
    asked = fake_lmstudio.last_request
    assert asked is not None and asked.model == other
    assert [m["role"] for m in asked.json["messages"]][-3:] == ["user", "assistant", "user"]  # the stopped answer too
    assert essay.inner_text() == partial, "nothing may arrive after Stop"  # not even once another answer streamed

    # --- export: run the notebook's export cell again, as a user would -----------------------------------------
    export = page.locator(".jp-CodeCell", has_text="to_markdown").first
    export.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    exported = export.locator(".jp-OutputArea-output", has_text=f"### {other}")
    exported.wait_for(timeout=15_000)
    assert exported.inner_text().count("### You") == answers_before + 3
