"""Helpers for the public API's shape: the deprecation path for arguments that became keyword-only."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ArgumentTypeError, InstructfastDeprecationWarning

F = TypeVar("F", bound=Callable[..., Any])


def keyword_only(*names: str) -> Callable[[F], F]:
    """Accept ``names`` positionally after the first parameter (``data``/``self, schema``), with a warning.

    The wrapped function's signature keeps them keyword-only (what ``help()`` and type checkers see);
    calls written before they became keyword-only still work for now and get one
    :class:`~instructfast.errors.InstructfastDeprecationWarning` naming the keywords to use.
    """

    def wrap(fn: F) -> F:
        params = list(inspect.signature(fn).parameters)
        leading = params.index(names[0]) if names else len(params)
        # parameters before the keyword-only marker (data; or self, schema)
        fixed = [
            p
            for p in params[:leading]
            if inspect.signature(fn).parameters[p].kind is not inspect.Parameter.KEYWORD_ONLY
        ]

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if len(args) > len(fixed):
                extra = args[len(fixed) :]
                if len(extra) > len(names):
                    msg = f"{fn.__qualname__}() takes {len(fixed)} positional arguments, got {len(args)}"
                    raise ArgumentTypeError(msg)
                given = names[: len(extra)]
                dup = [n for n in given if n in kwargs]
                if dup:
                    msg = f"{fn.__qualname__}() got `{dup[0]}` both positionally and as a keyword"
                    raise ArgumentTypeError(msg)
                warnings.warn(
                    f"passing {', '.join(f'`{n}`' for n in given)} to {fn.__qualname__}() positionally is deprecated; "
                    f"pass {', '.join(f'{n}=...' for n in given)}",
                    InstructfastDeprecationWarning,
                    stacklevel=2,
                )
                kwargs.update(zip(given, extra, strict=True))
                args = args[: len(fixed)]
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


__all__ = ["keyword_only"]
