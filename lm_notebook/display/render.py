"""An answer as a mimebundle: pure functions of the text, the thinking, the format and the footer; no IPython.

What ``%%lm`` shows and returns: :func:`render_bundle` (live and final), :func:`render_answer` (final), and
:class:`RenderedChatResult`, the :class:`ChatResult` that knows its format (what ``%%lm`` returns and ``-o`` stores).
How it streams into a cell is :mod:`lm_notebook.display.answer`.

>>> bundle = render_answer(ChatResult("**Hi**", model="m"), "markdown")    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lm_notebook.client.errors import AnswerFormatError
from lm_notebook.client.schemas import parse_json_answer
from lm_notebook.client.types import ChatResult
from lm_notebook.display.footer import footer_text
from lm_notebook.display.thumbnails import parsed_markdown
from lm_notebook.display.tool_blocks import event_block, tool_blocks_html, tool_blocks_text

AnswerFormat = Literal["markdown", "text", "code", "json"]
FORMATS: tuple[AnswerFormat, ...] = ("markdown", "text", "code", "json")

Bundle = dict[str, Any]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)
_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.DOTALL | re.M)
_CURSOR = "▌"


def close_open_fence(markdown: str) -> str:
    """Close a code fence left open (a cut or partial answer), so what follows is not swallowed into it."""
    opened: str | None = None
    for match in _FENCE.finditer(markdown):
        fence = match.group(1)
        if opened is None:
            opened = fence
        elif fence[0] == opened[0] and len(fence) >= len(opened):
            opened = None
    if opened is None:
        return markdown
    return markdown + ("" if markdown.endswith("\n") else "\n") + opened


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of an answer: its language (the fence's info word, ``""`` when none) and its code."""

    language: str
    code: str


def code_blocks(text: str) -> tuple[CodeBlock, ...]:
    """Every fenced code block of ``text``, in order; a block left open (a cut answer) runs to the end."""
    return tuple(
        CodeBlock(m.group(2), m.group(3).rstrip("\n")) for m in _FENCED_BLOCK.finditer(close_open_fence(text))
    )


def answer_code(text: str) -> tuple[CodeBlock, ...]:
    """What ``-f code`` shows: every fenced block, or the whole answer as one block when it has no fence."""
    blocks = code_blocks(text)
    if blocks or not text.strip():
        return blocks
    return (CodeBlock("", text.strip("\n")),)


