"""A tool call as a collapsible block: the function (or tool) name, its arguments, its output or error, and its time.

Pure renderers of plain values (no IPython): ``%%lm --tools`` shows one block per call above the answer, the chat
panel shows them in the conversation, and LM Studio's native tool events (MCP) render the same way. A block is
closed by default (its summary line says what was called and how it ended); opening it shows the arguments and the
result. ``running`` marks a call under way (no result yet).

>>> tool_block_text("lookup", {"city": "Paris"}, output="2.1 million", duration=0.012)
'🔧 lookup(city="Paris") → 2.1 million  (12 ms)'
>>> bundle = tool_blocks_bundle([ToolBlock("lookup", {"city": "Paris"}, output="2.1 million")])
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lm_notebook.client.native_types import ToolEvent

# how much of an output or error the summary line and the text form show (the <details> body shows all of it,
# up to BODY_CHARS: the kernel's message and the saved notebook stay small)
SUMMARY_CHARS = 80
BODY_CHARS = 20_000


@dataclass(frozen=True)
class ToolBlock:
    """The plain values one block shows. ``arguments``: the parsed dict, or the raw text when it did not parse;
    ``duration`` in seconds (None: not measured); ``running``: no output yet."""

    name: str
    arguments: Mapping[str, Any] | str | None = None
    output: str | None = None
    error: str | None = None
    duration: float | None = None
    running: bool = False


def event_block(event: ToolEvent) -> ToolBlock:
    """The block of a tool call LM Studio ran itself (an MCP integration, native route)."""
    return ToolBlock(event.tool, event.arguments, output=event.output if event.ok else None,
                     error=None if event.ok else (event.reason or "failed"))


def _one_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _value_text(value: Any, indent: int | None = None) -> str:
    """JSON, else ``repr``, else a note: whatever the model sent, the block still shows."""
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<a {type(value).__name__} that cannot be shown>"


def arguments_text(arguments: Mapping[str, Any] | str | None) -> str:
    """The arguments as a call's inside: ``city="Paris", limit=3``; raw text (it did not parse) as it came."""
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        return arguments
    return ", ".join(f"{key}={_value_text(value)}" for key, value in arguments.items())


def duration_text(seconds: float | None) -> str:
    """``12 ms`` under a second, ``1.4 s`` above; empty when not measured."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{max(seconds * 1000, 0):.0f} ms"
    return f"{seconds:.1f} s"


def _ending(block: ToolBlock) -> str:
    if block.running:
        return "running…"
    if block.error is not None:
        return f"error: {_one_line(block.error)}"
    return _one_line(block.output or "")


def tool_block_text(
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    output: str | None = None,
    error: str | None = None,
    duration: float | None = None,
    running: bool = False,
) -> str:
    """One call as one line of text: ``🔧 name(arguments) → output  (time)`` (``✗`` and the error when it failed)."""
    return _block_text(ToolBlock(name, arguments, output, error, duration, running))


def _block_text(block: ToolBlock) -> str:
    mark = "✗" if block.error is not None else "🔧"
    took = duration_text(block.duration)
    line = f"{mark} {block.name}({_one_line(arguments_text(block.arguments))}) → {_ending(block)}"
    return f"{line}  ({took})" if took else line


def _pre(text: str) -> str:
    shown = text if len(text) <= BODY_CHARS else text[:BODY_CHARS] + f"\n… ({len(text) - BODY_CHARS} more characters)"
    return f'<pre style="white-space: pre-wrap; margin: 0.2em 0">{html.escape(shown)}</pre>'


def _arguments_pre(arguments: Mapping[str, Any] | str | None) -> str:
    if arguments is None:
        return _pre("")
    return _pre(arguments if isinstance(arguments, str) else _value_text(arguments, indent=2))


def tool_block_html(
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    output: str | None = None,
    error: str | None = None,
    duration: float | None = None,
    running: bool = False,
) -> str:
    """One call as a closed ``<details>`` block: the summary names the function, the outcome and the time; the body
    holds the arguments (as JSON) and the output or the error."""
    return _block_html(ToolBlock(name, arguments, output, error, duration, running))


def _block_html(block: ToolBlock) -> str:
    failed = block.error is not None
    took = duration_text(block.duration)
    status = "running…" if block.running else ("failed" if failed else "done")
    summary = (
        f"{'✗' if failed else '🔧'} <code>{html.escape(block.name)}</code> "
        f"<span class=\"lm-tool-status\">{html.escape(status)}</span>"
        + (f" · {html.escape(took)}" if took else "")
        + (f" · {html.escape(_one_line(_ending(block), 60))}" if not block.running else "")
    )
    body = [f"<div><b>arguments</b>{_arguments_pre(block.arguments)}</div>"]
    if failed:
        body.append(f'<div><b>error</b>{_pre(block.error or "")}</div>')
    elif not block.running:
        body.append(f"<div><b>result</b>{_pre(block.output or '')}</div>")
    css = "lm-tool-call lm-tool-error" if failed else "lm-tool-call"
    style = "margin: 0.2em 0; padding: 0.1em 0.5em; border-left: 3px solid " + ("#c62828" if failed else "#90a4ae")
    return f'<details class="{css}" style="{style}"><summary>{summary}</summary>\n' + "\n".join(body) + "\n</details>"


def tool_blocks_html(blocks: Iterable[ToolBlock]) -> str:
    """Several calls, one block each, in order."""
    return "\n".join(_block_html(b) for b in blocks)


def tool_blocks_text(blocks: Iterable[ToolBlock]) -> str:
    """Several calls, one line each, in order."""
    return "\n".join(_block_text(b) for b in blocks)


def tool_blocks_bundle(blocks: Sequence[ToolBlock]) -> dict[str, Any]:
    """A mimebundle (``text/plain`` and ``text/html``) of the calls, for ``display(..., raw=True)``."""
    return {"text/plain": tool_blocks_text(blocks), "text/html": tool_blocks_html(blocks)}
