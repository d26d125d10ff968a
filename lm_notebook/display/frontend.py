"""What a Jupyter frontend keeps of a cell's output messages — what a saved notebook holds — as plain values.

JupyterLab, Notebook 7, VS Code and nbclient (which ``jupyter nbconvert --execute`` runs) apply two rules that a
plain reader of the kernel's iopub channel does not (nbval 0.11 ignores both messages):

- ``clear_output`` empties the cell's outputs; with ``wait=True``, only when the next output arrives;
- ``update_display_data`` replaces the data of the outputs shown with its ``display_id`` (and so does a new
  ``display_data`` or ``execute_result`` that reuses an id, besides being shown itself).

``%%lm`` relies on both (see :mod:`lm_notebook.display.answer`): its live view is updated in place and cleared when
the answer comes. :class:`CellOutputs` applies the rules to one cell's messages (as nbclient does);
:class:`FrontendReplay` puts them between a kernel and a reader that knows neither rule, so that reader collects
what the frontend shows. To validate notebooks with ``%%lm`` cells by nbval, wrap its kernel's reading (what
``notebooks/conftest.py`` does)::

    replay = FrontendReplay(lambda timeout: read_iopub(timeout))   # read_iopub: the kernel client's reading
    message = replay(timeout=5)                                    # read through the replay instead

Display ids are followed within a cell: an update of an earlier cell's display is not replayed there (a reader that
checks one cell at a time has already checked the earlier one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]

OUTPUTS = ("display_data", "execute_result", "stream", "error")
"""The message types that add an output to a cell."""
_RULES = ("clear_output", "update_display_data")


def _display_id(message: Message) -> str | None:
    transient = message["content"].get("transient")
    return transient.get("display_id") if transient else None


def _parent_id(message: Message) -> str | None:
    parent = message.get("parent_header") or {}
    value = parent.get("msg_id")
    return value if isinstance(value, str) else None


class CellOutputs:
    """One cell's outputs as a frontend keeps them, fed its iopub messages in order."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._clear_at_next_output = False

    def add(self, message: Message) -> bool:
        """Apply ``message``; returns False when it is not about outputs (a status, a comm, the input, …)."""
        kind = message["msg_type"]
        content = message["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self._clear_at_next_output = True
            else:
                self._messages.clear()
            return True
        display_id = _display_id(message)
        if kind == "update_display_data":
            if display_id:
                self._update(display_id, content)
            return True
        if kind not in OUTPUTS:
            return False
        if self._clear_at_next_output:
            self._clear_at_next_output = False
            self._messages.clear()
        if display_id and kind != "stream":
            self._update(display_id, content)
        self._messages.append(message)
        return True

    def messages(self) -> list[Message]:
        """The messages of the outputs shown now, in order, each as the message that shows it as it looks now."""
        return list(self._messages)

    def outputs(self) -> list[dict[str, Any]]:
        """The outputs shown now, as nbformat's output dicts (what a saved ``.ipynb`` holds)."""
        return [_as_output(m) for m in self._messages]

    def _update(self, display_id: str, content: dict[str, Any]) -> None:
        for i, shown in enumerate(self._messages):
            if _display_id(shown) == display_id:
                updated = {**shown["content"], "data": content["data"], "metadata": content.get("metadata", {})}
                self._messages[i] = {**shown, "content": updated}


def _as_output(message: Message) -> dict[str, Any]:
    kind = message["msg_type"]
    content = message["content"]
    if kind == "stream":
        return {"output_type": kind, "name": content["name"], "text": content["text"]}
    if kind == "error":
        return {"output_type": kind, **{k: content[k] for k in ("ename", "evalue", "traceback")}}
    output = {"output_type": kind, "data": content["data"], "metadata": content.get("metadata", {})}
    if kind == "execute_result":
        output["execution_count"] = content.get("execution_count")
    return output


class FrontendReplay:
    """A reader of iopub messages (``read(timeout)``) whose cells' outputs come out as a frontend keeps them.

    Messages pass through unchanged until one about outputs comes; from there the replay reads to the end of that
    cell (the kernel's ``idle`` status for it), then hands on, in order: the other messages read meanwhile, one
    message per output the frontend keeps (see :class:`CellOutputs`), and the ``idle`` status. A cell with no
    ``clear_output`` or display update comes out as it went in. ``read`` raising (a timeout) propagates.
    """

    def __init__(self, read: Callable[[float | None], Message]) -> None:
        self._read = read
        self._ready: deque[Message] = deque()

    def __call__(self, timeout: float | None = None) -> Message:
        if self._ready:
            return self._ready.popleft()
        message = self._read(timeout)
        cell_id = _parent_id(message)
        if cell_id is None or message["msg_type"] not in (*OUTPUTS, *_RULES):
            return message
        cell = CellOutputs()
        cell.add(message)
        others: list[Message] = []
        while True:
            message = self._read(timeout)
            if _parent_id(message) == cell_id:
                if message["msg_type"] == "status" and message["content"].get("execution_state") == "idle":
                    break
                if cell.add(message):
                    continue
            others.append(message)
        self._ready.extend(others)
        self._ready.extend(cell.messages())
        self._ready.append(message)
        return self._ready.popleft()
