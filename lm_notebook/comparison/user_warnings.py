"""Warnings a comparison gives, pointed at the user's line rather than into asyncio or this package.

A comparison runs on an event loop, so a fixed ``stacklevel`` lands in asyncio's task machinery (or in
nest_asyncio's, in a notebook). Python 3.12's ``warnings.warn(skip_file_prefixes=...)`` does this walk; the package
supports Python 3.10, so it is written out here.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings

# this package (lm_notebook/, above comparison/), asyncio, and nest_asyncio (one module file, wherever it is)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIPPED = (_PACKAGE + os.sep, os.path.dirname(asyncio.__file__) + os.sep)
_SKIPPED_FILES = ("nest_asyncio.py",)


def _skipped(filename: str) -> bool:
    return filename.startswith(_SKIPPED) or os.path.basename(filename) in _SKIPPED_FILES


def warn_at_user_line(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` at the nearest frame outside this package and the event loop (the user's call)."""
    level = 2  # the caller of this function
    frame = sys._getframe(1)
    while frame.f_back is not None and _skipped(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
