"""Where the client talks to and how long it waits: the base URL, the timeouts and the API token, from arguments or
the environment (``LMSTUDIO_BASE_URL``, ``LMSTUDIO_TIMEOUT``, ``LM_API_TOKEN`` / ``LMSTUDIO_API_TOKEN``)."""

from __future__ import annotations

import os

import httpx

from lm_notebook.client.errors import LMStudioRequestError

DEFAULT_BASE_URL = "http://127.0.0.1:1234"
DEFAULT_CONNECT_TIMEOUT = 5.0
# A just-in-time load of a large model can take minutes and LM Studio has no server-side timeout.
DEFAULT_READ_TIMEOUT = 300.0


def normalize_base_url(url: str) -> str:
    """``http://host:1234/v1/`` → ``http://host:1234`` (a trailing ``/v1`` is optional for users)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def base_url_or_env(base_url: str | None) -> str:
    return normalize_base_url(base_url or os.environ.get("LMSTUDIO_BASE_URL") or DEFAULT_BASE_URL)


def resolve_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """A number is the read timeout (connect stays short); None uses ``LMSTUDIO_TIMEOUT`` or the defaults."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        env = os.environ.get("LMSTUDIO_TIMEOUT")
        try:
            timeout = float(env) if env else None
        except ValueError:
            raise LMStudioRequestError(f"LMSTUDIO_TIMEOUT must be a number of seconds, not {env!r}.") from None
    read = DEFAULT_READ_TIMEOUT if timeout is None else float(timeout)
    if read <= 0:
        raise LMStudioRequestError("timeout must be a positive number of seconds (nothing may wait forever).")
    return httpx.Timeout(read, connect=min(DEFAULT_CONNECT_TIMEOUT, read))


def checked_token(token: str | None) -> str | None:
    """The token as sent: surrounding whitespace (a newline from a file) dropped; never echoed back."""
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if not token.isprintable() or any(c.isspace() for c in token):
        raise LMStudioRequestError(
            "The API token contains spaces or control characters, so it cannot be sent in an HTTP header. Check "
            "LM_API_TOKEN (or the api_key you passed): it should look like sk-lm-XXXXXXXX:XXXXXXXXXXXXXXXXXXXX."
        )
    return token


def token_from_env() -> str | None:
    return os.environ.get("LM_API_TOKEN") or os.environ.get("LMSTUDIO_API_TOKEN") or None
