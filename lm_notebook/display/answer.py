"""A chat answer in a notebook cell: streamed live (throttled), then rendered exactly once it is complete.

How a streamed cell looks on the wire (the order matters for nbval, which ignores ``update_display_data``)::

    display_data          PLACEHOLDER (an empty text/plain), with a display_id
    update_display_data   live views of the answer, at most ``1 / interval`` a second, from one repaint thread
    update_display_data   PLACEHOLDER again: the live output empties itself
    execute_result        the final render (or display_data for a stopped / failed answer)

So a saved notebook holds ``[PLACEHOLDER, final]`` and nbval, which only sees the first and the last message,
collects the same ``[PLACEHOLDER, final]``. Where a frontend cannot update displays (terminal IPython), text is
written to ``sys.stdout`` as it arrives instead.

>>> bundle = render_answer(ChatResult("**Hi**", model="m"), "markdown")    # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import dataclasses
import html
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from lm_notebook.client.stream import ChatStream, StreamPart
from lm_notebook.client.types import ChatResult, ModelInfo

AnswerFormat = Literal["markdown", "text", "code", "json"]
FORMATS: tuple[AnswerFormat, ...] = ("markdown", "text", "code", "json")

Bundle = dict[str, Any]

# The live output's first and last content. Empty text/plain renders as nothing in JupyterLab, Notebook 7 and
# VS Code; it must be the same object at both ends so the saved notebook and nbval agree.
PLACEHOLDER: Bundle = {"text/plain": ""}

DEFAULT_INTERVAL = 0.1  # seconds between repaints: ≤ 10 display messages a second, whatever the token rate

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


# --- pure rendering -------------------------------------------------------------------------------------------


def footer_text(result: ChatResult, *, note: str | None = None) -> str:
    """One line: model, tokens, time to first token, tokens/s, and how it ended when that was not a normal stop."""
    parts: list[str] = []
    if result.model:
        parts.append(result.model)
    tokens = result.completion_tokens
    if tokens is not None:
        parts.append(f"{tokens} token{'s' if tokens != 1 else ''}")
    t = result.timings
    if t.time_to_first_token is not None:
        parts.append(f"first token {t.time_to_first_token:.2f} s")
    if t.tokens_per_second is not None:
        parts.append(f"{t.tokens_per_second:.1f} tok/s")
    elif t.total is not None:
        parts.append(f"{t.total:.2f} s")
    why = note if note is not None else result.finish_note
    if why:
        parts.append(why)
    return " · ".join(parts)


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


# --- live views -----------------------------------------------------------------------------------------------


class StreamView(Protocol):
    """Where a streamed answer goes while it arrives."""

    def start(self) -> None: ...

    def add(self, part: StreamPart) -> None: ...

    def stop(self) -> None:
        """No more parts: end live updates (called on success, error and interrupt alike)."""

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        """Show a stopped or failed answer (a finished one is the cell's value instead)."""


def live_updates_supported(shell: Any) -> bool:
    """True in a Jupyter kernel (JupyterLab, Notebook, VS Code): the frontend can update a display in place."""
    return getattr(shell, "kernel", None) is not None


def _display(bundle: Bundle, **kwargs: Any) -> None:
    from IPython.display import display

    display(bundle, raw=True, **kwargs)  # type: ignore[no-untyped-call]


class NotebookStreamView:
    """Live, throttled output of one answer in a notebook cell.

    The reading loop only appends text (cheap at any token rate); one thread repaints at most every ``interval``
    seconds and only when something changed, so a fast model costs the kernel almost nothing and a stall still shows
    the last tokens.
    """

    def __init__(self, fmt: AnswerFormat, model: str | None, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.fmt = fmt
        self.model = model or ""
        self.interval = interval
        self.display_id = uuid.uuid4().hex
        self.repaints = 0
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tokens = 0
        self._dirty = False
        self._stopped = threading.Event()
        self._first_token = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one publisher at a time (repaint thread vs. stop())

    def start(self) -> None:
        _display(PLACEHOLDER, display_id=self.display_id)
        self._update(self._live_bundle(waiting=True))
        # the copied context carries the kernel's parent header, so repaints land in this cell
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._repaint_loop,), daemon=True)
        self._thread.start()

    def add(self, part: StreamPart) -> None:
        if part.kind == "content":
            self._content.append(part.text)
        elif part.kind == "reasoning":
            self._reasoning.append(part.text)
        else:
            return
        self._tokens += 1
        self._dirty = True
        if self._tokens == 1:
            self._first_token.set()

    def stop(self) -> None:
        self._stopped.set()
        self._first_token.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        with self._lock:
            self._update(PLACEHOLDER)

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        _display(render_answer(result, fmt, parsed=parsed, note=note))

    def _repaint_loop(self) -> None:
        # the first token is painted at once (time to first token is what a user feels), then at most one repaint
        # per interval, and only when something arrived
        self._first_token.wait()
        while not self._stopped.is_set():
            if self._dirty:
                with self._lock:
                    if self._stopped.is_set():
                        return
                    self._dirty = False
                    self._update(self._live_bundle())
            if self._stopped.wait(self.interval):
                return

    def _live_bundle(self, *, waiting: bool = False) -> Bundle:
        content = "".join(self._content)
        reasoning = "".join(self._reasoning)
        status = "waiting for the first token…" if waiting else f"{self._tokens} tokens · streaming…"
        footer = f"{self.model} · {status}" if self.model else status
        return render_bundle(content, reasoning, self.fmt, footer, live=True)

    def _update(self, bundle: Bundle) -> None:
        self.repaints += 1
        _display(bundle, display_id=self.display_id, update=True)


