"""The facts under an answer — model, tokens, time to the first token, tokens/s, how it ended — and their two forms.

:func:`footer_facts` lists them once; :func:`facts_text` (the notebook cell's footer, the terminal) and
:func:`facts_html` (the chat panel's footer) only format that list, so the cell and the panel say the same words.

>>> facts_text(footer_facts(ChatResult("Hi", model="qwen", timings=Timings(time_to_first_token=0.25))))
'qwen · first token 0.25 s'
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lm_notebook.client.native_types import ServerStats, StreamProgress
from lm_notebook.client.types import ChatResult, Timings
from lm_notebook.display.progress import progress_text

FactKind = Literal[
    "model", "tokens", "first_token", "speed", "duration", "finish", "ending", "streaming", "loading", "server",
    "load_time", "progress",
]

SEPARATOR = " · "
FAKE_SERVER = "fake server"  # the last fact of an answer from the bundled fake LM Studio server (canned text)


@dataclass(frozen=True)
class FooterFact:
    """One fact of a footer: what it is (``kind``, for styling) and its words."""

    kind: FactKind
    text: str


def footer_facts(
    result: ChatResult,
    *,
    note: str | None = None,
    approx_tokens: int = 0,
    with_model: bool = True,
    with_finish: bool = False,
    fake_server: bool = False,
) -> list[FooterFact]:
    """The facts of a finished, stopped or failed answer, in the order they are shown.

    ``note`` replaces the result's own :attr:`~ChatResult.finish_note` (the ending, shown only when it was not a
    normal stop). ``approx_tokens`` is shown as ``≈N tokens`` when the server sent no token count. ``with_model``
    leaves the model out where a heading already names it; ``with_finish`` adds the server's finish reason;
    ``fake_server`` says last that the answer is the bundled fake server's.
    """
    facts: list[FooterFact] = []
    if with_model and result.model:
        facts.append(FooterFact("model", result.model))
    tokens = result.completion_tokens
    if tokens:
        facts.append(FooterFact("tokens", _tokens(tokens)))
    elif approx_tokens:
        facts.append(FooterFact("tokens", f"≈{_tokens(approx_tokens)}"))
    elif tokens is not None:
        facts.append(FooterFact("tokens", _tokens(tokens)))
    facts += _timing_facts(result.timings, result.server_stats)
    if with_finish and result.finish_reason:
        facts.append(FooterFact("finish", f"finish: {result.finish_reason}"))
    ending = note if note is not None else result.finish_note
    if ending:
        facts.append(FooterFact("ending", ending))
    if fake_server:
        facts.append(FooterFact("server", FAKE_SERVER))
    return facts


def live_facts(
    model: str | None, parts: int, *, loading_for: float | None = None, fake_server: bool = False,
    progress: StreamProgress | None = None, progress_for: float | None = None,
) -> list[FooterFact]:
    """The facts of an answer still streaming: ``parts`` is the text parts so far (about one token each).

    ``loading_for`` (seconds) says, until the first part, that the model is being loaded (just in time) and for how
    long, instead of "waiting for the first token…". ``progress`` (the native route's latest, ``progress_for``
    seconds into its stage) says how far the load or the prompt's reading has come.
    """
    server = [FooterFact("server", FAKE_SERVER)] if fake_server else []
    if not parts and progress is not None and not progress.done:
        return [FooterFact("progress", progress_text(progress, progress_for, model=model)), *server]
    if not parts and loading_for is not None:
        what = model or "the model"
        return [FooterFact("loading", f"Loading {what}… {int(loading_for)} s"), *server]
    facts = [FooterFact("model", model)] if model else []
    if not parts:
        return [*facts, FooterFact("streaming", "waiting for the first token…"), *server]
    return [*facts, FooterFact("tokens", f"≈{_tokens(parts)}"), FooterFact("streaming", "streaming…"), *server]


def facts_text(facts: Sequence[FooterFact]) -> str:
    """The facts as one plain line."""
    return SEPARATOR.join(f.text for f in facts)


def facts_html(facts: Sequence[FooterFact]) -> str:
    """The facts as HTML: the same words, each in a ``lmnb-fact-<kind>`` span for a style sheet to colour."""
    return SEPARATOR.join(f'<span class="lmnb-fact-{f.kind}">{html.escape(f.text)}</span>' for f in facts)


def footer_text(
    result: ChatResult, *, note: str | None = None, approx_tokens: int = 0, fake_server: bool = False
) -> str:
    """A notebook cell's footer: one line of :func:`footer_facts`."""
    return facts_text(footer_facts(result, note=note, approx_tokens=approx_tokens, fake_server=fake_server))


def _tokens(n: int) -> str:
    return f"{n} token{'s' if n != 1 else ''}"


def _timing_facts(t: Timings, server: ServerStats | None = None) -> list[FooterFact]:
    """Time to the first token and speed: the server's own (marked so) when it reported them, else the client's;
    and how long the model took to load, when it was loaded for this answer."""
    facts: list[FooterFact] = []
    if server is not None and (server.time_to_first_token is not None or server.tokens_per_second is not None):
        if server.time_to_first_token is not None:
            facts.append(FooterFact("first_token", f"first token {server.time_to_first_token:.2f} s (server)"))
        if server.tokens_per_second is not None:
            facts.append(FooterFact("speed", f"{server.tokens_per_second:.1f} tok/s (server)"))
        if server.model_load_time:
            facts.append(FooterFact("load_time", f"loaded in {server.model_load_time:.1f} s"))
        return facts
    if t.time_to_first_token is not None:
        facts.append(FooterFact("first_token", f"first token {t.time_to_first_token:.2f} s"))
    if t.tokens_per_second is not None:
        facts.append(FooterFact("speed", f"{t.tokens_per_second:.1f} tok/s"))
    elif t.total is not None:
        facts.append(FooterFact("duration", f"{t.total:.2f} s"))
    return facts
