"""The chat panel's widgets: one view per message, Markdown that grows cheaply, the style sheet and the Enter key.

Nothing here talks to LM Studio; :mod:`lm_notebook.chat.panel` drives these views from the callbacks of an answer's
generation. An answer's footer says the facts of :mod:`lm_notebook.display.footer`, as a notebook cell's does.

Growing Markdown (:class:`LiveMarkdown`) is shown as a column of HTML widgets: finished blocks are rendered once and
frozen into their own widget, and each repaint re-renders and re-sends only the unfinished tail. So a repaint costs the
same at token 50 and at token 5,000. When the answer ends, it is rendered once more as a whole.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from lm_notebook.client.errors import error_text
from lm_notebook.client.types import ChatResult, SentImage
from lm_notebook.display.footer import facts_html, footer_facts, live_facts
from lm_notebook.display.markdown import render_markdown, stable_prefix_length
from lm_notebook.display.thumbnails import thumbnail_html

# The input's Enter key: ipywidgets' Textarea cannot tell Enter from Shift+Enter, so a tiny key handler (installed once
# per page, from an HTML widget of the panel: no extension needed) turns a plain Enter into this mark at the end of the
# text and syncs it like any keystroke. The kernel sees the mark in the Textarea's own value, so the text and the
# "send" arrive in one message, in order (ipywidgets may hold back a model's update while an earlier one is in flight,
# so a click on another widget can overtake the last keystrokes; the Send button is routed the same way for that
# reason). Shift+Enter keeps its usual newline. Without the handler (no JavaScript), the Send button still works.
SUBMIT_MARK = "\u2063"  # INVISIBLE SEPARATOR

_ENTER_JS = (
    "(function(){if(window.__lmnbEnterKey)return;window.__lmnbEnterKey=true;"
    "function submit(t){t.value=t.value+'\\u2063';t.dispatchEvent(new Event('input',{bubbles:true}));}"
    "document.addEventListener('keydown',function(e){"
    "if(e.key!=='Enter'||e.shiftKey||e.ctrlKey||e.altKey||e.metaKey||e.isComposing||e.keyCode===229)return;"
    "var t=e.target;if(!t||t.tagName!=='TEXTAREA'||!t.closest||!t.closest('.lmnb-input'))return;"
    "e.preventDefault();submit(t);},true);"
    # Send goes the same way, so the text typed just before the click cannot arrive after it
    "document.addEventListener('click',function(e){"
    "var b=e.target&&e.target.closest?e.target.closest('.lmnb-send'):null;if(!b||b.disabled)return;"
    "var c=b.closest('.lmnb-chat');var t=c?c.querySelector('.lmnb-input textarea'):null;if(!t)return;"
    "e.preventDefault();e.stopPropagation();submit(t);},true);"
    "})();"
)

PANEL_CSS = """
.lmnb-chat { border: 1px solid var(--jp-border-color1, #ccc); border-radius: 6px; padding: 6px 8px;
  max-width: 980px; box-sizing: border-box; }
.lmnb-chat .widget-html, .lmnb-chat .widget-html-content { height: auto; }
.lmnb-scroll > *, .lmnb-messages > *, .lmnb-msg > *, .lmnb-md > * { flex-shrink: 0 !important; }
.lmnb-messages, .lmnb-msg { overflow: visible !important; }
.lmnb-chat .lmnb-md .widget-html-content, .lmnb-chat .lmnb-line .widget-html-content {
  line-height: 1.5; white-space: normal; font-size: var(--jp-content-font-size1, 14px); overflow-wrap: anywhere; }
.lmnb-scroll { display: flex !important; flex-direction: column-reverse !important; overflow-y: auto !important;
  max-height: 480px; min-height: 60px; border-top: 1px solid var(--jp-border-color2, #e0e0e0);
  border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); margin: 4px 0; }
.lmnb-msg { padding: 4px 8px; margin: 3px 0; border-radius: 6px; }
.lmnb-user { background: var(--jp-layout-color2, #f2f2f2); }
.lmnb-role { font-weight: 600; font-size: 85%; color: var(--jp-ui-font-color2, #666); }
.lmnb-md p { margin: 0.25em 0; }
.lmnb-md h1, .lmnb-md h2, .lmnb-md h3, .lmnb-md h4 { margin: 0.5em 0 0.25em; line-height: 1.25; }
.lmnb-md pre { background: var(--jp-cell-editor-background, #f7f7f7); border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 4px; padding: 6px 8px; margin: 0.4em 0; overflow-x: auto; white-space: pre; line-height: 1.4; }
.lmnb-md code { font-family: var(--jp-code-font-family, monospace); font-size: 90%;
  background: var(--jp-layout-color2, #f0f0f0); border-radius: 3px; padding: 0 3px; }
.lmnb-md pre code { background: none; padding: 0; font-size: 88%; }
.lmnb-lang { float: right; font-size: 75%; color: var(--jp-ui-font-color3, #999); }
.lmnb-md table { border-collapse: collapse; margin: 0.4em 0; }
.lmnb-md th, .lmnb-md td { border: 1px solid var(--jp-border-color2, #ddd); padding: 2px 8px; }
.lmnb-md blockquote { border-left: 3px solid var(--jp-border-color1, #ccc); margin: 0.3em 0; padding-left: 8px;
  color: var(--jp-ui-font-color2, #555); }
.lmnb-md ul, .lmnb-md ol { margin: 0.25em 0; padding-left: 1.6em; }
.lmnb-think .lmnb-md .widget-html-content { color: var(--jp-ui-font-color2, #666); font-size: 90%; }
.lmnb-footer { font-size: 80%; color: var(--jp-ui-font-color2, #777); }
.lmnb-fact-ending { color: #b35c00; font-weight: 600; }
.lmnb-error-box { background: #fdecea; color: #611a15; border-left: 4px solid #d32f2f; border-radius: 4px;
  padding: 6px 8px; margin: 4px 0; white-space: pre-wrap; }
.lmnb-status { font-size: 85%; color: var(--jp-ui-font-color2, #666); }
.lmnb-notice { color: #8a5a00; }
.lmnb-input textarea { font-family: inherit; font-size: var(--jp-content-font-size1, 14px); }
"""


def page_hook() -> Any:
    """An invisible HTML widget carrying the panel's style sheet and the Enter-key handler."""
    script = html.escape(_ENTER_JS, quote=True)
    value = f'<style>{PANEL_CSS}</style><img src="data:," alt="" style="display:none" onerror="{script}">'
    return widgets.HTML(value=value, layout=widgets.Layout(height="0px", margin="0", overflow="hidden"))


def close_tree(widget: Any) -> None:
    """Close a widget, its children and its layout/style models (each holds a comm)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in ("layout", "style"):
        sub = getattr(widget, part, None)
        if isinstance(sub, widgets.Widget):
            sub.close()
    widget.close()


class LiveMarkdown:
    """A growing Markdown text as a column of HTML widgets (finished blocks frozen, the tail re-rendered)."""

    def __init__(self, *, freeze_at: int = 1500) -> None:
        self.freeze_at = freeze_at
        self._tail = widgets.HTML(value="")
        self._frozen: list[Any] = []
        self._frozen_text = ""
        self._shown = ""
        self.box = widgets.VBox([self._tail], layout=widgets.Layout(width="100%"))
        self.box.add_class("lmnb-md")
        self.repaints = 0  # tail renders sent, for tests and curiosity

    @property
    def frozen_blocks(self) -> int:
        return len(self._frozen)

    def set_text(self, text: str) -> None:
        """Show ``text`` (the whole text so far; it only grows while streaming)."""
        if not text.startswith(self._frozen_text):
            self._reset()
        tail = text[len(self._frozen_text) :]
        if len(tail) > self.freeze_at:
            cut = stable_prefix_length(tail)
            if cut:
                frozen = widgets.HTML(value=render_markdown(tail[:cut]))
                self._frozen.append(frozen)
                self._frozen_text += tail[:cut]
                tail = tail[cut:]
                self.box.children = (*self._frozen, self._tail)
        if tail != self._shown:
            self._shown = tail
            self._tail.value = render_markdown(tail)
            self.repaints += 1

    def finish(self, text: str) -> None:
        """Show the final text, rendered as one piece."""
        if self._frozen:
            self._reset()
        self._shown = text
        self._tail.value = render_markdown(text)

    def _reset(self) -> None:
        old = self._frozen
        self._frozen, self._frozen_text, self._shown = [], "", ""
        self.box.children = (self._tail,)
        for w in old:
            close_tree(w)


def _line(html_value: str, css_class: str) -> Any:
    w = widgets.HTML(value=html_value)
    w.add_class("lmnb-line")
    w.add_class(css_class)
    return w


class UserMessageView:
    """A user's message: a label, its text (rendered once) and the thumbnails of its images."""

    def __init__(self, text: str, images: Sequence[SentImage] = ()) -> None:
        self.body = widgets.HTML(value=render_markdown(text))
        self.body.add_class("lmnb-md")
        parts = [_line('<span class="lmnb-role">You</span>', "lmnb-head"), self.body]
        if images:  # the thumbnails under the text, as sent
            self.images = widgets.HTML(value=thumbnail_html(images, height=96))
            parts.append(self.images)
        self.box = widgets.VBox(parts)
        self.box.add_class("lmnb-msg")
        self.box.add_class("lmnb-user")


class AssistantMessageView:
    """An answer: a label, thinking (collapsed, shown once some arrives), the text, and a footer."""

    def __init__(self, model: str) -> None:
        self.content = LiveMarkdown()
        self.content.box.add_class("lmnb-answer")
        self.footer = _line('<span class="lmnb-footer">…</span>', "lmnb-footer-line")
        head = _line(f'<span class="lmnb-role">{html.escape(model)}</span>', "lmnb-head")
        self._thinking: LiveMarkdown | None = None
        self.thinking_box: Any = None
        self.tools_box: Any = None  # the tool-call blocks, above the text, once the model calls a tool
        self.box = widgets.VBox([head, self.content.box, self.footer])
        self.box.add_class("lmnb-msg")
        self.box.add_class("lmnb-assistant")

    def show(self, content: str, reasoning: str, footer_html: str) -> None:
        """A repaint while the answer streams."""
        if reasoning:
            self._thinking_view().set_text(reasoning)
            if content and self.thinking_box.get_title(0) != "Thinking":
                self.thinking_box.set_title(0, "Thinking")
        self.content.set_text(content)
        self.footer.value = footer_html

    def finish(self, content: str, reasoning: str, footer_html: str) -> None:
        if reasoning:
            self._thinking_view().finish(reasoning)
            self.thinking_box.set_title(0, "Thinking")
        self.content.finish(content)
        self.footer.value = footer_html

    def show_tools(self, blocks_html: str) -> None:
        """The answer's tool calls (collapsible blocks, :mod:`~lm_notebook.display.tool_blocks`), above its text."""
        if not blocks_html:
            return
        if self.tools_box is None:
            self.tools_box = widgets.HTML(blocks_html)
            self.tools_box.add_class("lmnb-tools")
            self.box.children = (*self.box.children[:-2], self.tools_box, *self.box.children[-2:])
        elif self.tools_box.value != blocks_html:
            self.tools_box.value = blocks_html

    def _thinking_view(self) -> LiveMarkdown:
        if self._thinking is None:
            self._thinking = LiveMarkdown()
            # an Accordion keeps its open/closed state on the model, so repaints do not fold it back
            self.thinking_box = widgets.Accordion(children=[self._thinking.box], selected_index=None)
            self.thinking_box.set_title(0, "Thinking…")
            self.thinking_box.add_class("lmnb-think")
            head, *rest = self.box.children
            self.box.children = (head, self.thinking_box, *rest)
        return self._thinking


def footer_html(result: ChatResult | None, *, approx_tokens: int, error: BaseException | None = None) -> str:
    """An answer's footer: the facts the notebook cell's footer says too (less the model, which the answer's heading
    names; plus the finish reason), and the error box when the answer failed."""
    facts = [] if result is None else footer_facts(result, approx_tokens=approx_tokens, with_model=False,
                                                  with_finish=True)
    out = f'<span class="lmnb-footer">{facts_html(facts)}</span>' if facts else ""
    if result is not None and error is None and not result.stopped and _empty(result):
        # LM Studio answers some context overflows with a well-formed stream that carries no text at all
        model = html.escape(result.model or "MODEL")
        out = (
            f'<div class="lmnb-error-box">⚠ {model} sent an empty answer. The conversation may no longer fit its '
            "context length: start over with Clear, shorten the system prompt, or reload the model with a larger "
            f"context (<code>lms load {model} --context-length N</code>, N above the context it has now).</div>" + out
        )
    if error is not None:
        out = f'<div class="lmnb-error-box">⚠ {html.escape(error_text(error))}</div>' + out
    return out


def live_footer_html(parts: int) -> str:
    """The footer of an answer still streaming (``parts``: text parts so far)."""
    return f'<span class="lmnb-footer">{facts_html(live_facts(None, parts))}</span>'


def _empty(result: ChatResult) -> bool:
    return not result.content and not result.reasoning and not result.tool_calls
