"""``LMMagics``' settings (``%config LMMagics.timeout = 120``, ``ipython_config.py``), each checked when it is set.

A bad value is refused in one line that names the setting, the value and what is allowed, and the previous value is
kept. The traits take values as given (``traitlets.Any``) so that the checks below see them uncast: ``Float`` would
turn ``True`` into 1 s. The URL and timeout rules are the client's own (:mod:`lm_notebook.client.settings`), so a
setting refuses exactly what the client would.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import TYPE_CHECKING, Any, ClassVar

from IPython.core.magic import Magics
from traitlets import Any as AnyValue
from traitlets import TraitError, validate
from traitlets.config import Config

from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.settings import ServerAddress, parse_base_url, seconds, with_credentials
from lm_notebook.display.render import FORMATS

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from lm_notebook.client.clients import LMStudioClient

TEMPERATURE_RANGE = (0.0, 2.0)  # what LM Studio's slider offers (OpenAI's range too); the chat panel refuses the same
NO_LIMIT = -1  # max_tokens: LM Studio's "no limit"
# The shortest timeout the magics take, in seconds: connecting and each read of an answer share it, and even the fake
# server on loopback can take longer than a few milliseconds on a busy machine
MIN_TIMEOUT = 1.0


def _real(value: object) -> float | None:
    """``value`` as a float when it is a real number (a bool is not); else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number (a bool is not); else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def checked_temperature(value: object, setting: str, *, unset: str = ", or None for the model's own") -> float | None:
    """A sampling temperature from 0 to 2 (None: the model's own). ``unset``: how the refusal says "not given"."""
    if value is None:
        return None
    low, high = TEMPERATURE_RANGE
    number = _real(value)
    if number is None or not low <= number <= high:
        raise LMStudioRequestError(f"{setting} must be a number from {low:g} to {high:g}{unset}; not {value!r}.")
    return number


def checked_max_tokens(value: object, setting: str, *, unset: str = " (or None)") -> int | None:
    """A longest answer in tokens: 1 and up, or -1 / None for no limit. ``unset``: how the refusal says "not
    given"."""
    if value is None:
        return None
    number = _whole(value)
    if number is None or (number < 1 and number != NO_LIMIT):
        raise LMStudioRequestError(
            f"{setting} must be a whole number of tokens from 1 up, or -1{unset} for no limit; not {value!r}."
        )
    return number


