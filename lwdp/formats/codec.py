"""Column values as text cells and back, exactly, for the formats whose files have no dtypes.

pandas' csv, xml and excel readers guess each cell's type ("007" becomes 7, "NA" missing,
2**53 + 1 a float), and its json writer rounds floats and nanoseconds. So csv, json, xml
and excel files hold what this module writes: each value as text in a form that keeps
every bit (shortest exact floats, ISO 8601 datetimes with every digit, tz-aware ones in
UTC), or as a native value where the file keeps it exactly (json integers, excel numbers
of 15 digits). The reader takes the cells back as they are and decodes them by the dtype
recorded at write time, so nothing depends on a reader's guesses.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

# The Python values an object column may hold in a text format, by ``infer_dtype`` kind:
# (to text, from text). Integers and floats share one: an integer's text has no "." or "e".
_NUMBER: tuple[Callable[[Any], str], Callable[[str], Any]] = (
    lambda v: repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v)),
    lambda s: int(s) if s.lstrip("-").isdigit() else float(s),
)
OBJECT_CODECS: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    "string": (str, str),
    "empty": (str, str),
    "integer": _NUMBER,
    "floating": _NUMBER,
    "mixed-integer-float": _NUMBER,
    "boolean": (str, lambda s: s == "True"),
    "date": (dt.date.isoformat, dt.date.fromisoformat),
    "decimal": (str, decimal.Decimal),
    "datetime": (dt.datetime.isoformat, dt.datetime.fromisoformat),
}
# What an object column's missing values were, when not None: NaN (which compares equal to
# None, but makes an index of floats "floating"), NaT or NA.
MISSING_MARKERS: dict[str, Any] = {"NaN": np.nan, "NaT": pd.NaT, "NA": pd.NA}


def object_kind(values: pd.Series | pd.Index) -> str:
    return str(pd.api.types.infer_dtype(values, skipna=True))


_FAMILIES = {"M": "datetime", "m": "timedelta", "f": "float", "i": "int", "u": "int", "b": "bool", "O": "object"}
_NULLABLE = {f"{sign}Int{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64)} | {"Float32", "Float64", "boolean"}


def family(dtype: Any) -> str:
    """How values of ``dtype`` are written: category, datetime, timedelta, float, int, bool,
    text, object, or other (which no text format stores)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.StringDtype):
        return "text"
    if isinstance(dtype, (np.dtype, pd.DatetimeTZDtype)) or str(dtype) in _NULLABLE:
        return _FAMILIES.get(dtype.kind, "other")
    return "other"


def missing_marker(values: pd.Series | pd.Index) -> str | None:
    """The name of the marker (NaN, NaT, NA) every missing value of an object column is, if
    not None; "mixed" if they differ (None and NaN are None)."""
    objects = np.asarray(values, dtype=object)
    markers = {None if v is None else next((k for k, m in MISSING_MARKERS.items() if v is m), "NaN")
               for v in objects[pd.isna(objects)]}
    if markers == {None, "NaN"}:
        return None
    return "mixed" if len(markers) > 1 else next(iter(markers), None)


def to_cells(values: pd.Series, kind: str | None) -> np.ndarray:
    """Each value as text, None where missing. ``kind``: an object column's object kind."""
    cells = _text(values, kind)
    cells[values.isna().to_numpy()] = None
    return cells


def category_texts(categories: pd.Index) -> np.ndarray:
    """The text of each category (a categorical is written as its values' texts)."""
    values = pd.Series(categories)
    return _text(values, object_kind(values) if values.dtype == object else None)


def _text(values: pd.Series, kind: str | None) -> np.ndarray:
    """Every value as text, in a new object array (what missing values become is left to the
    caller)."""
    kind_of = family(values.dtype)
    if kind_of == "category":
        texts = np.append(category_texts(values.cat.categories), np.array([None], dtype=object))
        return texts[values.cat.codes.to_numpy()]  # code -1, missing, takes the None
    if kind_of == "datetime":
        tz = getattr(values.dtype, "tz", None)
        utc = values.dt.tz_convert("UTC").dt.tz_localize(None) if tz is not None else values
        text = np.datetime_as_string(np.asarray(utc), unit=values.dt.unit).astype(object)
        return text + "Z" if tz is not None else text
    if kind_of == "float":
        return np.array([repr(v) for v in values.to_numpy(dtype="float64", na_value=np.nan).tolist()], dtype=object)
    if kind_of == "object":
        encode = OBJECT_CODECS[kind or object_kind(values)][0]
        return np.array([None if pd.isna(v) else encode(v) for v in values.tolist()], dtype=object)
    if kind_of in ("int", "bool", "timedelta", "text"):
        return values.astype(str).to_numpy(dtype=object)
    raise TypeError(f"no text form for dtype {values.dtype}")


def from_cells(cells: pd.Series, dtype: Any, kind: str | None, marker: str | None) -> pd.Series:
    """The values ``to_cells`` wrote, from text, native values and missing cells."""
    missing = cells.isna().to_numpy()
    raw = cells.to_numpy(dtype=object, copy=True)
    raw[missing] = None
    kind_of = family(dtype)
    if kind_of == "category":
        lookup = {text: code for code, text in enumerate(category_texts(dtype.categories).tolist())}
        codes = [-1 if c is None else lookup[str(c)] for c in raw.tolist()]  # str(): Stata's labels
        return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype))
    if kind_of == "datetime":
        tz = getattr(dtype, "tz", None)
        if tz is not None:
            raw = np.array([None if c is None else c.removesuffix("Z") for c in raw.tolist()], dtype=object)
        naive = pd.Series(np.array(raw, dtype=f"datetime64[{np.datetime_data(dtype.base)[0]}]"))
        return naive.dt.tz_localize("UTC").dt.tz_convert(tz) if tz is not None else naive
    if kind_of == "timedelta":
        return pd.Series(pd.to_timedelta(pd.Series(raw, dtype=object))).astype(dtype)
    if kind_of == "object":
        decode = OBJECT_CODECS[kind or "string"][1]
        filler = MISSING_MARKERS.get(marker or "")
        return pd.Series([filler if c is None else decode(c) for c in raw.tolist()], dtype=object)
    if kind_of == "text":
        return pd.Series(raw, dtype=object).astype(dtype)
    return _numbers(raw, missing, dtype, kind_of)


def _numbers(raw: np.ndarray, missing: np.ndarray, dtype: Any, kind_of: str) -> pd.Series:
    """Floats, integers and bools, nullable or not, from text or native cells."""
    numpy_dtype: Any = getattr(dtype, "numpy_dtype", dtype)
    if kind_of == "bool":
        values = pd.Series(np.array([str(c) == "True" for c in raw.tolist()], dtype=bool))
    else:
        raw[missing] = "nan" if kind_of == "float" else 0
        values = pd.Series(raw, dtype=object).astype("float64" if kind_of == "float" else numpy_dtype)
    values = values.astype(numpy_dtype)
    return values.astype(dtype).mask(missing) if str(dtype) in _NULLABLE else values


def restore_missing(values: pd.Series, marker: str | None) -> pd.Series:
    """An object column's missing values as the marker they were (None unless recorded)."""
    if values.dtype != object:  # before isna(): a warm run reads millions of such cells
        return values
    missing = values.isna().to_numpy()
    if not missing.any():
        return values
    filled = values.to_numpy(dtype=object, copy=True)
    filled[missing] = MISSING_MARKERS.get(marker or "")
    return pd.Series(filled, index=values.index, name=values.name, dtype=object)