class TerminalStreamView:
    """Terminal IPython: write answer text to ``sys.stdout`` as it comes (thinking dimmed, apart)."""

    def __init__(self, fmt: AnswerFormat, model: str | None) -> None:
        self.fmt = fmt
        self.model = model
        self.wrote_answer = False
        self._in_thinking = False
        self._tty = bool(getattr(sys.stdout, "isatty", lambda: False)())

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def start(self) -> None:
        pass

    def add(self, part: StreamPart) -> None:
        if part.kind == "reasoning":
            if not self._in_thinking:
                self._in_thinking = True
                self._write("\x1b[2m[thinking] " if self._tty else "[thinking] ")
            self._write(part.text)
            return
        if part.kind != "content":
            return
        if self._in_thinking:
            self._in_thinking = False
            self._write("\x1b[0m\n\n" if self._tty else "\n\n")
        self.wrote_answer = True
        self._write(part.text)

    def stop(self) -> None:
        if self._in_thinking:
            self._in_thinking = False
            self._write("\x1b[0m\n" if self._tty else "\n")

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        """Text already written stays; add what is missing and the footer."""
        if not self.wrote_answer:
            bundle = render_answer(result, fmt, parsed=parsed, note=note)
            self._write(cast(str, bundle["text/plain"]) + "\n")
            return
        footer = footer_text(result, note=note)
        self._write(f"\n\n— {footer}\n" if footer else "\n")


def make_view(shell: Any, fmt: AnswerFormat, model: str | None, *, interval: float = DEFAULT_INTERVAL) -> StreamView:
    if live_updates_supported(shell):
        return NotebookStreamView(fmt, model, interval=interval)
    return TerminalStreamView(fmt, model)


def stream_into(stream: ChatStream, view: StreamView) -> ChatResult:
    """Feed every part of ``stream`` to ``view``; return the result.

    On any exception (``KeyboardInterrupt`` included) the stream is closed and live updates end before it
    propagates; ``stream.result()`` then gives what arrived, marked ``stopped``.
    """
    view.start()
    try:
        for part in stream.iter_parts():
            view.add(part)
    except BaseException:
        stream.close()
        view.stop()
        raise
    view.stop()
    return stream.result()


def show_bundle(bundle: Bundle) -> None:
    """Display a ready mimebundle as one output."""
    _display(bundle)


# --- model table ----------------------------------------------------------------------------------------------

_MODEL_COLUMNS = ("", "id", "type", "state", "format", "quantization", "arch", "context")


def _context_cell(model: ModelInfo) -> str:
    if model.loaded_context_length and model.max_context_length and model.loaded and (
        model.loaded_context_length != model.max_context_length
    ):
        return f"{model.loaded_context_length} of {model.max_context_length}"
    value = model.context_length
    return str(value) if value else "—"


def model_table(models: list[ModelInfo], *, current: str | None, base_url: str) -> Bundle:
    """What ``%lm_models`` shows: one row per model, the current one marked ``▶``."""
    if not models:
        text = (
            f"LM Studio at {base_url} has no models. Download one in LM Studio's Discover tab or with "
            "`lms get <model>`, then load it in the Developer tab or with `lms load <model>`."
        )
        return {"text/plain": text, "text/html": f"<p>{html.escape(text)}</p>"}
    rows = [
        (
            "▶" if current is not None and (m.id == current or current in m.instance_ids) else "",
            m.id,
            m.type or "—",
            m.state or "—",
            m.format or "—",
            m.quantization or "—",
            m.arch or "—",
            _context_cell(m),
        )
        for m in models
    ]
    widths = [max(len(str(r[i])) for r in [_MODEL_COLUMNS, *rows]) for i in range(len(_MODEL_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [_MODEL_COLUMNS, *rows]]
    note = f"{len(models)} model{'s' if len(models) != 1 else ''} at {base_url}"
    if current is None:
        note += " · no current model: choose one with %lm_use MODEL"
    plain = "\n".join([*lines, note])
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in _MODEL_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align:left'>{'<b>' + html.escape(c) + '</b>' if r[0] and i == 1 else html.escape(c)}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    rich = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p><sub>{html.escape(note)}</sub></p>"
    return {"text/plain": plain, "text/html": rich}
