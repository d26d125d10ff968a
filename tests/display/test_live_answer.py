"""A long answer as a column of outputs (issue 17): finished blocks sent once, only the tail repainted, the cost of a
repaint flat along the answer — checked on the pure column and on the cell view through a frontend's replay."""

from __future__ import annotations

import json
from typing import Any

from stream_view_doubles import CLEAR_AT_NEXT_OUTPUT, FakeClock, FakeStream, RecordingPublisher

from lm_notebook.client.stream import StreamPart
from lm_notebook.display.answer import NotebookStreamView
from lm_notebook.display.frontend import CellOutputs
from lm_notebook.display.live_answer import CURSOR, LiveAnswer, Op, WordCount
from lm_notebook.testing.replies import reply_tokens_exact

PROMPT = [{"role": "user", "content": "A long essay"}]


def _tokens(n: int) -> list[str]:
    return reply_tokens_exact(n, "m", PROMPT)


class Screen:
    """What a frontend shows of a column's ops: one output per slot, in order."""

    def __init__(self) -> None:
        self.outputs: dict[int, dict[str, Any]] = {}
        self.bytes = 0
        self.messages = 0
        self.updates: dict[int, int] = {}

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            assert op.append == (op.slot not in self.outputs), "an output is appended once, then only updated"
            assert op.slot == max(self.outputs, default=-1) + 1 or not op.append, "appended below the others"
            self.outputs[op.slot] = op.bundle
            self.updates[op.slot] = self.updates.get(op.slot, 0) + 1
            self.bytes += len(json.dumps(op.bundle))
            self.messages += 1

    def markdown(self) -> str:
        return "".join(self.outputs[k].get("text/markdown", "") for k in sorted(self.outputs))


def _stream(tokens: list[str], every: int, fmt: str = "markdown") -> tuple[LiveAnswer, Screen, list[int]]:
    live = LiveAnswer(fmt)  # type: ignore[arg-type]
    screen = Screen()
    screen.apply([live.first("m · waiting for the first token…")])
    sizes = []
    for i, token in enumerate(tokens, 1):
        live.add("content", token)
        if i % every == 0:
            ops = live.frame(f"m · ≈{i} tokens")
            screen.apply(ops)
            sizes.append(sum(len(json.dumps(op.bundle)) for op in ops))
    screen.apply(live.frame("m · done"))
    return live, screen, sizes


def test_every_finished_block_is_sent_once_and_the_column_reads_as_the_answer() -> None:
    tokens = _tokens(4000)
    text = "".join(tokens)
    live, screen, _ = _stream(tokens, every=50)
    assert live.outputs > 10, "finished blocks became outputs of their own"
    shown = screen.markdown()
    assert shown.split(CURSOR)[0] == text  # every character, in order, once
    last = max(screen.outputs)
    # each finished block's output was painted at most while it was the tail, and once more as its final blocks
    assert all(count <= 50 for slot, count in screen.updates.items() if slot != last)
    # the traffic is about the answer's size, not its square (the whole text re-sent every 50 tokens: ~40×)
    assert screen.bytes < 2.2 * len(json.dumps(text))


def test_a_repaint_costs_the_same_at_the_end_of_a_long_answer_as_at_its_start() -> None:
    _, _, sizes = _stream(_tokens(20_000), every=100)
    tenth = len(sizes) // 10
    first, last = sizes[:tenth], sizes[-tenth:]
    assert max(last) < 4 * max(first) and sum(last) < 2 * sum(first)
    assert max(sizes) < 6000, "a repaint never re-sends the text before the last finished block"


def test_nothing_is_repainted_when_nothing_changed_and_a_fence_stays_open_in_the_tail_only() -> None:
    live = LiveAnswer("markdown")
    live.first("f")
    for token in ["Intro.\n\n", "```python\n", "x = 1\n", "\n", "y = 2\n"]:
        live.add("content", token)
    ops = live.frame("f")
    assert live.frame("f") == []
    blocks = [op.bundle["text/markdown"] for op in ops]
    assert blocks[0] == "Intro.\n\n"  # finished: its own output
    assert blocks[-1].startswith("```python\nx = 1\n\ny = 2\n▌\n```")  # inside the fence: closed for the screen
    live.add("content", "```\n\nDone.\nMore")  # (the last line may still grow: a cut comes before a whole line)
    screen = [op.bundle["text/markdown"] for op in live.frame("f")]
    assert screen[0] == "```python\nx = 1\n\ny = 2\n```\n\n" and screen[1].startswith("Done.\nMore▌")


