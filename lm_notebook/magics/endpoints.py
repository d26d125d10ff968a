"""Several servers in the magics: ``%config LMMagics.endpoints``, ``%lm_models --all`` and ``%%lm_compare --all``.

::

    %config LMMagics.endpoints = {"laptop": "http://127.0.0.1:1234", "gpu": "http://192.168.1.20:1234"}
    %lm_models --all                      # every endpoint's models, one table each
    %lm_models --all laptop=http://127.0.0.1:1234 gpu=http://192.168.1.20:1234   # or named on the line

``%%lm_compare --all`` spreads the cell's prompts over the same endpoints (``compare(endpoints=...)``).
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.settings import normalize_base_url
from lm_notebook.client.types import ModelInfo
from lm_notebook.display.model_table import Bundle, model_table

NO_ENDPOINTS = (
    "No endpoints to list: name them on the line (%lm_models --all laptop=http://127.0.0.1:1234 "
    "gpu=http://192.168.1.20:1234), or set them once: %config LMMagics.endpoints = {'laptop': 'http://…', …}."
)


def line_endpoints(words: list[str]) -> dict[str, str] | list[str]:
    """``name=url`` words as a dict, bare URLs as a list (not both)."""
    named = [w for w in words if "=" in w.split("://", 1)[0]]
    if named and len(named) != len(words):
        raise UsageError("Name every endpoint (name=url) or none of them.")
    if named:
        return dict(w.split("=", 1) for w in words)
    return list(words)


def checked_endpoints(value: Any, setting: str) -> Any:
    """A value for ``LMMagics.endpoints``: None, a list of URLs, or a dict {name: url} (checked as compare would)."""
    if value is None or value == [] or value == {}:
        return None
    from lm_notebook.comparison.endpoints import named_endpoints

    if not isinstance(value, (list, tuple, dict)) or not all(
        isinstance(v, str) for v in (value.values() if isinstance(value, dict) else value)
    ):
        raise ValueError(f"{setting} must be a list of base URLs or a dict {{name: url}}; not {value!r}.")
    named_endpoints(value)
    return dict(value) if isinstance(value, dict) else list(value)


def endpoints_bundle(listed: dict[str, list[ModelInfo]], urls: dict[str, str], current: str | None) -> Bundle:
    """One model table per endpoint, each under its name."""
    plain: list[str] = []
    rich: list[str] = []
    for name, models in listed.items():
        table = model_table(models, current=current, base_url=urls[name])
        plain += [f"== {name} ==", table["text/plain"], ""]
        rich.append(f"<h4>{name}</h4>{table['text/html']}")
    return {"text/plain": "\n".join(plain).rstrip(), "text/html": "".join(rich)}


def list_all(endpoints: Any, current: str | None) -> tuple[dict[str, list[ModelInfo]], Bundle]:
    """Every endpoint's models and what ``%lm_models --all`` shows; a failure is a one-line UsageError."""
    from lm_notebook.comparison.endpoints import endpoint_models, named_endpoints

    if not endpoints:
        raise UsageError(NO_ENDPOINTS)
    try:
        pairs = named_endpoints(endpoints)
        listed = endpoint_models(dict(pairs))
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from err
    except LMStudioError as err:
        raise UsageError(err.message) from err
    # a URL as typed may carry user:password; only the cleaned address is shown
    urls = {name: normalize_base_url(value) if isinstance(value, str) else value.base_url for name, value in pairs}
    return listed, endpoints_bundle(listed, urls, current)
