"""What the magics add to an error's own message, in their own verbs (``%lm_use``, ``%lm_reset``, ``%config``),
built from the exception's fields and never by editing it (pure: no shell, no client).

>>> chat_overflow_advice(ContextLengthExceededError("…", status_code=400), exchanges=6, chat_memory=20)
'Under --chat the conversation is what grew: 6 remembered exchanges went before this prompt. Forget them with \
%lm_reset, or keep fewer with %config LMMagics.chat_memory = 3.'
"""

from __future__ import annotations

import math

from lm_notebook.client.errors import ContextLengthExceededError, LMStudioAPIError, suggest_model

FAKE_SERVER_TEXT = (
    "the bundled fake LM Studio server (lm_notebook.testing): canned answers, no real model. To use your LM Studio, "
    "start its server (Developer tab, or `lms server start`) and run %config LMMagics.base_url = "
    "'http://127.0.0.1:1234' (or set LMSTUDIO_BASE_URL before starting Jupyter)"
)


def unknown_model_text(wanted: str, ids: list[str], base_url: str) -> str:
    """What ``%lm_use``, ``%%lm -m`` and ``%lm_chat -m`` say about an id the server does not have."""
    if ids:
        shown = ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "")
        guess = suggest_model(wanted, ids)
        hint = f' Did you mean "{guess}"?' if guess else ""
        return (
            f'LM Studio at {base_url} has no model "{wanted}".{hint} Available: {shown}. '
            "Choose one with %lm_use MODEL or -m MODEL."
        )
    return (
        f'LM Studio at {base_url} has no model "{wanted}" and lists none: download one in LM Studio '
        "(Discover tab) or with `lms get <model>`."
    )


def _memory_that_fits(err: ContextLengthExceededError, exchanges: int) -> int:
    """A ``chat_memory`` that would likely fit: the exchanges in proportion to the room the context has, when the
    error says the sizes; else half of them."""
    if err.prompt_tokens and err.context_length and err.prompt_tokens > 0:
        room = err.context_length - max(err.max_tokens or 0, 0)
        per_exchange = err.prompt_tokens / (exchanges + 1)  # this prompt counts as one more exchange's worth
        return max(0, min(exchanges - 1, math.floor(room / per_exchange) - 1))
    return exchanges // 2


def chat_overflow_advice(err: ContextLengthExceededError, *, exchanges: int, chat_memory: int) -> str:
    """``%%lm --chat``'s addition to a context overflow: the remembered conversation grew, and how to shrink it.
    ``exchanges``: those sent before this cell's prompt; "" when none were (the prompt alone is too long)."""
    if exchanges <= 0:
        return ""
    fits = min(_memory_that_fits(err, exchanges), max(chat_memory - 1, 0))
    plural = "s" if exchanges != 1 else ""
    return (
        f"Under --chat the conversation is what grew: {exchanges} remembered exchange{plural} went before this "
        f"prompt. Forget them with %lm_reset, or keep fewer with %config LMMagics.chat_memory = {fits}."
    )


def retry_advice(err: LMStudioAPIError) -> str:
    """How long to wait before trying again, when the server said (its ``Retry-After``); "" when it did not."""
    if err.retry_after is None or err.status_code not in (429, 503):
        return ""
    wait = math.ceil(err.retry_after) if err.retry_after > 0 else 0
    return f"The server asked to wait: try again in {wait} s." if wait else "The server says you may try again now."
