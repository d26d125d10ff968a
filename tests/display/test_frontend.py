"""What a frontend keeps of a cell's messages (clear_output, display updates), and nbval reading through the replay.

Plain message values; the real kernel, nbclient and nbval runs are in test_saved_notebook.py.
"""

from __future__ import annotations

from collections import deque
from queue import Empty
from typing import Any

import pytest

from lm_notebook.display.frontend import CellOutputs, FrontendReplay

CELL = "cell-1"


def msg(kind: str, parent: str | None = CELL, **content: Any) -> dict[str, Any]:
    return {"msg_type": kind, "header": {"msg_type": kind}, "parent_header": {"msg_id": parent} if parent else {},
            "metadata": {}, "content": content}


def display(
    text: str, display_id: str | None = None, kind: str = "display_data", parent: str = CELL
) -> dict[str, Any]:
    transient = {"display_id": display_id} if display_id else {}
    return msg(kind, parent, data={"text/plain": text}, metadata={}, transient=transient)


def status(state: str, parent: str | None = CELL) -> dict[str, Any]:
    return msg("status", parent, execution_state=state)


def answer(text: str) -> dict[str, Any]:
    return msg("execute_result", data={"text/plain": text}, metadata={}, execution_count=3)


def shown(cell: CellOutputs) -> list[tuple[str, str]]:
    return [(o["output_type"], o.get("data", {}).get("text/plain", o.get("text", ""))) for o in cell.outputs()]


def test_a_streamed_answer_leaves_only_the_answer() -> None:
    cell = CellOutputs()
    for m in [display("waiting…", "live"), display("Ti▌", "live", "update_display_data"),
              display("Tides▌", "live", "update_display_data"), msg("clear_output", wait=True)]:
        assert cell.add(m)
    assert shown(cell) == [("display_data", "Tides▌")]  # the live view stays until the next output comes
    cell.add(answer("Tides."))
    assert shown(cell) == [("execute_result", "Tides.")]
    assert cell.outputs()[0]["execution_count"] == 3


def test_clear_now_and_later_and_what_counts_as_the_next_output() -> None:
    cell = CellOutputs()
    cell.add(msg("stream", name="stdout", text="a\n"))
    cell.add(msg("clear_output", wait=False))
    assert shown(cell) == []
    cell.add(display("live", "d"))
    cell.add(msg("clear_output", wait=True))
    cell.add(display("newer", "d", "update_display_data"))  # an update is not an output: the clear still waits
    assert shown(cell) == [("display_data", "newer")]
    cell.add(msg("error", ename="KeyboardInterrupt", evalue="", traceback=["KeyboardInterrupt: stopped"]))
    assert [o["output_type"] for o in cell.outputs()] == ["error"]  # an error is one
    assert not cell.add(status("busy")) and not cell.add(msg("execute_input", code="x"))


def test_updates_replace_every_output_with_the_id_and_a_reused_id_updates_too() -> None:
    cell = CellOutputs()
    cell.add(display("one", "a"))
    cell.add(display("other", "b"))
    cell.add(display("one again", "a"))
    cell.add(display("two", "a", "update_display_data"))
    assert shown(cell) == [("display_data", "two"), ("display_data", "other"), ("display_data", "two")]
    cell.add(display("three", "a"))  # a new display with an id in use: shown, and the others follow it
    assert [text for _, text in shown(cell)] == ["three", "other", "three", "three"]
    cell.add(display("nobody", "zz", "update_display_data"))  # an id not shown here changes nothing
    assert len(cell.outputs()) == 4


class Kernel:
    """An iopub channel of given messages; ``read`` raises ``Empty`` when there are none left, as jupyter_client."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.queue = deque(messages)
        self.timeouts: list[float | None] = []

    def read(self, timeout: float | None) -> dict[str, Any]:
        self.timeouts.append(timeout)
        if not self.queue:
            raise Empty
        return self.queue.popleft()


def read_all(replay: FrontendReplay) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(replay(5))
        except Empty:
            return out


def test_the_replay_hands_on_a_cell_as_the_frontend_kept_it_then_its_idle() -> None:
    other = display("from another cell", parent="cell-0")
    kernel = Kernel([
        status("busy"), msg("execute_input", code="%%lm"),
        display("waiting…", "live"), display("Tides▌", "live", "update_display_data"), other,
        msg("clear_output", wait=True), answer("Tides."), status("idle"),
        status("busy", "cell-2"), msg("stream", "cell-2", name="stdout", text="hi\n"), status("idle", "cell-2"),
    ])
    got = read_all(FrontendReplay(kernel.read))
    kinds = [(m["msg_type"], m["parent_header"].get("msg_id")) for m in got]
    assert kinds == [
        ("status", CELL), ("execute_input", CELL),
        ("display_data", "cell-0"),  # read while the cell was collected: handed on first, as it came
        ("execute_result", CELL), ("status", CELL),
        ("status", "cell-2"), ("stream", "cell-2"), ("status", "cell-2"),  # a cell with no rules comes out as it went
    ]
    assert got[3]["content"]["data"] == {"text/plain": "Tides."}
    assert set(kernel.timeouts) == {5}  # every read waits as long as the reader asked


def test_after_an_error_the_wait_for_idle_reads_the_idle_from_the_replay() -> None:
    # nbval, on an error, waits for the cell's idle with a second reader: both must read through one replay
    kernel = Kernel([display("live", "d"), msg("clear_output", wait=True),
                     msg("error", ename="KeyboardInterrupt", evalue="", traceback=[]), status("idle")])
    replay = FrontendReplay(kernel.read)
    assert replay(5)["msg_type"] == "error"
    assert replay(5) == status("idle")
    with pytest.raises(Empty):
        replay(5)


def test_a_cell_cut_short_raises_the_readers_timeout() -> None:
    replay = FrontendReplay(Kernel([display("live", "d")]).read)  # no idle ever comes
    with pytest.raises(Empty):
        replay(5)
