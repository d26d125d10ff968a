"""``compare(..., schema=...)``: every answer checked against the schema — ``parsed`` (the object), ``valid`` and
``schema_error`` columns — and each model's valid rate for ``summary``: which of my models follows the schema.

The answers are checked when the frame is built, from their text, so a cached answer (stored as text) is checked the
same way as a fresh one, and a pydantic object never has to be stored.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lm_notebook.client.errors import AnswerFormatError
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.types import ChatResult

STRUCTURED_COLUMNS = ("parsed", "valid", "schema_error")


def _checked(schema: AnswerSchema, status: Any, response: Any, finish_reason: Any) -> tuple[Any, Any, Any]:
    if status != "ok":
        return None, None, None  # no answer to check: neither valid nor invalid
    reason = finish_reason if isinstance(finish_reason, str) else None
    try:
        result = schema.parsed(ChatResult(str(response or ""), finish_reason=reason))
    except AnswerFormatError as err:
        where = f" (at {err.path})" if err.path else ""
        return None, False, f"{err.validation_error}{where}"
    return result.parsed, True, None


def with_structured_columns(df: pd.DataFrame, schema: AnswerSchema | None) -> pd.DataFrame:
    """``df`` with ``parsed``, ``valid`` and ``schema_error`` right after ``response`` (unchanged without a schema).
    ``valid`` is None for rows with no answer (errors, cancelled)."""
    if schema is None:
        return df
    checked = [_checked(schema, s, r, f) for s, r, f in zip(df["status"], df["response"], df["finish_reason"],
                                                           strict=True)]
    out: pd.DataFrame = df.copy()
    at = list(out.columns).index("response") + 1
    for offset, name in enumerate(STRUCTURED_COLUMNS):
        values = pd.Series([c[offset] for c in checked], index=out.index, dtype=object)
        out.insert(at + offset, name, values)
    return out


def valid_rate(rows: pd.DataFrame) -> float:
    """The share of a model's answers that followed the schema (NaN when it has none)."""
    if "valid" not in rows:
        return float("nan")
    checked = rows["valid"].dropna()
    return float(checked.astype(bool).mean()) if len(checked) else float("nan")
