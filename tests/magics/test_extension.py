"""`%load_ext lm_notebook`: every magic registered, lazily, idempotently; unloading removes them."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic('load_ext', 'lm_notebook')
ip.run_line_magic('reload_ext', 'lm_notebook')
line = {n for n in ip.magics_manager.magics['line'] if n.startswith('lm')}
cell = {n for n in ip.magics_manager.magics['cell'] if n.startswith('lm')}
assert line == {'lm_bench', 'lm_chat', 'lm_config', 'lm_download', 'lm_last_error', 'lm_load', 'lm_models', 'lm_ps',
                'lm_reset', 'lm_unload', 'lm_use'}, line
assert cell == {'lm', 'lm_compare'}, cell
heavy = [m for m in ('pandas', 'ipywidgets') if m in sys.modules]
assert not heavy, f'loading the extension imported {heavy}'
ip.run_line_magic('unload_ext', 'lm_notebook')
left = [n for kind in ('line', 'cell') for n in ip.magics_manager.magics[kind] if n.startswith('lm')]
assert not left, left
"""


def test_load_ext_registers_all_magics_lazily_and_unloads_cleanly() -> None:
    subprocess.run([sys.executable, "-c", CODE], check=True, timeout=60)
