"""The panel's Markdown renderer: safe against model text, faithful to how models write, and cut-safe when frozen."""

from __future__ import annotations

import re

import pytest

ALLOWED_TAG = re.compile(
    r"</?(?:p|br|strong|em|del|code|pre|span|h[1-6]|hr|blockquote|ul|ol|li|table|thead|tbody|tr|th|td|a)"
    r"(?:\s+(?:class|href|target|rel|start|style)=\"[^\"<>]*\")*>"
)


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "[click](javascript:alert(1))",
        '[x](http://a.b/"onmouseover="alert(1))',
        "`<b>` **<i>x</i>** _<u>_",
        "```html\n<script>bad()</script>\n```",
        "| <b> | c |\n|---|---|\n| <img src=x> | `<x>` |",
        "> <iframe src=//evil>\n- <svg onload=x>\n1. <a href=x>",
        "http://example.org/<script> and https://ok.example/path?a=1&b=2",
    ],
)
def test_model_text_can_never_inject_markup(text: str) -> None:
    from lm_notebook.display.markdown import render_markdown

    rendered = render_markdown(text)
    leftover = ALLOWED_TAG.sub("", rendered)
    assert "<" not in leftover and ">" not in leftover, rendered
    assert "javascript:" not in rendered


def test_markdown_as_models_write_it() -> None:
    from lm_notebook.display.markdown import render_markdown

    out = render_markdown(
        "# Title\n\nText with `code`, **bold**, *it* and [a link](https://lmstudio.ai).\n\n"
        "```python\nprint('hi')\n```\n\n3. three\n4. four\n   - nested\n\n| a | b |\n|--:|:-:|\n| 1 | 2 |\n\n> quoted"
    )
    assert "<h1>Title</h1>" in out and "<code>code</code>" in out and "<strong>bold</strong>" in out
    assert '<a href="https://lmstudio.ai" target="_blank" rel="noopener noreferrer">a link</a>' in out
    code = "<code class=\"language-python\">print(&#x27;hi&#x27;)</code></pre>"
    assert '<pre><span class="lmnb-lang">python</span>' + code in out
    assert '<ol start="3"><li>three</li><li>four<ul><li>nested</li></ul></li></ol>' in out
    assert '<th style="text-align:right">a</th><th style="text-align:center">b</th>' in out
    assert "<blockquote><p>quoted</p></blockquote>" in out
    # half-written text, as it streams: an open fence is already code
    assert render_markdown("```js\nlet x = 1").startswith('<pre><span class="lmnb-lang">js</span><code')


def test_the_frozen_prefix_never_cuts_a_code_block() -> None:
    from lm_notebook.display.markdown import render_markdown, stable_prefix_length

    text = "Intro.\n\n```python\na = 1\n\nb = 2\n```\n\nMiddle.\n\n- item\n\nEnd is still grow"
    for end in range(len(text) + 1):
        head = text[:end]
        cut = stable_prefix_length(head)
        assert head[:cut].count("```") % 2 == 0, (end, cut)
        assert cut == 0 or head[cut - 2 : cut] == "\n\n"
    cut = stable_prefix_length(text)
    assert text[cut:] == "- item\n\nEnd is still grow"  # the last line may still be growing: never frozen
    assert render_markdown(text[:cut]) + render_markdown(text[cut:]) == render_markdown(text)
