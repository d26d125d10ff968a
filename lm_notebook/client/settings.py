"""Where the client talks to and how long it waits: the base URL, the timeouts and the API token, from arguments or
the environment (``LMSTUDIO_BASE_URL``, ``LMSTUDIO_TIMEOUT``, ``LM_API_TOKEN`` / ``LMSTUDIO_API_TOKEN``).

Each is checked where it is set, and a bad value is refused in one line that names the setting and the value.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field

import httpx

from lm_notebook.client.errors import LMStudioRequestError

DEFAULT_BASE_URL = "http://127.0.0.1:1234"
DEFAULT_CONNECT_TIMEOUT = 5.0
# A just-in-time load of a large model can take minutes and LM Studio has no server-side timeout.
DEFAULT_READ_TIMEOUT = 300.0
# Longer than this is "no timeout": sockets cannot count that far (time_t overflows near 1e10 s), and nobody waits
# 30 years for an answer.
_NO_LIMIT = 1e9

_URL_EXAMPLE = "write it like http://127.0.0.1:1234 (an IPv6 address goes in brackets: http://[::1]:1234)"


@dataclass(frozen=True)
class ServerAddress:
    """A base URL as the client uses it: ``base_url`` (never holds a password, so it is safe to show) and the user
    and password the URL carried, if any (sent as HTTP Basic auth, never shown)."""

    base_url: str
    credentials: tuple[str, str] | None = field(default=None, repr=False)


def _userinfo_split(text: str) -> tuple[str, str | None, str]:
    """A URL as typed, around its password: ``("http://user:", "PASSWORD", "@host:1234")``; no password: ``(text,
    None, "")``."""
    scheme, sep, rest = text.partition("://")
    head = scheme + sep if sep else ""
    userinfo, at, host = (rest if sep else text).rpartition("@")
    if not at or ":" not in userinfo:
        return text, None, ""
    user, password = userinfo.split(":", 1)
    return f"{head}{user}:", password, f"@{host}"


def _host_part(url: str) -> str:
    """The host and port of a URL as typed (``http://user:pw@host:1234/v1`` → ``host:1234``): only their colons tell
    an IPv6 address without brackets from a bad port."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return authority.rpartition("@")[2]


def _server_path(path: str) -> str:
    """The part of a URL's path before the server's own routes: ``/proxy/v1/chat/completions`` → ``/proxy``."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        native = segment == "api" and i + 1 < len(segments) and segments[i + 1] in ("v0", "v1")
        if segment in ("v1", "lmstudio-greeting") or native:
            return "/".join(segments[:i])
    return path.rstrip("/")


def parse_base_url(url: object, *, setting: str = "base_url") -> ServerAddress:
    """The server's base as users paste it: with or without ``http://``, with an endpoint (``…/v1/chat/completions``,
    ``…/v1/models``, ``…/api/v1``, ``…/api/v0/models``), a query or trailing slashes, all reduced to the base.

    >>> parse_base_url("localhost:1234/v1/chat/completions/").base_url
    'http://localhost:1234'
    """
    if not isinstance(url, str) or not url.strip():
        raise LMStudioRequestError(f"{setting} must be the server's address, not {url!r}: {_URL_EXAMPLE}.")
    text = url.strip()
    before, password, after = _userinfo_split(text)
    shown = f"{before}***{after}" if password is not None else text
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        why = str(exc).replace(password, "***") if password else str(exc)
        if "[" not in text and _host_part(text).count(":") > 1:
            why = "an IPv6 address without brackets"
        raise LMStudioRequestError(f"{setting} {shown!r} is not a URL ({why}): {_URL_EXAMPLE}.") from None
    if parsed.scheme not in ("http", "https"):
        raise LMStudioRequestError(
            f"{setting} {shown!r} is not an http:// or https:// address: {_URL_EXAMPLE}."
        )
    if not parsed.host or " " in parsed.host or "%20" in parsed.host:
        raise LMStudioRequestError(f"{setting} {shown!r} names no host: {_URL_EXAMPLE}.")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise LMStudioRequestError(
            f"{setting} {shown!r} has port {parsed.port}; a port is 1 to 65535 (LM Studio's is 1234): "
            f"{_URL_EXAMPLE}."
        )
    credentials = (parsed.username, parsed.password) if parsed.username or parsed.password else None
    base = parsed.copy_with(username=None, password=None, path=_server_path(parsed.path), query=None, fragment=None)
    return ServerAddress(str(base).rstrip("/"), credentials)


def normalize_base_url(url: str) -> str:
    """``http://host:1234/v1/chat/completions`` → ``http://host:1234`` (see :func:`parse_base_url`); a user and
    password in the URL are left out."""
    return parse_base_url(url).base_url


def base_url_or_env(base_url: str | None) -> ServerAddress:
    """The address given, else ``LMSTUDIO_BASE_URL``, else the default; each named in its refusal."""
    if base_url is not None and base_url != "":
        return parse_base_url(base_url, setting="base_url")
    env = os.environ.get("LMSTUDIO_BASE_URL")
    if env:
        return parse_base_url(env, setting="LMSTUDIO_BASE_URL")
    return ServerAddress(DEFAULT_BASE_URL)


def with_credentials(address: ServerAddress) -> str:
    """The base URL with its user and password put back (to make a twin client for the same server)."""
    if address.credentials is None:
        return address.base_url
    user, password = address.credentials
    url = httpx.URL(address.base_url).copy_with(username=user, password=password)
    return str(url)


def twin_url(address: ServerAddress, base_url: str | None) -> str:
    """The URL a copy of a client (at ``address``) uses: ``base_url`` when given. The user and password of
    ``address`` go along only to the same server, never to another one."""
    if base_url:
        given = parse_base_url(base_url)
        if given.credentials is not None or given.base_url != address.base_url:
            return base_url
    return with_credentials(address)


def seconds(value: object, setting: str) -> float | None:
    """A timeout setting in seconds; None for no limit (infinity). NaN, booleans, zero and negatives are refused.

    >>> seconds("inf", "LMSTUDIO_TIMEOUT") is None
    True
    """
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    if number is None or math.isnan(number) or number <= 0:
        infinity = "inf" if isinstance(value, str) else 'float("inf")'
        raise LMStudioRequestError(
            f"{setting} must be a positive number of seconds, or {infinity} for no read timeout; not {value!r}."
        )
    return None if number >= _NO_LIMIT else number


def _checked_timeout(timeout: httpx.Timeout) -> httpx.Timeout:
    """An ``httpx.Timeout`` as given, each limit checked like a number (infinity: no limit)."""
    limits = {}
    for name in ("connect", "read", "write", "pool"):
        value = getattr(timeout, name)
        limits[name] = None if value is None else seconds(value, f"timeout.{name}")
    return httpx.Timeout(**limits)


def resolve_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """A number is the read timeout (connect stays short); infinity means no read timeout; None uses
    ``LMSTUDIO_TIMEOUT`` or the defaults.

    >>> resolve_timeout(float("inf"))
    Timeout(connect=5.0, read=None, write=None, pool=None)
    """
    if isinstance(timeout, httpx.Timeout):
        return _checked_timeout(timeout)
    if timeout is None:
        env = os.environ.get("LMSTUDIO_TIMEOUT", "")
        read = seconds(env, "LMSTUDIO_TIMEOUT") if env.strip() else DEFAULT_READ_TIMEOUT
    else:
        read = seconds(timeout, "timeout")
    connect = DEFAULT_CONNECT_TIMEOUT if read is None else min(DEFAULT_CONNECT_TIMEOUT, read)
    return httpx.Timeout(read, connect=connect)


def checked_token(token: str | None) -> str | None:
    """The token as sent: surrounding whitespace (a newline from a file) dropped; never echoed back."""
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    # an HTTP header carries ASCII only: httpx would fail on anything else with a raw UnicodeEncodeError
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise LMStudioRequestError(
            "The API token contains spaces, control characters or non-ASCII characters (a pasted curly quote or "
            "dash, say), so it cannot be sent in an HTTP header. Check "
            "LM_API_TOKEN (or the api_key you passed): it should look like sk-lm-XXXXXXXX:XXXXXXXXXXXXXXXXXXXX."
        )
    return token


def token_from_env() -> str | None:
    return os.environ.get("LM_API_TOKEN") or os.environ.get("LMSTUDIO_API_TOKEN") or None