def test_thinking_stays_in_the_first_output_above_the_answer() -> None:
    live = LiveAnswer("markdown")
    first = live.first("m · waiting for the first token…")
    assert first.append and first.slot == 0
    live.add("reasoning", "Let me think about tides")
    (thinking,) = live.frame("m · ≈1 token")
    assert "Thinking… (5 words)" in thinking.bundle["text/markdown"] and thinking.slot == 0
    live.add("content", "Tides come from the moon.")
    ops = live.frame("m · ≈2 tokens")
    assert [(op.slot, op.append) for op in ops] == [(0, False), (1, True)]
    assert ops[0].bundle == {"text/markdown": "<details><summary>Thinking… (5 words)</summary></details>"}
    assert ops[1].bundle["text/markdown"].startswith("Tides come from the moon.▌")


def test_a_status_line_and_finished_outputs_go_above_the_answer() -> None:
    live = LiveAnswer("markdown")
    live.first("f")
    live.set_status("Processing the prompt… 40%")
    assert "Processing the prompt… 40%" in live.frame("f")[0].bundle["text/markdown"]
    live.add_output({"text/markdown": "**tool** `search`"})
    live.add("content", "The answer")
    ops = live.frame("f")
    # the first output keeps the status (and nothing else); the tool's output and the answer go below it
    assert [op.slot for op in ops] == [0, 1, 2]
    assert ops[0].bundle == {"text/markdown": "Processing the prompt… 40%"}
    assert ops[1].bundle == {"text/markdown": "**tool** `search`"}
    assert ops[2].bundle["text/markdown"].startswith("The answer▌")
    live.add("content", " goes on.")
    live.add_output({"text/markdown": "**tool** `fetch`"})
    ops = live.frame("f")  # the text so far ends above the new output, and a new tail opens below it
    assert [(op.slot, op.append, op.bundle.get("text/markdown")) for op in ops[:2]] == [
        (2, False, "The answer goes on."), (3, True, "**tool** `fetch`")]


def test_text_format_freezes_whole_lines() -> None:
    live = LiveAnswer("text")
    live.first("f")
    live.add("content", "line <1>\nline 2\npart")
    ops = live.frame("f")
    pre = '<pre style="white-space: pre-wrap; margin: 0">'
    assert ops[0].bundle == {"text/html": f"{pre}line &lt;1&gt;\nline 2\n</pre>"}
    assert "part▌" in ops[1].bundle["text/html"]


def test_words_are_counted_as_they_come() -> None:
    counter = WordCount()
    for piece in ["Let", " me", " th", "ink", "  ", "a", "bout", " it"]:
        counter.add(piece)
    assert counter.words == 5  # "Let me think  about it"


def test_the_cell_view_through_a_frontend_shows_the_answer_growing_then_only_the_final_answer(
    publisher: RecordingPublisher,
) -> None:
    tokens = _tokens(1500)
    clock = FakeClock()
    view = NotebookStreamView("markdown", "m", interval=0.5, clock=clock)
    view.start()
    for start in range(0, len(tokens), 100):
        shown = len(publisher.sent)
        for token in tokens[start : start + 100]:
            view.add(StreamPart("content", token))
        clock.advance(1.0)  # a repaint is due (a paint of two messages holds the next one two intervals): wait for it
        publisher.wait_for(lambda sent, shown=shown: len(sent) > shown)  # type: ignore[misc]
    view.stop()
    assert publisher.sent[-1] == (CLEAR_AT_NEXT_OUTPUT, None, False)
    view.show_final(FakeStream([]).result(), "markdown")
    frontend = CellOutputs()
    ids = set()
    for data, display_id, update in publisher.sent:
        if data is CLEAR_AT_NEXT_OUTPUT:
            frontend.add({"msg_type": "clear_output", "content": {"wait": True}})
            continue
        ids.add(display_id)
        kind = "update_display_data" if update else "display_data"
        frontend.add({"msg_type": kind, "content": {"data": data, "metadata": {},
                                                    "transient": {"display_id": display_id} if display_id else {}}})
    assert len(ids - {None}) == view.live.outputs > 1
    (saved,) = frontend.outputs()  # the live outputs are gone: the answer once
    assert "▌" not in saved["data"]["text/markdown"]