class LMSettings(Magics):
    """The settings of :class:`~lm_notebook.magics.lm.LMMagics` (its base class, so that file holds only magics).

    ``%config LMMagics`` lists them; a value refused by ``%config`` leaves the setting as it was.
    """

    base_url = AnyValue(
        "",
        help="LM Studio's address, e.g. http://127.0.0.1:1234 (an endpoint such as …/v1/chat/completions is reduced "
        "to it). Empty: LMSTUDIO_BASE_URL, else http://127.0.0.1:1234.",
    ).tag(config=True)
    temperature = AnyValue(
        None, allow_none=True, help="Sampling temperature, 0 to 2; None leaves the model's own."
    ).tag(config=True)
    max_tokens = AnyValue(
        None, allow_none=True, help="Longest answer in tokens (1 and up); None or -1 means no limit."
    ).tag(config=True)
    system = AnyValue("", help="System prompt sent before every %%lm prompt (-s overrides it).").tag(config=True)
    default_format = AnyValue("markdown", help=f"How %%lm shows answers without -f: one of {', '.join(FORMATS)}.").tag(
        config=True
    )
    timeout = AnyValue(
        None,
        allow_none=True,
        help="Seconds to wait for an answer (a just-in-time model load counts); float('inf'): no read timeout; "
        "None: LMSTUDIO_TIMEOUT, else 300.",
    ).tag(config=True)
    chat_memory = AnyValue(
        20, help="Exchanges (prompt + answer) that %%lm --chat remembers, 0 and up; older ones are dropped."
    ).tag(config=True)
    updates_per_second = AnyValue(10.0, help="Most repaints a second of a streaming answer (above 0).").tag(
        config=True
    )
    endpoints = AnyValue(
        None, allow_none=True, help="Several servers for %lm_models --all and %%lm_compare --all: a list of base "
        "URLs or a dict {name: url}; None: just base_url.",
    ).tag(config=True)

    # base URL (as the trait holds it, without them) -> the user and password it was given with. Shared by every
    # instance: each configurable of the shell sees a %config statement in turn, and the first one to see it takes
    # the password out of it. As with the client's with_options, they go along to that server from then on.
    _url_credentials: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._scrub_config(self.config)  # a password in ipython_config.py's base_url stays out of shell.config
        # so %config LMMagics.x = ... reaches this instance (IPython types the list as shells only)
        if shell is not None and self not in shell.configurables:  # type: ignore[comparison-overlap]
            shell.configurables.append(self)  # type: ignore[arg-type]

    def update_config(self, config: Config) -> None:
        """Apply ``%config``; a refused value is taken out of the shell's config as well as kept out of the setting.

        The shell's configurables share one ``Config`` and each merges the whole statement into it, so without this a
        refused ``LMMagics.timeout = 0`` would stay there and break the next ``%reload_ext lm_notebook``.
        """
        try:
            super().update_config(config)
            self._scrub_config(config)
        except TraitError:
            for section in self.section_names():
                given = dict.get(config, section)
                if isinstance(given, Config):
                    for name in list(given):
                        if self.has_trait(name):
                            # the statement (which later configurables merge too) and the shared config say the
                            # value the setting kept
                            given[name] = self.config[section][name] = getattr(self, name)
            raise

    def _scrub_config(self, config: Config) -> None:
        """The statement (which later configurables merge too) and the shared config say ``base_url`` as the trait
        keeps it: without a user and password given in it."""
        for section in self.section_names():
            given = dict.get(config, section)
            if isinstance(given, Config) and dict.get(given, "base_url") not in (None, self.base_url):
                given["base_url"] = self.base_url
                shared = dict.get(self.config, section)
                if isinstance(shared, Config) and "base_url" in shared:
                    shared["base_url"] = self.base_url

    def setting_name(self, name: str) -> str:
        return f"{type(self).__name__}.{name}"

    def _refuse(self, err: LMStudioRequestError) -> TraitError:
        return TraitError(str(err))

    # --- the checks: each returns the value to keep, or raises TraitError with one line ---------------------------
    @validate("base_url")
    def _check_base_url(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if value == "" or value is None:
            return ""
        try:
            address = parse_base_url(value, setting=self.setting_name("base_url"))
        except LMStudioRequestError as err:
            raise self._refuse(err) from None
        if address.credentials is None:
            return str(value).strip()
        # %config LMMagics and the shell's config show the trait: it keeps the address without the user and
        # password, which are kept aside for the client (see configured_url) and never shown
        LMSettings._url_credentials[address.base_url] = address.credentials
        return address.base_url

    def configured_url(self) -> str | None:
        """The configured base URL as the client is to be made for it (a user and password given in it put back);
        None when none is configured."""
        if not self.base_url:
            return None
        credentials = self._url_credentials.get(self.base_url)
        if credentials is None:
            return str(self.base_url)
        return with_credentials(ServerAddress(self.base_url, credentials))

    @validate("timeout")
    def _check_timeout(self, proposal: dict[str, Any]) -> float | None:
        value = proposal["value"]
        if value is None:
            return None
        try:
            limit = seconds(value, self.setting_name("timeout"))
        except LMStudioRequestError as err:
            raise self._refuse(err) from None
        if limit is not None and limit < MIN_TIMEOUT:
            raise TraitError(
                f"{self.setting_name('timeout')} must be at least {MIN_TIMEOUT:g} s: it is how long a magic waits to "
                f"connect to LM Studio and for each part of its answer, so a shorter wait fails every request; not "
                f"{value!r} (float('inf') waits for ever)."
            )
        return math.inf if limit is None else limit

    @validate("temperature")
    def _check_temperature(self, proposal: dict[str, Any]) -> float | None:
        try:
            return checked_temperature(proposal["value"], self.setting_name("temperature"))
        except LMStudioRequestError as err:
            raise self._refuse(err) from None

    @validate("max_tokens")
    def _check_max_tokens(self, proposal: dict[str, Any]) -> int | None:
        try:
            return checked_max_tokens(proposal["value"], self.setting_name("max_tokens"))
        except LMStudioRequestError as err:
            raise self._refuse(err) from None

    @validate("chat_memory")
    def _check_chat_memory(self, proposal: dict[str, Any]) -> int:
        value = proposal["value"]
        number = _whole(value)
        if number is None or number < 0:
            raise TraitError(
                f"{self.setting_name('chat_memory')} must be a whole number of exchanges, 0 or more (0 remembers "
                f"nothing); not {value!r}."
            )
        return number

    @validate("updates_per_second")
    def _check_updates_per_second(self, proposal: dict[str, Any]) -> float:
        value = proposal["value"]
        number = _real(value)
        if number is None or not 0 < number < math.inf:
            raise TraitError(
                f"{self.setting_name('updates_per_second')} must be a number of repaints a second above 0 (10 is the "
                f"default); not {value!r}."
            )
        return number

    @validate("default_format")
    def _check_default_format(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if value not in FORMATS:
            raise TraitError(
                f"{self.setting_name('default_format')} must be one of {', '.join(FORMATS)}; not {value!r}."
            )
        return str(value)

    @validate("endpoints")
    def _check_endpoints(self, proposal: dict[str, Any]) -> Any:
        from lm_notebook.magics.endpoints import checked_endpoints

        try:
            return checked_endpoints(proposal["value"], self.setting_name("endpoints"))
        except (ValueError, TypeError) as err:
            raise TraitError(str(err)) from None

    @validate("system")
    def _check_system(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if value is None:
            return ""
        if not isinstance(value, str):
            raise TraitError(
                f"{self.setting_name('system')} must be the system prompt as a string ('' for none); not {value!r}."
            )
        return value

    def describe(self, client: LMStudioClient, *, remembered: int, server: str) -> dict[str, Any]:
        """What ``%lm_config`` shows: the server and who it is, the current model, and the defaults ``%%lm`` uses."""
        rows = [
            ("base_url", client.base_url),
            ("server", server),
            ("current model", client.current_model or "(none: %lm_use MODEL)"),
            ("api token", "set" if client.has_api_key else "not set"),
            ("temperature", "model default" if self.temperature is None else str(self.temperature)),
            ("max_tokens", "no limit" if self.max_tokens in (None, NO_LIMIT) else str(self.max_tokens)),
            ("system", self.system or "(none)"),
            ("default_format", self.default_format),
            ("timeout", f"{client.timeout.read:g} s" if client.timeout.read is not None else "none (waits for ever)"),
            ("chat_memory", f"{self.chat_memory} exchanges ({remembered} remembered)"),
        ]
        return settings_bundle(rows)


def settings_bundle(rows: list[tuple[str, str]]) -> dict[str, Any]:
    """Rows of (name, value) as aligned text and as an HTML table."""
    width = max(len(k) for k, _ in rows)
    plain = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return {"text/plain": plain, "text/html": f"<table>{cells}</table>"}
