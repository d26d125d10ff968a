"""Fill ``{name}``-style references in a prompt from a namespace, leaving every other brace alone.

Only *references* are filled: a name, then any of ``.attr``, ``[0]``, ``[-1]``, ``['key']``, ``[1:3]``, optionally with
``!r`` / ``!s`` / ``!a`` and a format spec (``{price:.2f}``). Nothing is called, so filling has no side effects.
Braces whose content names nothing in the namespace — a JSON example, a set literal, ``{undefined}`` — stay exactly as
written; ``{{name}}`` gives a literal ``{name}``.

>>> fill("Summarize {doc[0]} as {\\"title\\": ...}", {"doc": ["text"]})
'Summarize text as {"title": ...}'
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

# innermost braces on one line; a doubled pair around them is the escape
_FIELD = re.compile(r"(\{?)\{([^{}\n]+)\}(\}?)")
_CONVERSION = re.compile(r"^(?P<expr>[^!:]+?)(?:!(?P<conv>[rsa]))?(?::(?P<spec>[^{}]*))?$")


class InterpolationError(ValueError):
    """A reference names a variable, but reading it failed (``{items[9]}`` on a short list)."""


class _Unresolved(Exception):
    """The field is not a reference to something in the namespace: leave it as written."""


def _resolve(node: ast.expr, namespace: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in namespace:
            raise _Unresolved
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise _Unresolved
        return getattr(_resolve(node.value, namespace), node.attr)
    if isinstance(node, ast.Subscript):
        return _resolve(node.value, namespace)[_index(node.slice)]
    raise _Unresolved


def _index(node: ast.expr) -> Any:
    if isinstance(node, ast.Slice):
        parts = [None if n is None else _index(n) for n in (node.lower, node.upper, node.step)]
        return slice(*parts)
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _Unresolved from None
    if not isinstance(value, (int, str, tuple)) or isinstance(value, bool):
        raise _Unresolved
    return value


def _reference(text: str) -> ast.expr:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise _Unresolved from None
    if not isinstance(tree.body, (ast.Name, ast.Attribute, ast.Subscript)):
        raise _Unresolved
    return tree.body


def _root_defined(node: ast.expr, namespace: Mapping[str, Any]) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id in namespace


def _fill_field(field: str, namespace: Mapping[str, Any]) -> str:
    """The text for one ``{field}``; raises ``_Unresolved`` to leave it as written."""
    conv: str | None = None
    spec = ""
    try:
        node = _reference(field)
    except _Unresolved:
        parts = _CONVERSION.match(field)
        if parts is None:
            raise
        node = _reference(parts.group("expr"))
        conv, spec = parts.group("conv"), parts.group("spec") or ""
    if not _root_defined(node, namespace):
        raise _Unresolved
    try:
        value = _resolve(node, namespace)
    except _Unresolved:
        raise
    except Exception as exc:
        raise InterpolationError(
            f"Could not fill {{{field}}} from your variables: {type(exc).__name__}: {exc}. Fix the reference, "
            "write {{...}} for literal braces, or use --no-interpolate."
        ) from exc
    if conv == "r":
        value = repr(value)
    elif conv == "a":
        value = ascii(value)
    elif conv == "s":
        value = str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        raise _Unresolved from None  # "{name: str}" in a schema example is not a format spec


def fill(text: str, namespace: Mapping[str, Any]) -> str:
    """``text`` with each reference to ``namespace`` replaced by its value (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        left, field, right = match.group(1), match.group(2), match.group(3)
        try:
            value = _fill_field(field, namespace)
        except _Unresolved:
            return match.group(0)
        if left and right:  # {{name}}: the escape for a literal {name}
            return "{" + field + "}"
        return left + value + right

    return _FIELD.sub(replace, text)


def references(text: str, namespace: Mapping[str, Any]) -> list[str]:
    """The fields of ``text`` that would be filled (for help and tests)."""
    found = []
    for match in _FIELD.finditer(text):
        try:
            _fill_field(match.group(2), namespace)
        except _Unresolved:
            continue
        found.append(match.group(2))
    return found
