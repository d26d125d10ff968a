"""Argument helpers shared by every magic family: typed doors to IPython's ``magic_arguments`` and one-line errors."""

from __future__ import annotations

import argparse
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
    """Parse a magic's line; quotes around a value are removed (IPython's splitter keeps them)."""
    args = cast(argparse.Namespace, _magic_arguments.parse_argstring(magic, line))  # type: ignore[no-untyped-call]
    for key, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, key, _unquoted(value))
        elif isinstance(value, list):  # a repeatable option (--check a --check b)
            setattr(args, key, [_unquoted(v) if isinstance(v, str) else v for v in value])
    return args


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
