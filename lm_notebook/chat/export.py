"""The chat panel's conversation as Markdown or as a pandas DataFrame (what ``to_markdown`` / ``to_dataframe`` return).

Pure functions of the system prompt and a snapshot of the panel's entries: no widgets, no locks, no LM Studio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lm_notebook.chat.conversation import ConversationEntry
from lm_notebook.client.errors import error_text

if TYPE_CHECKING:
    import pandas as pd


def conversation_markdown(system: str, entries: Sequence[ConversationEntry]) -> str:
    """The conversation as Markdown (images as data-URL images, thinking in ``<details>``, stops and errors
    noted)."""
    lines: list[str] = []
    if system.strip():
        lines += [f"**System:** {system.strip()}", ""]
    for e in entries:
        if e.role == "user":
            lines += ["### You", "", e.content, ""]
            # images as data URLs: the Markdown stands alone, with no files beside it
            lines += [*(f"![{image.source}]({image.data_url})" for image in e.images), *([""] if e.images else [])]
            continue
        lines += [f"### {e.model or 'Assistant'}", ""]
        if e.reasoning:
            lines += ["<details><summary>Thinking</summary>", "", e.reasoning, "", "</details>", ""]
        if e.content:
            lines += [e.content, ""]
        if e.error is not None:
            lines += [f"> ⚠ {error_text(e.error)}", ""]
        elif e.result is not None and e.result.stopped:
            lines += ["*(stopped)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def conversation_dataframe(system: str, entries: Sequence[ConversationEntry]) -> pd.DataFrame:
    """One row per message: role, content, model, thinking, finish, tokens, timings, error, images (how many)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if system.strip():
        rows.append({"role": "system", "content": system, "images": 0})
    for e in entries:
        r = e.result
        rows.append({
            "role": e.role,
            "content": e.content,
            "model": e.model,
            "reasoning": e.reasoning or None,
            "finish_reason": r.finish_reason if r else None,
            "stopped": bool(r and r.stopped),
            "completion_tokens": r.completion_tokens if r else None,
            "time_to_first_token": r.timings.time_to_first_token if r else None,
            "tokens_per_second": r.timings.tokens_per_second if r else None,
            "error": error_text(e.error) if e.error is not None else None,
            "images": len(e.images),
        })
    columns = ["role", "content", "model", "reasoning", "finish_reason", "stopped", "completion_tokens",
               "time_to_first_token", "tokens_per_second", "error", "images"]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=columns)
    return frame
