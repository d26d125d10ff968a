"""Notebook output: pure renderers (an answer, its footer, the model table, Markdown) and one throttled live repaint;
what a Jupyter frontend keeps of a cell's output messages (:mod:`~lm_notebook.display.frontend`).

Imports the core (:mod:`lm_notebook.client`) and nothing above it; IPython's display functions are imported where
output is shown, so the renderers can be tested with plain values.
"""
