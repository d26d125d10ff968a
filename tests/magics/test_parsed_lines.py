"""A magic's line parsed once (issue 17, the first token: argparse is on the way to a ``%%lm`` cell's request): the
same line again is not parsed again, each call still gets values of its own, and a bad line is refused every time."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

from lm_notebook.magics.arguments import _parsed, parse_argstring
from lm_notebook.magics.compare import CompareMagics
from lm_notebook.magics.lm import LMMagics


def counting(monkeypatch: pytest.MonkeyPatch, magic: Any) -> list[str]:
    parser = magic.parser
    parsed: list[str] = []
    parse = parser.parse_argstring

    def counted(argstring: str, **kwargs: Any) -> Any:
        parsed.append(argstring)
        return parse(argstring, **kwargs)

    monkeypatch.setattr(parser, "parse_argstring", counted)
    return parsed


def test_a_line_seen_before_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = counting(monkeypatch, LMMagics.lm)
    _parsed.cache_clear()  # whatever an earlier test parsed
    line = "-m 'qwen 7b' -t 0 --seed 42 --max-tokens 64 -f text -i fig -i 'my plot.png'"
    first = parse_argstring(LMMagics.lm, line)
    second = parse_argstring(LMMagics.lm, line)
    assert parsed == [line]
    assert vars(first) == vars(second) and first is not second
    assert first.model == "qwen 7b" and first.temperature == 0.0 and first.images == ["fig", "my plot.png"]
    first.images.append("another")  # a caller's changes stay its own
    assert parse_argstring(LMMagics.lm, line).images == ["fig", "my plot.png"]


def test_a_repeated_option_with_a_list_default_starts_empty_each_time() -> None:
    line = "--check contains:cat"
    magic = CompareMagics.lm_compare
    assert parse_argstring(magic, line).check == ["contains:cat"]
    again = parse_argstring(magic, line)
    again.check.append("max_words:5")
    assert parse_argstring(magic, line).check == ["contains:cat"]
    assert parse_argstring(magic, "").check == []


def test_a_bad_line_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(UsageError, match="unrecognized arguments: --nope"):
            parse_argstring(LMMagics.lm, "--nope")
