# Type stub of the compiled extension (csrc/bindings.cpp); only instructfast._native imports it.
# tests/test_public_api.py checks that it names exactly what the built module exports.
from typing import Any

import numpy as np

__version__: str
UNICODE_VERSION: str

def text_stats(
    schema_capsule: object,
    array_capsule: object,
    *,
    threshold: float = 0.72,
    threads: int = 0,
    mtld: bool = True,
) -> dict[str, np.ndarray[Any, Any]]:
    """Per-row word counts, TTR, MTLD and lengths of an Arrow string array given as PyCapsules.

    Also ``utf8_error``: the byte offset of each row's first invalid UTF-8 sequence (-1: valid or null).
    Raises instructfast.ArrowDataError for a malformed array.
    """

def utf8_check(schema_capsule: object, array_capsule: object, *, threads: int = 0) -> np.ndarray[Any, Any]:
    """Byte offset of the first invalid UTF-8 sequence of each element of an Arrow string array (-1: valid or null)."""

def json_string(data: bytes, start: int) -> tuple[bytes, int]:
    """(value, end) of the JSON string literal at data[start]: escapes decoded, lone surrogates as their 3 bytes."""

def utf8_replace(data: bytes) -> bytes:
    """The bytes with each invalid UTF-8 sequence replaced by U+FFFD (an encoded surrogate counts as one)."""

def mtld(text: str, threshold: float = 0.72) -> float | None:
    """MTLD of one text exactly as lexicalrichness 0.5.1; None when it has no tokens."""

def tokenize(text: str) -> list[str]:
    """lexicalrichness 0.5.1 tokens of one text."""

def lower(text: str) -> str:
    """Python's str.lower() of the text, from the generated Unicode tables."""

def isspace(cp: int) -> bool:
    """str.isspace() of the code point cp."""
