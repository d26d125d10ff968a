"""Argument helpers shared by every magic family: typed doors to IPython's ``magic_arguments`` and one-line errors."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from IPython.core import magic_arguments as _magic_arguments

_RED, _RESET = "\x1b[0;31m", "\x1b[0m"

_F = TypeVar("_F", bound=Callable[..., Any])


class _Decorator(Protocol):
    def __call__(self, func: _F, /) -> _F: ...


# typed doors to IPython's untyped magic_arguments
def magic_arguments() -> _Decorator:
    return cast(_Decorator, _magic_arguments.magic_arguments())  # type: ignore[no-untyped-call]


def argument(*args: Any, **kwargs: Any) -> _Decorator:
    return cast(_Decorator, _magic_arguments.argument(*args, **kwargs))  # type: ignore[no-untyped-call]


def parse_argstring(magic: Callable[..., Any], line: str) -> argparse.Namespace:
    """Parse a magic's line; quotes around a value are removed (IPython's splitter keeps them).

    A line parsed before is not parsed again (argparse takes 0.1–0.2 ms for a ``%%lm`` line with a few options, on
    the way to the request); each call gets a Namespace of its own. A bad line is refused every time."""
    parsed = _parsed(magic, line)
    return argparse.Namespace(**{key: list(value) if repeated else value for key, value, repeated in parsed})


@functools.lru_cache(maxsize=256)
def _parsed(magic: Callable[..., Any], line: str) -> tuple[tuple[str, Any, bool], ...]:
    """(name, value, whether it is a list kept as a tuple) for each argument of the parsed line."""
    args = cast(argparse.Namespace, _magic_arguments.parse_argstring(magic, line))  # type: ignore[no-untyped-call]
    values: list[tuple[str, Any, bool]] = []
    for key, value in vars(args).items():
        if isinstance(value, list):  # a repeatable option (--check a --check b)
            values.append((key, tuple(_unquoted(v) if isinstance(v, str) else v for v in value), True))
        else:
            values.append((key, _unquoted(value) if isinstance(value, str) else value, False))
    return tuple(values)


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def one_line(err: BaseException, text: str) -> BaseException:
    """Make IPython show ``err`` as one line (it calls ``_render_traceback_`` when an exception has one)."""
    line = f"{_RED}{type(err).__name__}{_RESET}: {text}"
    setattr(err, "_render_traceback_", lambda: [line])  # noqa: B010 - an instance attribute, on purpose
    return err


def error_message(err: BaseException) -> str:
    return str(getattr(err, "message", None) or err)
