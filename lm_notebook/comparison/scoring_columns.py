"""The columns ``checks=`` adds to a comparison's rows besides one ``check_<name>`` per check (an input column of the
same name is renamed ``<name>_input``, as for the other result columns)."""

from __future__ import annotations

from dataclasses import dataclass

SCORE_COLUMNS = ("score", "passed", "check_notes")
# a check may not be named so that its column would be one of these
RESERVED_CHECK_NAMES = frozenset({"notes"})
# the frame's attrs key holding each check column's threshold ({"check_contains": 1.0, ...}), read by summary()
THRESHOLDS_ATTR = "lm_notebook_check_thresholds"


@dataclass
class Cell:
    """One check's result on one row: its score (0-1), a note on it, or the error that left it unscored."""

    score: float | None = None
    note: str | None = None
    error: str | None = None
