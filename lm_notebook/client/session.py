"""The kernel's one shared ("current") client, used by the magics, the chat panel and ``compare`` alike.

So a model chosen with ``%lm_use`` (or ``set_current_model``) is the one every other tool defaults to.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.embeddings import DEFAULT_BATCH_SIZE, Embeddings

_lock = threading.Lock()
_client: LMStudioClient | None = None


def get_client() -> LMStudioClient:
    """The shared client, created on first use from ``LMSTUDIO_BASE_URL`` / ``LM_API_TOKEN``."""
    global _client
    with _lock:
        if _client is None:
            _client = LMStudioClient()
        return _client


def set_client(client: LMStudioClient | None, *, close_previous: bool = True) -> LMStudioClient | None:
    """Replace the shared client; returns the previous one. ``None`` resets it.

    ``close_previous=False`` leaves the old client open for whoever still holds it (a chat panel, a variable).
    """
    global _client
    with _lock:
        previous, _client = _client, client
    if close_previous and previous is not None and previous is not client:
        previous.close()
    return previous


def embed(texts: str | Sequence[str], *, model: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> Embeddings:
    """``get_client().embed(...)``: embed ``texts`` with the shared client (see
    :meth:`~lm_notebook.client.LMStudioClient.embed`).

    >>> import lm_notebook
    >>> lm_notebook.embed(["a cat", "a dog"]).vectors.shape   # doctest: +SKIP
    (2, 768)
    """
    return get_client().embed(texts, model=model, batch_size=batch_size)
