"""The IPython magics, one module per family: :mod:`~lm_notebook.magics.lm` (``%%lm`` and friends),
:mod:`~lm_notebook.magics.chat` (``%lm_chat``) and :mod:`~lm_notebook.magics.compare` (``%%lm_compare``).

``%load_ext lm_notebook`` calls :func:`register`; nothing here is imported until then.
"""

from __future__ import annotations

from typing import Any

from lm_notebook.magics.registry import remove_magics


def register(ipython: Any) -> None:
    """Register every magic: :class:`LMMagics`, ``%lm_chat`` and ``%%lm_compare`` (a second call does nothing)."""
    # imported here: loading the extension imports only IPython; pandas and ipywidgets wait for a magic to run
    from lm_notebook.magics import chat as chat_magics
    from lm_notebook.magics import compare as compare_magics
    from lm_notebook.magics.lm import LMMagics

    if "LMMagics" not in ipython.magics_manager.registry:
        ipython.register_magics(LMMagics(shell=ipython))
    chat_magics.register(ipython)
    compare_magics.register(ipython)


def unregister(ipython: Any) -> None:
    """Remove the magics (``%unload_ext lm_notebook``); open chat panels are closed."""
    from lm_notebook.magics import chat as chat_magics

    chat_magics.unregister(ipython)
    for name in ("CompareMagics", "LMMagics"):
        remove_magics(ipython, name)


__all__ = ["register", "remove_magics", "unregister"]
