"""What a cache format does, whichever library does it: write a result to a path, read it
back from bytes, and say beforehand why it would not give a result back unchanged."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

# What a file loses (dtypes, the index, labels) and its reader needs: JSON, kept in the
# catalog beside the artifact.
ReadOptions = dict[str, Any]


class Columns(NamedTuple):
    """How a frame format keeps a column once: a result column that is exactly an upstream
    result's column is left out of the result's file and read from the file holding it
    (`lwdp.store.shared_columns`)."""

    names: Callable[[Any], "list[str] | None"]  # the frame's columns in order; None: it shares none
    nbytes: Callable[[Any, str], int]  # a column's size in memory
    same: Callable[[Any, str, Any, str], bool]  # the same dtype and the same values, bit for bit
    without: Callable[[Any, list[str]], Any]  # the frame less these columns
    combine: Callable[[Any, list[str], "dict[str, tuple[Any, str]]"], Any]  # (own frame, order, {name: (frame, its name there)})


class Handler(NamedTuple):
    write: Callable[[Any, str], ReadOptions]
    read: Callable[[io.BytesIO, ReadOptions], Any]
    refuses: Callable[[Any], "str | None"]  # why the format would change the result; None: it would not
    columns: Columns | None = None  # frame formats whose columns can be kept once


def missing_text(held: Callable[[str], bool]) -> str:
    r"""The text a text file writes for a missing value: \N, or \N1, \N2, ... where a cell
    holds that text (``held``), so no cell reads back as missing."""
    return next(text for text in ("\\N" + (str(n) if n else "") for n in itertools.count()) if not held(text))
