"""Stable digests of stage parameters, dispatched on type.

The encoding is a tag byte plus a length-prefixed payload, so values of different types
(``1`` and ``True`` and ``"1"``) never collide and nothing depends on ``PYTHONHASHSEED``.
An unsupported type is a TypeError: a silent ``repr`` fallback would make hashes unstable.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import fractions
import math
import pathlib
import struct
import sys
from functools import singledispatch
from typing import Any

import xxhash


def param_digest(value: Any) -> str:
    """XXH3-128 hex digest of a parameter value.

    :raises TypeError: the value (or something inside it) has no stable encoding.
    """
    if not _numpy_known and "numpy" in sys.modules:
        _know_numpy()
    return xxhash.xxh3_128_hexdigest(encode_param(value))


_numpy_known = False


def _know_numpy() -> None:
    """Encode NumPy scalars as themselves (np.float64 is a float too: its own encoding
    keeps its dtype), registered once NumPy is imported, as no value can be one before;
    so hashing parameters never imports NumPy."""
    global _numpy_known

    @encode_param.register(sys.modules["numpy"].generic)
    def _(value: Any) -> bytes:
        return _frame(b"n", str(value.dtype).encode() + b"\0" + encode_param(value.item()))

    _numpy_known = True


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<Q", len(payload)) + payload


@singledispatch
def encode_param(value: Any) -> bytes:
    """Canonical bytes of a parameter value."""
    raise TypeError(
        f"{type(value).__module__}.{type(value).__qualname__} value {value!r:.80} cannot be "
        "hashed stably; use numbers, strings, bools, None, dates, enums, or lists/tuples/"
        "sets/dicts of those"
    )


@encode_param.register(type(None))
def _(value: None) -> bytes:
    return _frame(b"N", b"")


@encode_param.register(bool)
def _(value: bool) -> bytes:
    return _frame(b"b", b"1" if value else b"0")


@encode_param.register(int)
def _(value: int) -> bytes:
    return _frame(b"i", str(value).encode())


@encode_param.register(float)
def _(value: float) -> bytes:
    return _frame(b"f", (value.hex() if math.isfinite(value) else repr(value)).encode())


@encode_param.register(complex)
def _(value: complex) -> bytes:
    return _frame(b"c", encode_param(value.real) + encode_param(value.imag))


@encode_param.register(str)
def _(value: str) -> bytes:
    return _frame(b"s", value.encode("utf-8", "surrogatepass"))


@encode_param.register(bytes)
def _(value: bytes) -> bytes:
    return _frame(b"y", value)


@encode_param.register(decimal.Decimal)
def _(value: decimal.Decimal) -> bytes:
    return _frame(b"d", str(value).encode())


@encode_param.register(fractions.Fraction)
def _(value: fractions.Fraction) -> bytes:
    return _frame(b"q", f"{value.numerator}/{value.denominator}".encode())


@encode_param.register(dt.date)
def _(value: dt.date) -> bytes:
    # datetime is a date subclass; isoformat keeps microseconds and the UTC offset,
    # and pandas.Timestamp's keeps nanoseconds.
    return _frame(b"D" if isinstance(value, dt.datetime) else b"a", value.isoformat().encode())


@encode_param.register(dt.time)
def _(value: dt.time) -> bytes:
    return _frame(b"t", value.isoformat().encode())


@encode_param.register(dt.timedelta)
def _(value: dt.timedelta) -> bytes:
    return _frame(b"T", f"{value.days},{value.seconds},{value.microseconds}".encode())


@encode_param.register(pathlib.PurePath)
def _(value: pathlib.PurePath) -> bytes:
    return _frame(b"p", value.as_posix().encode())


@encode_param.register(enum.Enum)
def _(value: enum.Enum) -> bytes:
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}.{value.name}".encode()
    return _frame(b"e", name + encode_param(value.value))


@encode_param.register(list)
def _(value: list[Any]) -> bytes:
    return _frame(b"l", b"".join(encode_param(item) for item in value))


@encode_param.register(tuple)
def _(value: tuple[Any, ...]) -> bytes:
    return _frame(b"u", b"".join(encode_param(item) for item in value))


@encode_param.register(set)
@encode_param.register(frozenset)
def _(value: set[Any] | frozenset[Any]) -> bytes:
    return _frame(b"S", b"".join(sorted(encode_param(item) for item in value)))


@encode_param.register(dict)
def _(value: dict[Any, Any]) -> bytes:
    items = sorted(encode_param(k) + encode_param(v) for k, v in value.items())
    return _frame(b"M", b"".join(items))
