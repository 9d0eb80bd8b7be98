"""The one private door to compiled code.

``INSTRUCTFAST_IMPL`` picks the implementation of the native-backed functions:
``native`` (the pybind11 extension ``instructfast._core``; raises if it cannot load),
``python`` (the pure-Python twins, e.g. ``ops/textstats_py.py``), or unset/``auto``
(native when importable, otherwise Python with an :class:`ImplementationFallbackWarning`
and the reason in :data:`IMPL_REASON`).
"""

from __future__ import annotations

import importlib
import os
import unicodedata
import warnings

from .errors import ArgumentError, ImplementationFallbackWarning, MissingDependencyError

IMPL_ENV = "INSTRUCTFAST_IMPL"
_CHOICES = ("auto", "native", "python")


def _load():
    choice = os.environ.get(IMPL_ENV, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        msg = f"`{IMPL_ENV}` must be one of {_CHOICES}, got {choice!r}"
        raise ArgumentError(msg)
    if choice == "python":
        return None, f"python (forced by {IMPL_ENV}=python)"
    try:
        # by name: the extension is a built file, not a source module the import graph can follow
        _core = importlib.import_module(f"{__package__}._core")
    except ImportError as exc:
        if choice == "native":
            msg = (
                f"{IMPL_ENV}=native but the compiled extension instructfast._core failed to import: {exc}. "
                "Reinstall with `pip install --force-reinstall --no-deps .` from a source checkout."
            )
            raise MissingDependencyError(msg) from exc
        reason = f"python (native extension unavailable: {exc})"
        warnings.warn(reason, ImplementationFallbackWarning, stacklevel=3)
        return None, reason
    if getattr(_core, "UNICODE_VERSION", None) != unicodedata.unidata_version:
        # Tables are generated from the building interpreter; a mismatch means the
        # tokenizer would differ from this interpreter's str.lower()/str.split().
        reason = (
            f"python (native Unicode tables are {_core.UNICODE_VERSION}, this interpreter has "
            f"{unicodedata.unidata_version})"
        )
        if choice == "native":
            raise MissingDependencyError(reason + "; rebuild the extension with this interpreter")
        warnings.warn(reason, ImplementationFallbackWarning, stacklevel=3)
        return None, reason
    return _core, "native"


core, IMPL_REASON = _load()
IMPL = "native" if core is not None else "python"

__all__ = ["core", "IMPL", "IMPL_REASON", "IMPL_ENV"]
