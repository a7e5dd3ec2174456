"""Durations and sizes as people write them ('7d', '1.5GiB') and as they read them."""

from __future__ import annotations

import datetime as dt
import re

from .errors import LwdpError


class UnitError(LwdpError, ValueError):
    """A duration or size that can't be understood."""


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_duration(value: int | float | str | dt.timedelta) -> dt.timedelta:
    """Seconds, a timedelta, or a string such as '90s', '30m', '12h', '7d', '2w'.

    :raises UnitError: anything else, or a negative duration.
    """
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    hint = "is not a duration: use seconds, a timedelta, or e.g. '90s', '30m', '12h', '7d', '2w'"
    return dt.timedelta(seconds=_amount("max_age", value, _DURATION_UNITS, hint))


def parse_size(value: int | float | str) -> int:
    """Bytes, or a string such as '500MB', '10GB', '1.5GiB' (KB = 1000 bytes, KiB = 1024).

    :raises UnitError: anything else, or a negative size.
    """
    hint = "is not a size: use bytes or e.g. '500MB', '10GB', '1.5GiB'"
    return int(_amount("max_size", value, _SIZE_UNITS, hint))


def _amount(what: str, value: object, units: dict[str, int], hint: str) -> float:
    """A plain number, or a number with one of ``units``, as a non-negative float."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = float(value)
    elif isinstance(value, str) and (match := _NUMBER_UNIT.fullmatch(value)) and match[2].lower() in units:
        amount = float(match[1]) * units[match[2].lower()]
    else:
        raise UnitError(f"{what} {value!r} {hint}")
    if amount < 0:
        raise UnitError(f"{what} {value!r} is negative")
    return amount


def human_size(size: int) -> str:
    """'512 B', '1.2 MB', '3.4 GB' (powers of 1000)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_age(delta: dt.timedelta) -> str:
    """'12s ago', '5m ago', '3h ago', '2d ago'."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"
