"""A long ``%%lm`` answer in a real browser (issue 17): JupyterLab shows finished blocks as outputs of their own while
the answer streams, the text reads in order with no piece twice, and the cell ends with the answer once.

Saves screenshots (``docs/lm_long_answer_streaming.png``: the cell while it streams; ``docs/lm_long_answer.png``: the
end of the finished answer) when they are missing or ``LMNB_UPDATE_SCREENSHOT=1``; always in the test's temporary
directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lm_notebook.testing import MockLMStudioServer

MODEL = "qwen2.5-7b-instruct"
DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKENS = 1500
CELLS = [
    "%load_ext lm_notebook\n%lm_use " + MODEL,
    "%%lm\nWrite a long essay about running language models on a laptop.",
]
RUN_ALL = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.sessionContext.ready;
    app.commands.execute('notebook:run-all-cells');
}"""


def _notebook(root: Path) -> str:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": source} for i, source in enumerate(CELLS)]
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (root / "long_answer.ipynb").write_text(json.dumps(nb))
    return "long_answer.ipynb"


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _finished_lines(tail: str) -> str:
    """The live tail's text before the line the cursor is on (the footer below it aside)."""
    before = tail.split("▌")[0]
    return before.rsplit("\n", 1)[0] if "\n" in before else ""


def _keep(shot: Path, name: str) -> None:
    target = DOCS / name
    if os.environ.get("LMNB_UPDATE_SCREENSHOT") == "1" or not target.exists():
        shutil.copy(shot, target)


def test_a_long_answer_streams_in_blocks_then_shows_once(
    page: Any, lab: Any, fake_lmstudio: MockLMStudioServer, tmp_path: Path
) -> None:
    fake_lmstudio.update_model(MODEL, tokens_per_second=300, reply_tokens=TOKENS, ttft=0.0)
    page.goto(lab.notebook_url(_notebook(lab.root)))
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel); }",
        timeout=60_000,
    )
    page.evaluate(RUN_ALL)
    cell = page.locator(".jp-CodeCell").nth(1)
    # while it streams: finished blocks are outputs of their own, without a cursor, above the repainted tail (read
    # in one go, at a moment the page has painted every output). JupyterLab renders each markdown output when its
    # render resolves, not in the order the kernel sent them: a new output can be empty for a while, and a tail
    # updated to its finished block can still show its last live text (with the cursor) after the new tail below it
    # is painted — later still for a fenced block whose language mode it loads first. A frame read then is not what
    # the kernel sent, so the wait is for a painted one; a cursor the kernel left in a finished block never lets it
    # come (the wait fails).
    snapshot = page.wait_for_function(
        "(n) => { const c = document.querySelectorAll('.jp-CodeCell')[1];"
        " const outs = c ? [...c.querySelectorAll('.jp-OutputArea-output')] : [];"
        " const texts = outs.map(o => o.innerText);"
        " return outs.length >= n && outs.every(o => o.childElementCount > 0)"
        " && texts.slice(0, -1).every(t => !t.includes('▌')) && texts[texts.length - 1].includes('▌')"
        " ? texts : null; }",
        arg=4, timeout=60_000,
    )
    *live_blocks, live_tail = snapshot.json_value()
    live = [_words(text) for text in [*live_blocks, live_tail]]
    assert all(live), "every block shown has text"
    cell.scroll_into_view_if_needed()
    streaming = tmp_path / "lm_long_answer_streaming.png"
    cell.screenshot(path=str(streaming))
    # the end: one output, the answer, with its footer
    final = cell.locator(".jp-OutputArea-output", has_text=f"{TOKENS} tokens")
    final.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-CodeCell')[1].querySelectorAll('.jp-OutputArea-output').length === 1",
        timeout=30_000,
    )
    answer = _words(final.inner_text())
    assert "▌" not in answer
    # what streamed reads as the start of the answer: every block in order, none twice. The tail's growing line (the
    # cursor's) is left out: its Markdown is unfinished (``- **Time to first token▌`` shows the ``**`` its
    # closing will turn into bold) and its last word may grow; the lines before it are finished
    shown_live = _words(" ".join([*live_blocks, _finished_lines(live_tail)]))
    assert len(_words(" ".join(live))) > 300 and answer.startswith(shown_live)
    final.locator("sub").last.scroll_into_view_if_needed()  # the end of the answer and its footer, on screen
    done = tmp_path / "lm_long_answer.png"
    page.screenshot(path=str(done))
    _keep(done, "lm_long_answer.png")
    _keep(streaming, "lm_long_answer_streaming.png")
