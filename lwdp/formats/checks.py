"""Refusals: the frames a cache format would not give back unchanged.

Each check takes a DataFrame and returns why the format cannot store it, or None. Checks
never raise: ``Format.why_cannot_store`` runs them before anything is written, and lwdp
turns a reason into a ``ResultNotStorableError``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from .codec import OBJECT_CODECS, category_texts, family, missing_marker, object_kind

FrameCheck = Callable[[pd.DataFrame], "str | None"]
_EXACT_DOUBLE_INT = 2**53


def all_plain(values: pd.Index) -> bool:
    """Whether all ``values`` are strings, numbers or bools (which JSON read options keep)."""
    return all(isinstance(v, (str, int, float, bool)) for v in values.tolist())


def keyed_columns(df: pd.DataFrame, only: Callable[[Any], bool] | None = None) -> Iterator[tuple[str, str, pd.Series]]:
    """(key, where, values) of every index level, then every column: the key as read options
    name it ("i0", "c3"), where as messages do ("index level 0", "column 'qty'"). ``only``:
    of those whose dtype it accepts, tested before the values are taken (a check of object
    columns then costs nothing on a frame of numbers)."""
    for i in range(df.index.nlevels):
        level = df.index.get_level_values(i)
        if only is None or only(level.dtype):
            yield f"i{i}", f"index level {i}", pd.Series(level)
    for position, (label, dtype) in enumerate(zip(df.columns, df.dtypes)):
        if only is None or only(dtype):
            yield f"c{position}", f"column {label!r}", df.iloc[:, position]


def labelled_columns(df: pd.DataFrame, only: Callable[[Any], bool] | None = None) -> Iterator[tuple[str, pd.Series]]:
    """(where, values) of `keyed_columns`."""
    for _, where, values in keyed_columns(df, only):
        yield where, values


def is_object(dtype: Any) -> bool:
    return dtype == object


def is_categorical(dtype: Any) -> bool:
    return isinstance(dtype, pd.CategoricalDtype)


def has_default_index(df: pd.DataFrame) -> bool:
    idx = df.index
    return isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and idx.name is None


def has_columns(df: pd.DataFrame) -> str | None:
    """Arrow tables have no rows without columns: the row count would be lost."""
    return "the frame has no columns" if df.shape[1] == 0 else None


def has_columns_and_rows(df: pd.DataFrame) -> str | None:
    """pandas writes no XML for a frame without rows, and ORC keeps no columns without them."""
    return "the frame is empty (no columns or no rows)" if 0 in df.shape else None


def fits_sheet(df: pd.DataFrame) -> str | None:
    """An xlsx sheet has 1048576 rows (one is the header) and 16384 columns (one holds row
    numbers)."""
    if len(df) > 1_048_575 or df.index.nlevels + df.shape[1] > 16_383:
        return "it has more rows or columns than an xlsx sheet holds"
    return None


def plain_unique_labels(df: pd.DataFrame) -> str | None:
    """The formats that lose labels get them back from the read options, which hold each
    column's label as JSON (text and spreadsheet files have one header row of names)."""
    if df.shape[1] == 0:
        return "the frame has no columns"
    if not all_plain(df.columns):
        return "column labels must be strings or numbers (no MultiIndex columns)"
    if not df.columns.is_unique or len({str(c) for c in df.columns}) != df.shape[1]:
        return "column labels must be unique"
    return None


# What an object column may hold and still come back equal from parquet, feather and orc
# (lists, sets, tuples and dicts come back as arrays or merged structs).
_ARROW_SAFE_OBJECT_KINDS = frozenset(
    {"string", "empty", "bytes", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "date", "datetime"}
)


def only_arrow_safe_objects(df: pd.DataFrame) -> str | None:
    for where, values in labelled_columns(df, is_object):
        kind = object_kind(values)
        if kind not in _ARROW_SAFE_OBJECT_KINDS:
            return f"{where} holds Python objects ({kind}) that would not come back unchanged"
        if kind == "mixed-integer-float" and _beyond_doubles(values.dropna()):
            return f"{where} mixes floats with integers beyond 2**53, which it stores as doubles"
        if kind == "mixed-integer-float" and where.startswith("index"):
            return f"{where} mixes integers with floats, which it gives back as floats"
        if kind == "datetime" and any(getattr(v, "nanosecond", 0) for v in values.dropna().tolist()):
            return f"{where} holds Timestamp objects with nanoseconds, which it keeps in microseconds"
    return None


def arrow_index_levels(df: pd.DataFrame) -> str | None:
    """pyarrow rebuilds an index level of integers with missing values through floats: as
    floats if it was of objects, rounded beyond 2**53 if nullable."""
    if isinstance(df.index, pd.RangeIndex):  # no missing values; materializing it costs 40 ms per 2.5M rows
        return None
    for where, values in itertools.islice(labelled_columns(df), df.index.nlevels):
        if values.dtype == object and object_kind(values) == "integer" and values.isna().any():
            return f"{where} holds integers with missing values, which it gives back as floats"
        if pd.api.types.is_integer_dtype(values.dtype) and values.isna().any() and _beyond_doubles(values.dropna()):
            return f"{where} holds integers beyond 2**53 with missing values, which it rounds"
    return None


def plain_categories(df: pd.DataFrame) -> str | None:
    """Parquet gives back a categorical of datetimes (or other categories JSON cannot record
    for lwdp to restore) as its values."""
    for where, values in labelled_columns(df, is_categorical):
        if not all_plain(values.cat.categories):
            return f"{where} has categories other than strings, numbers or bools"
    return None


