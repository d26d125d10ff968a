"""The IPython magics, one module per family: :mod:`~lm_notebook.magics.lm` (``%%lm`` and friends, with
:mod:`~lm_notebook.magics.settings` for ``%config LMMagics``, :mod:`~lm_notebook.magics.host` for what they share,
:mod:`~lm_notebook.magics.cell_request` reading a cell, :mod:`~lm_notebook.magics.answer_cell` answering it and
:mod:`~lm_notebook.magics.memory` for ``--chat``),
:mod:`~lm_notebook.magics.chat` (``%lm_chat``), :mod:`~lm_notebook.magics.compare` (``%%lm_compare``) and
:mod:`~lm_notebook.magics.bench` (``%lm_bench``), :mod:`~lm_notebook.magics.models` (``%lm_download``, ``%lm_load``,
``%lm_unload``, ``%lm_ps``). What they
share: :mod:`~lm_notebook.magics.arguments` (typed ``magic_arguments``, one-line errors),
:mod:`~lm_notebook.magics.advice` (what they add to an error, in their verbs) and :mod:`~lm_notebook.magics.registry`
(taking a family out again).

``%load_ext lm_notebook`` calls :func:`register`; nothing here is imported until then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lm_notebook.magics.registry import remove_magics

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def register(ipython: InteractiveShell) -> None:
    """Register every magic: :class:`LMMagics`, ``%lm_chat``, ``%%lm_compare`` and ``%lm_bench`` (a second call
    does nothing)."""
    # imported here: loading the extension imports only IPython; pandas and ipywidgets wait for a magic to run
    from lm_notebook.magics import bench as bench_magics
    from lm_notebook.magics import chat as chat_magics
    from lm_notebook.magics import compare as compare_magics
    from lm_notebook.magics import models as model_magics
    from lm_notebook.magics.lm import LMMagics

    if "LMMagics" not in ipython.magics_manager.registry:
        from IPython.core.error import UsageError
        from traitlets import TraitError

        try:
            magics = LMMagics(shell=ipython)
        except TraitError as err:  # a bad value in ipython_config.py (or an earlier c.LMMagics... in this kernel)
            raise UsageError(f"{err} Fix it in your IPython config, then %load_ext lm_notebook again.") from err
        ipython.register_magics(magics)
    chat_magics.register(ipython)
    compare_magics.register(ipython)
    bench_magics.register(ipython)
    model_magics.register(ipython)


def unregister(ipython: InteractiveShell) -> None:
    """Remove the magics (``%unload_ext lm_notebook``); open chat panels are closed."""
    from lm_notebook.magics import chat as chat_magics

    chat_magics.unregister(ipython)
    for name in ("BenchMagics", "CompareMagics", "ModelMagics", "LMMagics"):
        remove_magics(ipython, name)


__all__ = ["register", "remove_magics", "unregister"]
