"""CORS as LM Studio does it: off by default; a development setting; or a list of allowed origins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True)
class CorsPolicy:
    """Which browser origins may call the server.

    ``origins=("*",)`` is the integration guide's development setting; a list of origins echoes back only those
    (an origin not on the list gets no CORS headers at all, so the browser blocks it). LM Studio itself answers
    ``Access-Control-Allow-Headers: *``: pass ``allow_headers=("*",)`` to copy it exactly.
    """

    origins: tuple[str, ...] = ("*",)
    allow_methods: tuple[str, ...] = ("GET", "POST", "OPTIONS")
    allow_headers: tuple[str, ...] = ("Content-Type", "Accept")

    @classmethod
    def from_setting(cls, setting: CorsSetting) -> CorsPolicy | None:
        """``False``/``None`` → off; ``True``/``"*"`` → development; a list → those origins."""
        if setting is None or setting is False:
            return None
        if isinstance(setting, CorsPolicy):
            return setting
        if setting is True:
            return cls()
        if isinstance(setting, str):
            return cls(origins=(setting,))
        return cls(origins=tuple(setting))

    def headers_for(self, origin: str | None, *, preflight: bool) -> list[tuple[str, str]]:
        """The CORS headers for a request from ``origin`` (none when the origin is not allowed)."""
        if "*" in self.origins:
            allowed = "*"
        elif origin is not None and origin in self.origins:
            allowed = origin
        else:
            return []
        headers = [("Access-Control-Allow-Origin", allowed)]
        if allowed != "*":
            headers.append(("Vary", "Origin"))  # the answer depends on the origin: caches must not share it
        if preflight:
            headers.append(("Access-Control-Allow-Methods", ", ".join(self.allow_methods)))
            headers.append(("Access-Control-Allow-Headers", ", ".join(self.allow_headers)))
            headers.append(("Access-Control-Max-Age", "600"))
        return headers


CorsSetting: TypeAlias = "bool | str | Sequence[str] | CorsPolicy | None"