def arrow_labels(df: pd.DataFrame) -> str | None:
    """Arrow files keep labels of one dtype (or a MultiIndex); lwdp restores the others if
    they are strings, numbers and bools. Other mixes (dates, tuples) would come back as text."""
    columns = df.columns
    if columns.nlevels == 1 and columns.dtype == object and not all_plain(columns):
        return "column labels mix types other than strings, numbers and bools"
    return None


def index_names_apart(df: pd.DataFrame) -> str | None:
    """Arrow files keep index levels as fields named like them: one named like a column would
    be taken for it."""
    clash = {str(n) for n in df.index.names if n is not None} & {str(c) for c in df.columns}
    return f"an index level and a column are both named {sorted(clash)[0]!r}" if clash else None


def uniform_missing(df: pd.DataFrame) -> str | None:
    """An object column's missing values come back as one marker: None (or NaN), NaT or NA."""
    for where, values in labelled_columns(df, is_object):
        if missing_marker(values) == "mixed":
            return f"{where} mixes kinds of missing value (None or NaN, NaT, NA), which it gives back as one"
    return None


def fits_text(df: pd.DataFrame) -> str | None:
    """Every value has a text form that reads back as itself (see ``lwdp.formats.codec``)."""
    for where, values in labelled_columns(df):
        why = _why_no_text(values)
        if why is not None:
            return f"{where} {why}"
    return None


def _why_no_text(values: pd.Series) -> str | None:
    kind_of = family(values.dtype)
    if kind_of == "other":
        return f"has dtype {values.dtype}, which it does not store"
    if kind_of == "category":
        return _why_no_category_text(values.cat.categories)
    if kind_of != "object":
        return None
    kind = object_kind(values)
    if kind not in OBJECT_CODECS:
        return f"holds Python objects ({kind}) that it cannot write as text"
    encode, decode = OBJECT_CODECS[kind]
    for value in values.dropna().tolist():
        try:
            same = decode(encode(value)) == value
        except (TypeError, ValueError, ArithmeticError):
            same = False
        if not same:
            return f"holds {value!r}, which its text would not give back"
    return None


def _why_no_category_text(categories: pd.Index) -> str | None:
    """Categories are written as their text and recorded in the read options (JSON)."""
    if not all_plain(categories):
        return "has categories other than strings, numbers or bools"
    texts = category_texts(categories)
    return None if len(set(texts.tolist())) == len(texts) else "has categories that are alike as text"


def text_without(pattern: str, what: str) -> FrameCheck:
    """A check refusing text that matches ``pattern`` (characters the file cannot carry)."""
    search = re.compile(pattern).search

    def check(df: pd.DataFrame) -> str | None:
        for where, values in labelled_columns(df):
            for text in _texts(values):
                if search(text):
                    return f"{where} holds {text!r}: {what}"
        return None

    return check


def _texts(values: pd.Series) -> list[str]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = pd.Series(values.dtype.categories)
    if family(values.dtype) in ("text", "object"):
        return [v for v in values.dropna().tolist() if isinstance(v, str)]
    return []


def orc_types(df: pd.DataFrame) -> str | None:
    """ORC has no unsigned integers, durations or categoricals."""
    for where, values in labelled_columns(df):
        if getattr(values.dtype, "kind", None) in ("u", "m") or isinstance(values.dtype, pd.CategoricalDtype):
            return f"{where} has dtype {values.dtype}, which ORC does not store"
    return None


def stata_types(df: pd.DataFrame) -> str | None:
    """Stata has numbers, text, naive datetimes, and categoricals as numbers labelled with
    their categories' text."""
    for where, values in labelled_columns(df):
        kind_of = family(values.dtype)
        if kind_of == "object" and object_kind(values) not in ("string", "empty"):
            return f"{where} holds Python objects ({object_kind(values)}), which Stata does not store"
        if kind_of in ("timedelta", "other") or getattr(values.dtype, "tz", None) is not None:
            return f"{where} has dtype {values.dtype}, which Stata does not store"
        why = _why_no_category_text(values.cat.categories) if kind_of == "category" else None
        if why is not None:
            return f"{where} {why}"
    return None


def ints_fit_doubles(df: pd.DataFrame) -> str | None:
    """Stata keeps large integers as doubles: beyond 2**53 they would change."""
    for where, values in labelled_columns(df):
        if pd.api.types.is_integer_dtype(values.dtype) and _beyond_doubles(values.dropna()):
            return f"{where} has integers beyond 2**53, which it stores as doubles"
    return None


def _beyond_doubles(values: pd.Series) -> bool:
    """Whether integers among ``values`` (of an integer dtype, or objects) go beyond 2**53."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return bool(((values > _EXACT_DOUBLE_INT) | (values < -_EXACT_DOUBLE_INT)).any())
    return any(isinstance(v, (int, np.integer)) and abs(int(v)) > _EXACT_DOUBLE_INT for v in values.tolist())


def no_missing_text(df: pd.DataFrame) -> str | None:
    """Stata has no missing string: it would come back as ''."""
    for where, values in labelled_columns(df):
        if family(values.dtype) in ("text", "object") and object_kind(values) in ("string", "empty") and values.isna().any():
            return f"{where} is text with missing values, which it would give back as ''"
    return None


def whole_milliseconds(df: pd.DataFrame) -> str | None:
    """Stata keeps datetimes in milliseconds."""
    for where, values in labelled_columns(df):
        if family(values.dtype) == "datetime":
            present = values.dropna()
            if (present != present.dt.floor("ms")).any():
                return f"{where} has datetimes finer than milliseconds, which it would round"
    return None

