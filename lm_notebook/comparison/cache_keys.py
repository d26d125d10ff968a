"""The answer cache's keys: a hash of everything that decides an answer, made in bulk for a run's requests.

The key's text is the JSON of ``{"format", "messages", "model", "params", "quantization", "repeat", "v"}`` with sorted
keys (numbers as floats: ``0`` and ``0.0`` are one request), hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

# Bump when the stored record's shape changes: old entries then simply miss.
KEY_VERSION = 1


def _same_number(value: Any) -> Any:
    """0 and 0.0 (``-t 0`` in a magic, ``temperature=0.0`` in code) are one request: key numbers as floats."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


# one encoder for every key: json.dumps with options makes a new one per call (most of a short value's cost)
_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr).encode
_text = json.encoder.encode_basestring  # a str as the encoder writes it (ensure_ascii=False)
_KEY_END = f',"v":{KEY_VERSION}}}'  # the key's text after the repeat number
_Id = TypeVar("_Id", bound=Hashable)  # what names a request's messages (compare: its prompt's index)


def _messages_json(messages: Sequence[Mapping[str, Any]]) -> str:
    """``_json`` of the messages (byte for byte), laid out by hand when every message holds only text: the encoder's
    set-up was most of a short prompt's cost."""
    parts = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if type(role) is str and type(content) is str and len(message) == 2:  # the usual message: no loop, no sort
            parts.append(f'"content":{_text(content)},"role":{_text(role)}')
        elif all(type(k) is str and type(v) is str for k, v in message.items()):
            parts.append(",".join(f"{_text(k)}:{_text(message[k])}" for k in sorted(message)))
        else:
            return _json([dict(m) for m in messages])
    return "[{" + "},{".join(parts) + "}]" if parts else "[]"


class CacheKeys:
    """:func:`cache_key` for many requests with the same parameters: each distinct messages list (named by
    ``messages_id``) and each model's part are serialised once — a cached re-run of 1,000 rows makes 1,000 keys.

    The key's text is the JSON of ``{"format", "messages", "model", "params", "quantization", "repeat", "v"}`` with
    sorted keys, laid out piece by piece (the pieces are the same JSON), so keys made before still hit.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params = _json({k: _same_number(v) for k, v in sorted(params.items()) if v is not None})
        self._messages: dict[Hashable, str] = {}
        self._models: dict[tuple[str, str | None, str | None], tuple[str, str]] = {}

    def key(
        self, *, model: str, messages: Sequence[Mapping[str, Any]], messages_id: Hashable, repeat: int,
        quantization: str | None = None, format: str | None = None,
    ) -> str:
        return self.keys([(model, messages_id, repeat)], lambda _: messages, lambda _: (quantization, format))[0]

    def keys(
        self,
        requests: Iterable[tuple[str, _Id, int]],
        messages: Callable[[_Id], Sequence[Mapping[str, Any]]],
        listing: Callable[[str], tuple[str | None, str | None]],
    ) -> list[str]:
        """:meth:`key` of each ``(model, messages_id, repeat)`` in one loop (a cached re-run's 1,000 rows):
        ``messages(messages_id)`` is a request's messages, ``listing(model)`` its model's (quantization, format)."""
        sha256 = hashlib.sha256
        said_of = self._messages
        parts_of: dict[str, tuple[str, str]] = {}
        out = []
        for model, messages_id, repeat in requests:
            said = said_of.get(messages_id)
            if said is None:
                said = said_of[messages_id] = _messages_json(messages(messages_id))
            parts = parts_of.get(model)
            if parts is None:
                parts = parts_of[model] = self._parts(model, *listing(model))
            out.append(sha256(f"{parts[0]}{said}{parts[1]}{int(repeat)}{_KEY_END}".encode()).hexdigest())
        return out

    def _parts(self, model: str, quantization: str | None, format: str | None) -> tuple[str, str]:
        """The key's text before and after the messages, up to the repeat number."""
        parts = self._models.get((model, quantization, format))
        if parts is None:
            parts = self._models[(model, quantization, format)] = (
                f'{{"format":{_json(format)},"messages":',
                f',"model":{_json(model)},"params":{self._params},"quantization":{_json(quantization)},"repeat":',
            )
        return parts


def cache_key(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    repeat: int,
    quantization: str | None = None,
    format: str | None = None,
) -> str:
    """A stable hash of one request (``None`` parameters are left out, as they are not sent)."""
    return CacheKeys(params).key(
        model=model, messages=messages, messages_id=None, repeat=repeat, quantization=quantization, format=format
    )
