"""Fill ``{name}``-style references in a prompt from a namespace, leaving every other brace alone.

Only *references* are filled: a name, then any of ``.attr``, ``[0]``, ``[-1]``, ``['key']``, ``[1:3]``, optionally with
``!r`` / ``!s`` / ``!a`` and a format spec (``{price:.2f}``). Nothing of the user's is run: only values that are
stored are read — variables, attributes kept in an object's ``__dict__`` or slots (never a property, another
descriptor or ``__getattr__``), and items of built-in containers, pandas and numpy objects. Names that start with an
underscore and IPython's history (``In``, ``Out``) are never filled.

One rule for braces, the same in ``%%lm`` and ``compare``'s templates: braces whose content names nothing in the
namespace — a JSON example, a set literal, ``{undefined}`` — are sent exactly as written; doubled braces around a field
are the escape (``{{name}}`` gives ``{name}``), and ``{{{name}}}`` gives ``{`` + the value + ``}``.

>>> fill("Summarize {doc[0]} as {\\"title\\": ...}", {"doc": ["text"]})
'Summarize text as {"title": ...}'
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Collection, Mapping
from typing import Any

# an innermost field on one line, with the runs of braces around it (their count decides: odd fills, even escapes)
_FIELD = re.compile(r"(\{+)([^{}\n]+)(\}+)")
# IPython's own names in a kernel's namespace: the input/output history, never a user's value
IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit"})
# item access is read only from containers whose __getitem__ is not the user's code
_ITEM_MODULES = ("pandas", "numpy")
_CONVERSION = re.compile(r"^(?P<expr>[^!:]+?)(?:!(?P<conv>[rsa]))?(?::(?P<spec>[^{}]*))?$")


class InterpolationError(ValueError):
    """A reference names a variable, but reading it failed (``{items[9]}`` on a short list)."""


class _Unresolved(Exception):
    """The field is not a reference to something in the namespace: leave it as written."""


class _NotStored(Exception):
    """The reference would run code (a property, ``__getattr__``, a custom ``__getitem__``): refuse it clearly."""


def _fillable(name: str, hidden: Collection[str] | None) -> bool:
    if hidden is None:  # a kernel's namespace: IPython's names and every underscore name are not the user's values
        return not name.startswith("_") and name not in IPYTHON_NAMES
    return name not in hidden


def _stored_attribute(obj: Any, name: str) -> Any:
    """``obj.name`` only when it is a stored value; never runs a property, a descriptor or ``__getattr__``."""
    try:
        value = inspect.getattr_static(obj, name)
    except AttributeError:
        raise _NotStored(f"{type(obj).__name__} has no stored attribute {name!r}") from None
    if isinstance(obj, types.ModuleType) or not hasattr(type(value), "__get__"):
        return value  # a module's global, an instance's own value, or a plain class attribute
    # slots and namedtuple fields are C-level descriptors that only read a stored value
    if isinstance(value, types.MemberDescriptorType) or type(value).__name__ == "_tuplegetter":
        return value.__get__(obj, type(obj))
    kind = "property" if isinstance(value, property) else "method" if callable(value) else "computed attribute"
    raise _NotStored(f"{name!r} is a {kind} of {type(obj).__name__}, computed by code")


def _item(container: Any, key: Any) -> Any:
    kind = type(container)
    builtin = isinstance(container, (list, tuple, dict, str)) and kind.__getitem__ in (
        list.__getitem__, tuple.__getitem__, dict.__getitem__, str.__getitem__,
    )
    if not builtin and kind.__module__.split(".")[0] not in _ITEM_MODULES:
        raise _NotStored(f"items of a {kind.__name__} are computed by its own code")
    if isinstance(container, dict) and key not in container:
        # a missing key would run __missing__ (a defaultdict would insert it): report it as missing instead
        raise KeyError(key)
    return container[key]


def _resolve(node: ast.expr, namespace: Mapping[str, Any], hidden: Collection[str] | None) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in namespace or not _fillable(node.id, hidden):
            raise _Unresolved
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise _Unresolved
        return _stored_attribute(_resolve(node.value, namespace, hidden), node.attr)
    if isinstance(node, ast.Subscript):
        return _item(_resolve(node.value, namespace, hidden), _index(node.slice))
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


def _root_defined(node: ast.expr, namespace: Mapping[str, Any], hidden: Collection[str] | None) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id in namespace and _fillable(node.id, hidden)


def _fill_field(field: str, namespace: Mapping[str, Any], hidden: Collection[str] | None) -> str:
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
    if not _root_defined(node, namespace, hidden):
        raise _Unresolved
    try:
        value = _resolve(node, namespace, hidden)
    except _Unresolved:
        raise
    except _NotStored as exc:
        raise InterpolationError(
            f"Could not fill {{{field}}}: {exc}, and prompts only read stored values (nothing is called). Put the "
            "value in a variable first, write {{...}} for literal braces, or use --no-interpolate."
        ) from None
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


def fill(text: str, namespace: Mapping[str, Any], *, hidden: Collection[str] | None = None) -> str:
    """``text`` with each reference to ``namespace`` replaced by its value (see the module docstring).

    ``hidden``: names never filled; by default IPython's own (``In``, ``Out``, …) and every name that starts with an
    underscore (``_``, ``_i3``), as in a kernel's namespace. ``hidden=()`` fills every name (compare's columns).
    """

    def replace(match: re.Match[str]) -> str:
        left, field, right = match.groups()
        pair = min(len(left), len(right))  # braces that belong to this field; the rest are sent as written
        outer_left, outer_right = left[: len(left) - pair], right[pair:]
        half = pair // 2
        if pair % 2 == 0:  # {{name}}: the escape, a literal {name}
            return outer_left + "{" * half + field + "}" * half + outer_right
        try:
            value = _fill_field(field, namespace, hidden)
        except _Unresolved:
            return match.group(0)
        return outer_left + "{" * half + value + "}" * half + outer_right

    return _FIELD.sub(replace, text)


def fields(text: str) -> list[str]:
    """Every field of ``text`` that would be filled if its name were defined (escaped ones left out)."""
    return [m.group(2) for m in _FIELD.finditer(text) if min(len(m.group(1)), len(m.group(3))) % 2 == 1]


def references(text: str, namespace: Mapping[str, Any], *, hidden: Collection[str] | None = None) -> list[str]:
    """The fields of ``text`` that would be filled (for help and tests)."""
    found = []
    for field in fields(text):
        try:
            _fill_field(field, namespace, hidden)
        except _Unresolved:
            continue
        found.append(field)
    return found


def reference_name(field: str) -> str | None:
    """The variable a field starts from (``doc`` for ``doc[0].title:.2f``), or None when it is no reference."""
    try:
        node = _reference(field)
    except _Unresolved:
        parts = _CONVERSION.match(field)
        if parts is None:
            return None
        try:
            node = _reference(parts.group("expr"))
        except _Unresolved:
            return None
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None
