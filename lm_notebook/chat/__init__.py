"""The chat panel: a pure conversation model (:mod:`~lm_notebook.chat.conversation`, no widgets), the generation of
one answer (:mod:`~lm_notebook.chat.generation`, a reader thread reporting through callbacks) and the ipywidgets view
(:mod:`~lm_notebook.chat.widgets`, :mod:`~lm_notebook.chat.panel`).

``ChatPanel`` is imported on first use, so ``lm_notebook.chat.conversation`` never loads ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lm_notebook.chat.conversation import ChatReply
    from lm_notebook.chat.panel import ChatPanel


def __getattr__(name: str) -> Any:
    if name in ("ChatPanel", "ChatReply"):
        from lm_notebook.chat import panel

        return getattr(panel, name)
    raise AttributeError(f"module 'lm_notebook.chat' has no attribute {name!r}")


__all__ = ["ChatPanel", "ChatReply"]
