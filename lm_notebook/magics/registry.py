"""Taking a family of magics out of a shell again (IPython has register_magics but no unregister)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def remove_magics(ipython: InteractiveShell, class_name: str) -> None:
    """Take one registered ``Magics`` class (by class name) out of ``ipython``, with its config entry."""
    magics = ipython.magics_manager.registry.pop(class_name, None)
    if magics is None:
        return
    for kind, table in magics.magics.items():
        for name in table:
            ipython.magics_manager.magics[kind].pop(name, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
