"""An answer as a mimebundle: pure functions of the text, the thinking, the format and the footer; no IPython.

What ``%%lm`` shows and returns: :func:`render_bundle` (live and final), :func:`render_answer` (final), and
:class:`RenderedChatResult`, the :class:`ChatResult` that knows its format (what ``%%lm`` returns and ``-o`` stores).
How it streams into a cell is :mod:`lm_notebook.display.answer`.

>>> bundle = render_answer(ChatResult("**Hi**", model="m"), "markdown")    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lm_notebook.client.types import ChatResult
from lm_notebook.display.footer import footer_text

AnswerFormat = Literal["markdown", "text", "code", "json"]
FORMATS: tuple[AnswerFormat, ...] = ("markdown", "text", "code", "json")

Bundle = dict[str, Any]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)
_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.DOTALL | re.M)
_CURSOR = "▌"


class AnswerFormatError(ValueError):
    """The answer could not be shown in the requested format (e.g. ``-f json`` and the reply is not JSON).

    ``result`` keeps the raw answer.
    """

    def __init__(self, message: str, result: RenderedChatResult) -> None:
        super().__init__(message)
        self.message = message
        self.result = result


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


def split_code(text: str) -> tuple[str, str]:
    """``(language, code)`` of an answer: the first fenced block when there is one, else the whole text."""
    found = _FENCED_BLOCK.search(text)
    if found:
        return found.group(2), found.group(3).rstrip("\n")
    return "", text.strip("\n")


def fenced(code: str, language: str = "") -> str:
    """A Markdown code block whose fence is longer than any backtick run inside ``code``."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


def parse_json_answer(text: str) -> Any:
    """The JSON value of an answer; a surrounding ```json fence is allowed. Raises ``ValueError``."""
    candidate = text.strip()
    found = _FENCED_BLOCK.search(candidate)
    if found and not candidate.startswith(("{", "[")):
        candidate = found.group(3)
    return json.loads(candidate)


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
            language, code = split_code(content)
            shown = fenced(code, language)
            plain = code
    elif fmt == "json":
        if live or parsed is None:
            shown = fenced(content + cursor, "json")
            plain = content
        else:
            plain = json.dumps(parsed, indent=2, ensure_ascii=False)
            shown = fenced(plain, "json")
    else:
        shown = close_open_fence(content + cursor)
        plain = content
    markdown = "\n\n".join(p for p in (thinking, shown, _sub(footer)) if p)
    return {"text/plain": _plain(plain, reasoning, footer), "text/markdown": markdown}


def render_answer(result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> Bundle:
    """The final (exact) render of a finished, stopped or failed answer."""
    return render_bundle(result.content, result.reasoning, fmt, footer_text(result, note=note), parsed=parsed)


@dataclass(frozen=True)
class RenderedChatResult(ChatResult):
    """A :class:`ChatResult` that knows how it was asked to be shown; what ``%%lm`` returns and ``-o`` stores.

    ``parsed`` is the JSON value when the format is ``json``.
    """

    display_format: AnswerFormat = "markdown"
    parsed: Any = dataclasses.field(default=None, compare=False)

    @classmethod
    def of(cls, result: ChatResult, fmt: AnswerFormat, parsed: Any = None) -> RenderedChatResult:
        values = {f.name: getattr(result, f.name) for f in dataclasses.fields(ChatResult)}
        return cls(**values, display_format=fmt, parsed=parsed)

    def _repr_mimebundle_(self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> Bundle:
        return render_answer(self, self.display_format, parsed=self.parsed)


def finish_as(result: ChatResult, fmt: AnswerFormat) -> RenderedChatResult:
    """Attach the format (and, for JSON, the parsed value). Raises :class:`AnswerFormatError` for invalid JSON."""
    if fmt != "json":
        return RenderedChatResult.of(result, fmt)
    try:
        parsed = parse_json_answer(result.content)
    except ValueError as exc:
        kept = RenderedChatResult.of(result, "text")
        raise AnswerFormatError(
            f"The answer is not valid JSON ({exc}). The raw text is shown above and kept in the result's .content.",
            kept,
        ) from exc
    return RenderedChatResult.of(result, fmt, parsed)
