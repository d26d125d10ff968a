"""Markdown → HTML for the chat panel: small, safe, and happy with half-written text.

Every character of the input is HTML-escaped; the only markup in the output is what this module writes (links are
kept only for ``http``, ``https`` and ``mailto``). It covers what chat models write: paragraphs, headings, fenced code
(an unclosed fence renders as code, so a streaming answer looks right), lists (nested, ordered with their start
number), block quotes, tables, rules, and inline code, bold, italic, strike-through and links.

>>> render_markdown("**Hi** `x<y`")
'<p><strong>Hi</strong> <code>x&lt;y</code></p>'

:func:`stable_prefix_length` tells how much of a growing text can be rendered once and frozen (see ``chat.py``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}> ?")
_ITEM = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*)|[ \t]*$)")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")

_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*((?:[^()\s]|\([^()\s]*\))+)(?:\s+&quot;[^)]*&quot;)?\s*\)")
_AUTOLINK = re.compile(r"(?<![\w/\"'=])(https?://[^\s<>()\"']*[^\s<>()\"'.,;:!?])")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__(?!\w)", re.S)
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])|(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])", re.S)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S)
_SAFE_URL = re.compile(r"^(?:https?://|mailto:)", re.I)
_HOLD = "\x00{}\x00"
_HELD = re.compile("\x00(\\d+)\x00")


def render_markdown(text: str) -> str:
    """The HTML for ``text`` (Markdown as chat models write it)."""
    return "".join(_blocks(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")))


def render_inline(text: str) -> str:
    """HTML for one line or paragraph of inline Markdown (escaped)."""
    held: list[str] = []

    def hold(fragment: str) -> str:
        held.append(fragment)
        return _HOLD.format(len(held) - 1)

    text = text.replace("\x00", "")
    text = _CODE_SPAN.sub(lambda m: hold(f"<code>{html.escape(m.group(2).strip() or m.group(2))}</code>"), text)
    text = html.escape(text, quote=True)

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), html.unescape(m.group(2))
        if not _SAFE_URL.match(url):
            return label
        return hold(f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">{label}</a>')

    text = _LINK.sub(link, text)
    text = _AUTOLINK.sub(lambda m: hold(_anchor(html.unescape(m.group(1)))), text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    text = _STRIKE.sub(r"<del>\1</del>", text)
    while "\x00" in text:  # held fragments may hold others (a link label with code)
        text = _HELD.sub(lambda m: held[int(m.group(1))], text)
    return text


def _anchor(url: str) -> str:
    safe = html.escape(url, quote=True)
    return f'<a href="{safe}" target="_blank" rel="noopener noreferrer">{safe}</a>'


def stable_prefix_length(text: str) -> int:
    """How many leading characters of a growing ``text`` form finished blocks.

    The cut is just before a line that starts a new block after a blank line, outside any code fence; rendering
    ``text[:n]`` and ``text[n:]`` separately then gives the same page (lists split there keep their numbering).
    0 when there is no such place yet.
    """
    cut = 0
    fence: str | None = None
    blank_before = False
    pos = 0
    for line in text.split("\n")[:-1]:  # the last line may still be growing
        start = pos
        pos += len(line) + 1
        if fence is not None:
            if _closes(line, fence):
                fence = None
            blank_before = False
            continue
        opened = _FENCE.match(line)
        if blank_before and line.strip() and not line[:1].isspace():
            cut = start
        if opened:
            fence = opened.group(1)
        blank_before = not line.strip()
    return cut


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]} and len(line) - len(line.lstrip(" ")) < 4


def _blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        for parse in _BLOCK_PARSERS:
            taken = parse(lines, i, out)
            if taken:
                i += taken
                break
        else:
            i += _paragraph(lines, i, out)
    return out


def _fence(lines: list[str], i: int, out: list[str]) -> int:
    opened = _FENCE.match(lines[i])
    if not opened:
        return 0
    fence, lang = opened.group(1), opened.group(2)
    indent = len(lines[i]) - len(lines[i].lstrip(" "))
    body: list[str] = []
    j = i + 1
    while j < len(lines) and not _closes(lines[j], fence):
        line = lines[j]
        body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
        j += 1
    cls = f' class="language-{html.escape(lang, quote=True)}"' if lang else ""
    label = f'<span class="lmnb-lang">{html.escape(lang)}</span>' if lang else ""
    out.append(f"<pre>{label}<code{cls}>{html.escape(chr(10).join(body))}</code></pre>")
    return min(j + 1, len(lines)) - i


def _heading(lines: list[str], i: int, out: list[str]) -> int:
    found = _HEADING.match(lines[i])
    if not found:
        return 0
    level = len(found.group(1))
    out.append(f"<h{level}>{render_inline(found.group(2))}</h{level}>")
    return 1


def _rule(lines: list[str], i: int, out: list[str]) -> int:
    if not _RULE.match(lines[i]):
        return 0
    out.append("<hr>")
    return 1


def _quote(lines: list[str], i: int, out: list[str]) -> int:
    if not _QUOTE.match(lines[i]):
        return 0
    j = i
    inner: list[str] = []
    while j < len(lines) and _QUOTE.match(lines[j]):
        inner.append(_QUOTE.sub("", lines[j], count=1))
        j += 1
    out.append(f"<blockquote>{''.join(_blocks(inner))}</blockquote>")
    return j - i


def _table(lines: list[str], i: int, out: list[str]) -> int:
    if "|" not in lines[i] or i + 1 >= len(lines) or not _TABLE_RULE.match(lines[i + 1]):
        return 0
    header = _cells(lines[i])
    aligns = [_align(c) for c in _cells(lines[i + 1])]
    j = i + 2
    rows: list[list[str]] = []
    while j < len(lines) and "|" in lines[j] and lines[j].strip():
        rows.append(_cells(lines[j]))
        j += 1

    def row(cells: list[str], tag: str) -> str:
        tds = []
        for k in range(len(header)):
            style = f' style="text-align:{aligns[k]}"' if k < len(aligns) and aligns[k] else ""
            cell = cells[k] if k < len(cells) else ""
            tds.append(f"<{tag}{style}>{render_inline(cell)}</{tag}>")
        return f"<tr>{''.join(tds)}</tr>"

    body = "".join(row(r, "td") for r in rows)
    out.append(f"<table><thead>{row(header, 'th')}</thead><tbody>{body}</tbody></table>")
    return j - i


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _align(rule: str) -> str:
    left, right = rule.startswith(":"), rule.endswith(":")
    return "center" if left and right else "right" if right else "left" if left else ""


def _list(lines: list[str], i: int, out: list[str]) -> int:
    first = _ITEM.match(lines[i])
    if not first:
        return 0
    base = len(first.group(1).expandtabs(4))
    ordered = first.group(2)[0].isdigit()
    items: list[list[str]] = []
    j = i
    loose = False
    while j < len(lines):
        line = lines[j]
        item = _ITEM.match(line)
        indent = len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())
        if item and indent == base and item.group(2)[0].isdigit() == ordered:
            items.append([item.group(3) or ""])
            j += 1
            continue
        if not line.strip():
            # a blank line continues the list only when more of it follows
            k = j
            while k < len(lines) and not lines[k].strip():
                k += 1
            if k < len(lines):
                nxt = lines[k]
                nxt_item = _ITEM.match(nxt)
                nxt_indent = len(nxt.expandtabs(4)) - len(nxt.expandtabs(4).lstrip())
                if nxt_indent > base or (nxt_item and nxt_indent == base and nxt_item.group(2)[0].isdigit() == ordered):
                    items[-1].extend([""] * (k - j))
                    loose = loose or nxt_indent == base
                    j = k
                    continue
            break
        if indent > base or not _starts_block(line):
            # a deeper line belongs to the item; an unindented one is a lazy continuation of its paragraph
            items[-1].append(line.expandtabs(4)[min(indent, base + 2) :] if indent > base else line)
            j += 1
            continue
        break
    tag = "ol" if ordered else "ul"
    start = ""
    if ordered:
        number = int(re.sub(r"\D", "", first.group(2)))
        start = f' start="{number}"' if number != 1 else ""
    rendered = []
    for body in items:
        inner = "".join(_blocks(_dedent(body)))
        if not loose and inner.startswith("<p>"):
            inner = _unwrap_first_paragraph(inner)
        rendered.append(f"<li>{inner}</li>")
    out.append(f"<{tag}{start}>{''.join(rendered)}</{tag}>")
    return j - i


def _dedent(body: list[str]) -> list[str]:
    rest = [line for line in body[1:] if line.strip()]
    if not rest:
        return body
    cut = min(len(line) - len(line.lstrip(" ")) for line in rest)
    return [body[0], *(line[cut:] for line in body[1:])]


def _unwrap_first_paragraph(inner: str) -> str:
    end = inner.find("</p>")
    return inner[3:end] + inner[end + 4 :]


def _starts_block(line: str) -> bool:
    return bool(
        _FENCE.match(line) or _HEADING.match(line) or _RULE.match(line) or _QUOTE.match(line) or _ITEM.match(line)
    )


def _paragraph(lines: list[str], i: int, out: list[str]) -> int:
    j = i
    body: list[str] = []
    while j < len(lines) and lines[j].strip() and (j == i or not _starts_block(lines[j])):
        if j > i and j + 1 < len(lines) and "|" in lines[j] and _TABLE_RULE.match(lines[j + 1]):
            break
        body.append(lines[j].strip())
        j += 1
    # chat answers mean their line breaks (poems, addresses): keep them
    out.append(f"<p>{'<br>'.join(render_inline(line) for line in body)}</p>")
    return j - i


_BLOCK_PARSERS: tuple[Callable[[list[str], int, list[str]], int], ...] = (
    _fence,
    _heading,
    _rule,
    _quote,
    _table,
    _list,
)
