"""Arrow string arrays built by hand through the C data interface, bypassing pyarrow's validation.

pyarrow validates the arrays it builds; a producer on the other side of the C data interface need
not. These helpers lay out ``ArrowSchema`` / ``ArrowArray`` structs with ctypes over buffers we
choose (negative or decreasing offsets, views past their buffers, missing bitmaps...) and wrap them
in the PyCapsules ``instructfast._core`` takes, so the native core's own checks are what is tested.
The tests and the fuzz harness (``tests/fuzz/harness.py``) share them.
"""

from __future__ import annotations

import collections
import ctypes
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class ArrowSchema(ctypes.Structure):
    pass


ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowSchema))),
    ("dictionary", ctypes.POINTER(ArrowSchema)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class ArrowArray(ctypes.Structure):
    pass


ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray))),
    ("dictionary", ctypes.POINTER(ArrowArray)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

# A release callback that does nothing: the memory belongs to the HandBuilt object below.
_RELEASE_SCHEMA = ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowSchema))(lambda s: None)
_RELEASE_ARRAY = ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArray))(lambda a: None)
_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]

FORMATS = {"string": b"u", "large_string": b"U", "string_view": b"vu"}
# The capsules do not own the structs: the last arrays laid out stay alive here, so a call such as
# core.text_stats(*offsets_array(...).capsules()) reads live memory although the array is a temporary.
_ALIVE: collections.deque = collections.deque(maxlen=64)


@dataclass
class HandBuilt:
    """An Arrow array laid out by hand; ``capsules()`` gives (schema, array) for ``_core`` functions.

    ``buffers`` are bytes (or None for a null pointer), in C data interface order: validity, then
    offsets and data (utf8 / large_utf8), or views, the variadic data buffers and their int64 sizes
    (utf8_view). Everything stays alive as long as this object.
    """

    format: bytes
    length: int
    buffers: Sequence[bytes | None]
    offset: int = 0
    null_count: int = 0
    released: bool = False
    _keep: list = field(default_factory=list, repr=False)

    def capsules(self) -> tuple[object, object]:
        schema = ArrowSchema()
        schema.format = self.format
        schema.name = b""
        schema.release = None if self.released else ctypes.cast(_RELEASE_SCHEMA, ctypes.c_void_p).value
        array = ArrowArray()
        array.length, array.offset, array.null_count = self.length, self.offset, self.null_count
        array.n_buffers = len(self.buffers)
        ptrs = (ctypes.c_void_p * max(len(self.buffers), 1))()
        for i, b in enumerate(self.buffers):
            if b is not None:
                # ctypes.create_string_buffer copies into memory the struct can point at (bytes are immutable
                # Python objects; the copy is sized exactly, so a read past it is a real overflow)
                buf = ctypes.create_string_buffer(b, len(b)) if b else ctypes.create_string_buffer(1)
                self._keep.append(buf)
                ptrs[i] = ctypes.cast(buf, ctypes.c_void_p).value
        array.buffers = ptrs
        array.release = None if self.released else ctypes.cast(_RELEASE_ARRAY, ctypes.c_void_p).value
        self._keep += [schema, array, ptrs]
        _ALIVE.append(self)
        return (
            _capsule_new(ctypes.addressof(schema), b"arrow_schema", None),
            _capsule_new(ctypes.addressof(array), b"arrow_array", None),
        )


def validity(bits: Sequence[bool]) -> bytes:
    """An Arrow validity bitmap (LSB first)."""
    return np.packbits(np.asarray(bits, dtype=bool), bitorder="little").tobytes()


def offsets_array(kind: str, values: Sequence[bytes], offsets: Sequence[int] | None = None) -> HandBuilt:
    """A utf8 / large_utf8 array of ``values``; ``offsets`` replaces the true offsets (malformed on purpose)."""
    data = b"".join(values)
    if offsets is None:
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).tolist()
    dtype = "<i4" if kind == "string" else "<i8"
    return HandBuilt(FORMATS[kind], len(offsets) - 1, [None, np.asarray(offsets, dtype=dtype).tobytes(), data])


def view(length: int, *, inline: bytes = b"", buffer: int = 0, offset: int = 0, prefix: bytes = b"") -> bytes:
    """One 16-byte utf8_view entry: inline bytes (length <= 12) or (buffer index, offset)."""
    if length <= 12 and not prefix:
        return struct.pack("<i", length) + inline.ljust(12, b"\0")[:12]
    return struct.pack("<i4sii", length, prefix.ljust(4, b"\0")[:4], buffer, offset)


def views_array(views: Sequence[bytes], data: Sequence[bytes], sizes: Sequence[int] | None = None) -> HandBuilt:
    """A utf8_view array of 16-byte ``views`` over the data buffers ``data`` (``sizes`` as declared)."""
    sizes = [len(d) for d in data] if sizes is None else sizes
    return HandBuilt(
        FORMATS["string_view"],
        len(views),
        [None, b"".join(views), *data, np.asarray(sizes, dtype="<i8").tobytes()],
    )


__all__ = ["FORMATS", "HandBuilt", "offsets_array", "validity", "view", "views_array"]
