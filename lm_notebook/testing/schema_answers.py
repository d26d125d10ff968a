"""The fake server's answers to ``response_format: json_schema``: JSON that satisfies the schema, made
deterministically from it (types, required fields, enums, consts, nested objects and arrays, ``$ref``/``$defs`` as
pydantic writes them, ``anyOf``/``oneOf``/``allOf``, bounds and lengths, common string formats), as a
grammar-constrained model's would. The ``break_schema`` fault asks for one that breaks it instead: the first
required field left out (or, when nothing is required, the first property of the wrong type).

No library writes instances from a schema deterministically and without extra dependencies (hypothesis-jsonschema
draws random ones), so this is by hand; what it makes is checked with ``jsonschema`` in the tests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from lm_notebook.testing import replies

_MAX_DEPTH = 6
_FORMATS = {
    "date": "2024-05-17",
    "date-time": "2024-05-17T09:30:00Z",
    "time": "09:30:00",
    "email": "ada@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "ipv4": "192.168.1.20",
}


def json_answer(schema: Mapping[str, Any], model: str, messages: Sequence[Mapping[str, Any]], seed: Any, *,
                broken: bool = False) -> str:
    """The answer's text: JSON satisfying ``schema`` (or, ``broken``, JSON that does not)."""
    rng = replies._rng("json", model, list(messages), seed)
    value = _Maker(schema, rng, replies._topic(messages)).value(schema, "answer", 0)
    if broken:
        value = _broken(_Maker(schema, rng, "").resolved(schema), value)
    return json.dumps(value, ensure_ascii=False)


class _Maker:
    def __init__(self, root: Mapping[str, Any], rng: random.Random, hint: str) -> None:
        self._root = root
        self._rng = rng
        self._hint = hint

    def resolved(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """``schema`` with a local ``$ref`` followed and an ``allOf`` merged."""
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < 20:
            target: Any = self._root
            for key in schema["$ref"].lstrip("#/").split("/"):
                target = target.get(key, {}) if isinstance(target, Mapping) else {}
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolved(part) if isinstance(part, Mapping) else {}
                props = {**merged.get("properties", {}), **part.get("properties", {})}
                required = [*merged.get("required", []), *part.get("required", [])]
                merged = {**part, **merged, "properties": props, "required": required}
            schema = merged
        return schema

    def value(self, schema: Any, name: str, depth: int) -> Any:
        if not isinstance(schema, Mapping):
            return f"example {name}"
        schema = self.resolved(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            options = [o for o in schema.get(key) or [] if isinstance(o, Mapping)]
            if options:
                chosen = next((o for o in options if self.resolved(o).get("type") != "null"), options[0])
                return self.value(chosen, name, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind in ("integer", "number"):
            return self._number(schema, kind)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        if depth >= _MAX_DEPTH:
            props = {k: v for k, v in props.items() if k in (schema.get("required") or [])}
        return {key: self.value(sub, key, depth + 1) for key, sub in props.items()}

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 3)))
        count = min(max(2, low), high) if depth < _MAX_DEPTH else low
        raw_prefix = schema.get("prefixItems")
        prefix: list[Any] = raw_prefix if isinstance(raw_prefix, list) else []
        items = schema.get("items", {"type": "string"})
        return [self.value(prefix[i] if i < len(prefix) else items, name, depth + 1) for i in range(count)]

    def _number(self, schema: Mapping[str, Any], kind: str) -> int | float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        lo = float(low) if isinstance(low, (int, float)) else 1.0
        hi = float(high) if isinstance(high, (int, float)) else max(lo, 0) + 100.0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            lo += 1 if kind == "integer" else 0.01
        if "exclusiveMaximum" in schema and "maximum" not in schema:
            hi -= 1 if kind == "integer" else 0.01
        hi = max(hi, lo)
        if kind == "integer":
            return self._rng.randint(int(-(-lo // 1)), max(int(hi // 1), int(-(-lo // 1))))
        return round(self._rng.uniform(lo, hi), 2) if hi - lo > 0.02 else lo

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        text = _FORMATS.get(str(schema.get("format")), "") or self._hint or f"example {name}"
        low, high = schema.get("minLength"), schema.get("maxLength")
        if isinstance(low, int) and len(text) < low:
            text = (text + " " + "x" * low)[:max(low, len(text))]
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        return text


def _broken(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` made to break ``schema`` (a grammar-free model's typical slip)."""
    if not isinstance(value, dict) or not value:
        return {"unexpected": value} if not isinstance(value, dict) else "not an object"
    broken = dict(value)
    required = [k for k in schema.get("required") or [] if k in broken]
    if required:
        del broken[required[0]]
        return broken
    first = next(iter(broken))
    broken[first] = 12345 if isinstance(broken[first], str) else "not the right type"
    return broken