def fenced(code: str, language: str = "") -> str:
    """A Markdown code block whose fence is longer than any backtick run inside ``code``."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


def _word_count(text: str) -> int:
    return len(text.split())


def _thinking_html(reasoning: str, *, live: bool) -> str:
    words = _word_count(reasoning)
    if live:  # a summary only: re-rendering an open <details> 10 times a second would snap it shut
        return f"<details><summary>Thinking… ({words} words)</summary></details>"
    return (
        f"<details><summary>Thinking ({words} words)</summary>\n\n"
        f"<pre style=\"white-space: pre-wrap\">{html.escape(reasoning.strip())}</pre>\n\n</details>"
    )


def _sub(text: str) -> str:
    return f"<sub>{html.escape(text)}</sub>" if text else ""


def _plain(answer: str, reasoning: str, footer: str) -> str:
    pieces = []
    if reasoning.strip():
        pieces.append(f"[thinking: {_word_count(reasoning)} words, in .reasoning]")
    pieces.append(answer)
    if footer:
        pieces.append(f"— {footer}")
    return "\n\n".join(p for p in pieces if p)


def render_bundle(
    content: str, reasoning: str, fmt: AnswerFormat, footer: str, *, live: bool = False, parsed: Any = None
) -> Bundle:
    """The mimebundle of an answer (thinking apart and collapsed, the answer, a one-line footer).

    ``parsed`` is the JSON value for ``fmt == "json"`` (ignored while ``live``). Markdown is left for the frontend to
    render; ``text`` is shown as preformatted HTML so thinking can still be collapsed.
    """
    thinking = _thinking_html(reasoning, live=live) if reasoning.strip() else ""
    cursor = _CURSOR if live else ""
    if fmt == "text":
        body = f'<pre style="white-space: pre-wrap">{html.escape(content)}{cursor}</pre>'
        rich = "\n".join(p for p in (thinking, body, _sub(footer)) if p)
        return {"text/plain": _plain(content, reasoning, footer), "text/html": rich}
    if fmt == "code":
        if live:
            shown = close_open_fence(content + cursor)
            plain = content
        else:
            blocks = answer_code(content)
            shown = "\n\n".join(fenced(b.code, b.language) for b in blocks)
            plain = "\n\n".join(b.code for b in blocks)
    elif fmt == "json":
        if live or parsed is None:
            shown = fenced(content + cursor, "json")
            plain = content
        else:
            shown, plain = parsed_markdown(parsed, fenced)
    else:
        shown = close_open_fence(content + cursor)
        plain = content
    markdown = "\n\n".join(p for p in (thinking, shown, _sub(footer)) if p)
    return {"text/plain": _plain(plain, reasoning, footer), "text/markdown": markdown}


def render_answer(
    result: ChatResult,
    fmt: AnswerFormat,
    *,
    parsed: Any = None,
    note: str | None = None,
    approx_tokens: int = 0,
    fake_server: bool = False,
) -> Bundle:
    """The final (exact) render of a finished, stopped or failed answer.

    ``approx_tokens`` is the count shown (``≈N tokens``) when the server sent none, as for a stopped stream;
    ``fake_server`` ends the footer with "fake server".
    """
    footer = footer_text(result, note=note, approx_tokens=approx_tokens, fake_server=fake_server)
    bundle = render_bundle(result.content, result.reasoning, fmt, footer, parsed=parsed)
    if result.tool_events:  # the MCP tools LM Studio ran (native route): one collapsible block each, above
        blocks = [event_block(e) for e in result.tool_events]
        bundle["text/plain"] = f"{tool_blocks_text(blocks)}\n\n{bundle['text/plain']}"
        bundle["text/markdown"] = f"{tool_blocks_html(blocks)}\n\n{bundle['text/markdown']}"
    return bundle


@dataclass(frozen=True)
class RenderedChatResult(ChatResult):
    """A :class:`ChatResult` that knows how it was asked to be shown; what ``%%lm`` returns and ``-o`` stores.

    ``parsed`` is the JSON value when the format is ``json`` (the schema's object with ``--schema``); ``fake_server``
    is True when the answer came from the bundled fake LM Studio server (its footer says so); ``code`` holds the
    answer's code blocks.
    """

    display_format: AnswerFormat = "markdown"
    fake_server: bool = dataclasses.field(default=False, compare=False)

    @classmethod
    def of(
        cls, result: ChatResult, fmt: AnswerFormat, parsed: Any = None, *, fake_server: bool = False
    ) -> RenderedChatResult:
        values = {f.name: getattr(result, f.name) for f in dataclasses.fields(ChatResult)}
        if parsed is not None:
            values["parsed"] = parsed
        return cls(**values, display_format=fmt, fake_server=fake_server)

    @property
    def code(self) -> tuple[CodeBlock, ...]:
        """Every fenced code block of the answer, in order, each with its language.

        Under ``-f code`` an answer with no fence is one block (what the cell shows), so ``r.code[0].code`` is the
        code whatever the model wrote around it.
        """
        return answer_code(self.content) if self.display_format == "code" else code_blocks(self.content)

    def _repr_mimebundle_(self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> Bundle:
        return render_answer(self, self.display_format, parsed=self.parsed, fake_server=self.fake_server)


def finish_as(result: ChatResult, fmt: AnswerFormat, *, fake_server: bool = False) -> RenderedChatResult:
    """Attach the format (and, for JSON, the parsed value). Raises :class:`AnswerFormatError` for invalid JSON.

    ``fake_server``: the answer came from the bundled fake LM Studio server (its footer says so).
    """
    if fmt != "json" or result.parsed is not None:  # parsed already: the answer followed a schema=
        return RenderedChatResult.of(result, fmt, fake_server=fake_server)
    try:
        parsed = parse_json_answer(result.content)
    except ValueError as exc:
        kept = RenderedChatResult.of(result, "text", fake_server=fake_server)
        raise AnswerFormatError(
            f"The answer is not valid JSON ({exc}). The raw text is shown above and kept in the result's .content.",
            kept, validation_error=str(exc),
        ) from exc
    return RenderedChatResult.of(result, fmt, parsed, fake_server=fake_server)
