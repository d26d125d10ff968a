"""A real ``InteractiveShell`` for the magics' tests: what it displays, recorded as a frontend would keep it, and the
one line IPython shows for a cell's error."""

from __future__ import annotations

import re
from typing import Any

from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

from lm_notebook.display.frontend import CellOutputs

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MODEL = "qwen2.5-7b-instruct"


class Recorder(DisplayPublisher):
    """Records every display, update and clear as the iopub message a kernel would send for it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                update: bool = False, **kw: Any) -> None:
        kind = "update_display_data" if update else "display_data"
        self.sent.append({"msg_type": kind, "content": {"data": data, "metadata": metadata or {},
                                                         "transient": transient or {}}})

    def clear_output(self, wait: bool = False) -> None:
        self.sent.append({"msg_type": "clear_output", "content": {"wait": wait}})

    def kinds(self) -> list[str]:
        return [m["msg_type"] for m in self.sent]

    def shown(self, value: Any = None) -> list[dict[str, Any]]:
        """The data of the outputs a frontend keeps (what a saved notebook holds); ``value``: the cell's value,
        shown last as its ``execute_result`` (a plain shell's displayhook does not pass through the publisher)."""
        outputs = CellOutputs()
        for message in self.sent:
            outputs.add(message)
        if value is not None:
            outputs.add({"msg_type": "execute_result", "content": {"data": value._repr_mimebundle_(), "metadata": {}}})
        return [m["content"]["data"] for m in outputs.messages()]


def recorder(ip: InteractiveShell) -> Recorder:
    pub = ip.display_pub
    assert isinstance(pub, Recorder)
    return pub


def run(ip: InteractiveShell, source: str) -> ExecutionResult:
    return ip.run_cell(source, store_history=True)


def shown(ip: InteractiveShell, value: Any = None) -> list[dict[str, Any]]:
    return recorder(ip).shown(value)


def error_line(res: ExecutionResult) -> str:
    """The exact lines IPython shows for the cell's exception (its _render_traceback_)."""
    err = res.error_in_exec or res.error_before_exec
    assert err is not None, "the cell should have failed"
    lines = err._render_traceback_()  # type: ignore[union-attr]
    assert len(lines) == 1
    return ANSI.sub("", lines[0])


def use(ip: InteractiveShell, model: str = MODEL) -> None:
    assert run(ip, f"%lm_use {model}").success
    recorder(ip).sent.clear()
