"""Formats for results that are not pandas objects, each written and read by its own
library, so nothing is pickled: polars DataFrames, Series and LazyFrames (parquet or
Arrow IPC, by polars), Arrow tables and record batches (parquet or IPC, by pyarrow), NumPy
arrays (``.npy``, never with pickled objects) and plain values of JSON types (JSON); and
pickle, for anything else.

Which kind a result is, is told by its type's module, so that checking a pandas result
imports none of these libraries; polars is imported only to read or write a polars
result.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import pickle
import re
import sys
from collections.abc import Iterator
from typing import Any

from .handler import Columns, Handler, ReadOptions, missing_text

POLARS_FRAME, POLARS_SERIES, POLARS_LAZY = "polars DataFrame", "polars Series", "polars LazyFrame"
ARROW_TABLE, ARROW_BATCH = "Arrow Table", "Arrow RecordBatch"
NUMPY_ARRAY, JSON_VALUE = "NumPy array", "JSON value"


def kind_of(result: Any) -> str | None:
    """Which of the kinds above ``result`` is (None: a pandas object, or anything else)."""
    module = type(result).__module__
    if module.startswith("polars"):
        polars = sys.modules["polars"]
        for kind, cls in ((POLARS_FRAME, polars.DataFrame), (POLARS_SERIES, polars.Series), (POLARS_LAZY, polars.LazyFrame)):
            if isinstance(result, cls):
                return kind
    elif module.startswith("pyarrow"):
        pyarrow = sys.modules["pyarrow"]
        if isinstance(result, pyarrow.Table):
            return ARROW_TABLE
        if isinstance(result, pyarrow.RecordBatch):
            return ARROW_BATCH
    elif module == "numpy" and type(result).__name__ == "ndarray":
        return NUMPY_ARRAY
    elif isinstance(result, (dict, list, str, int, float, bool, type(None))):
        return JSON_VALUE
    return None


def is_pandas(result: Any, name: str) -> bool:
    """Whether ``result`` is a ``pandas.<name>`` (a subclass too), told without importing
    pandas: only a process that has imported it holds one."""
    if not any(cls.__module__.startswith("pandas.") for cls in type(result).__mro__):
        return False
    return isinstance(result, getattr(sys.modules["pandas"], name))


def is_immutable(result: Any) -> bool:
    """Whether consumers may share ``result`` without a copy (polars and Arrow objects)."""
    return kind_of(result) in (POLARS_FRAME, POLARS_SERIES, POLARS_LAZY, ARROW_TABLE, ARROW_BATCH)


# -- polars ---------------------------------------------------------------------------------


def _as_frame(result: Any) -> tuple[Any, ReadOptions]:
    """A polars result as a DataFrame (a Series as a one-column frame, a LazyFrame
    collected), and the options that make it a Series again."""
    kind = kind_of(result)
    if kind == POLARS_SERIES:
        return result.to_frame(), {"series": True}
    return (result.collect() if kind == POLARS_LAZY else result), {}


def _as_returned(frame: Any, options: ReadOptions) -> Any:
    return frame.to_series() if options.get("series") else frame


def write_polars(writer: str, **settings: Any) -> Any:
    """A writer of a polars DataFrame, Series (as a one-column frame) or LazyFrame
    (collected) with ``DataFrame.write_<writer>``, LZ4-compressed unless ``settings`` say
    otherwise: on the polars DAG LZ4 writes in ~half zstd's time for 1.8x the bytes
    (benchmarks/RESULTS.md)."""

    def write(result: Any, path: str) -> ReadOptions:
        frame, options = _as_frame(result)
        getattr(frame, f"write_{writer}")(path, **{"compression": "lz4", **settings})
        return options

    return write


def read_polars(reader: str, lazy: bool = False) -> Any:
    """A reader with ``polars.read_<reader>`` (``polars.scan_<reader>`` for a LazyFrame:
    a consumer that selects or filters decodes only what it needs)."""

    def read(buf: io.BytesIO, options: ReadOptions) -> Any:
        import polars

        if lazy:
            return getattr(polars, f"scan_{reader}")(buf)
        return _as_returned(getattr(polars, f"read_{reader}")(buf), options)

    return read


def _polars_names(frame: Any) -> list[str] | None:
    return list(frame.columns) if kind_of(frame) == POLARS_FRAME else None


def _polars_same(frame: Any, name: str, other: Any, other_name: str) -> bool:
    """Exactly the same column: dtype and values, -0.0 told from 0.0 (``equals`` does not);
    a float column holding NaN is never the same (``equals`` cannot tell NaNs' bits apart).
    Only flat dtypes (no lists, structs, objects or categories)."""
    a, b = frame[name], other[other_name]
    dtype = a.dtype
    flat = dtype.is_numeric() or dtype.is_temporal() or dtype in (sys.modules["polars"].String, sys.modules["polars"].Boolean)
    if not flat or dtype != b.dtype or len(a) != len(b) or not a.equals(b, check_dtypes=True, null_equal=True):
        return False
    if not dtype.is_float():
        return True
    if a.is_nan().any():
        return False
    if not (zeros := a == 0).any():
        return True
    return bool((1 / a.filter(zeros)).equals(1 / b.filter(zeros)))  # ±inf: the zeros' signs


def _polars_combine(own: Any, order: list[str], shared: dict[str, tuple[Any, str]]) -> Any:
    polars = sys.modules["polars"]
    return polars.DataFrame([own[name] if name in own.columns else shared[name][0][shared[name][1]].alias(name) for name in order])


_POLARS_COLUMNS = Columns(
    _polars_names, lambda frame, name: int(frame[name].estimated_size()), _polars_same, lambda frame, names: frame.drop(names),
    _polars_combine,
)


def polars_refusal(kinds: tuple[str, ...]) -> Any:
    def refuses(result: Any) -> str | None:
        kind = kind_of(result)
        return None if kind in kinds else f"it stores {' or '.join(kinds)}s, not {kind or type(result).__qualname__}"

    return refuses


# -- polars csv and json: text, read back with the schema it loses -------------------------

_INTEGERS = frozenset(f"{sign}Int{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64, 128))
# The dtypes (by base type) each text format gives back exactly, read with the schema kept
# beside it: polars writes neither Duration nor Binary to them, nor nested values to csv,
# and its json reader takes Time, Decimal and Array values for something else.
_TEXT_KEEPS = {
    "csv": _INTEGERS | {"Float32", "Float64", "Boolean", "String", "Date", "Datetime", "Time", "Decimal",
                        "Categorical", "Enum", "Null"},
    "json": _INTEGERS | {"Float32", "Float64", "Boolean", "String", "Date", "Datetime", "Categorical", "Enum",
                         "Null", "List", "Struct"},
}
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def text_refusal(writer: str, kinds: tuple[str, ...]) -> Any:
    """Why a polars csv or json file would not give ``result`` back exactly, or None. A
    LazyFrame's values are checked as it is written (they exist once it is collected)."""

    def refuses(result: Any) -> str | None:
        kind = kind_of(result)
        if kind not in kinds:
            return f"it stores {' or '.join(kinds)}s, not {kind or type(result).__qualname__}"
        frame = None if kind == POLARS_LAZY else _as_frame(result)[0]
        schema = result.collect_schema() if frame is None else frame.schema
        found: Iterator[tuple[str, str]] = (
            (name, why) for name, dtype in schema.items() if (why := _dtype_refusal(writer, dtype)) is not None
        )
        if frame is not None:
            found = itertools.chain(found, _value_refusals(writer, frame))
        name, why = next(found, (None, None))
        return None if why is None else f"column {name!r} {why}"

    return refuses


def _dtype_refusal(writer: str, dtype: Any, nested: bool = False) -> str | None:
    """A column's time zone is written as UTC and put back; inside lists and structs it
    would be written with its offset rounded to minutes (Paris before 1911: +00:09:21)."""
    base = dtype.base_type().__name__
    if base not in _TEXT_KEEPS[writer]:
        return f"is {dtype}, which a polars {writer} file does not give back"
    if nested and base == "Datetime" and dtype.time_zone is not None:
        return f"holds {dtype} values in lists or structs, whose offsets polars' {writer} writer rounds to minutes"
    if base == "List":
        return _dtype_refusal(writer, dtype.inner, nested=True)
    if base == "Struct":
        return next((why for field in dtype.fields if (why := _dtype_refusal(writer, field.dtype, nested=True)) is not None), None)
    return None


def _value_refusals(writer: str, frame: Any) -> Iterator[tuple[str, str]]:
    """JSON has no NaN or infinity: polars writes them as null."""
    if writer == "json":
        for name in frame.columns:
            if _holds_non_finite(frame.get_column(name)):
                yield name, "holds NaN or infinity, which JSON cannot (polars writes null)"


def _holds_non_finite(values: Any) -> bool:
    base = values.dtype.base_type().__name__
    if base in ("Float32", "Float64"):
        return bool((~values.is_finite()).any())
    if base == "List":
        return _holds_non_finite(values.explode())
    if base == "Struct":
        unnested = values.struct.unnest()
        return any(_holds_non_finite(unnested.get_column(name)) for name in unnested.columns)
    return False


def write_polars_text(writer: str) -> Any:
    """A writer of a polars DataFrame, Series or LazyFrame (collected) as csv or json, with
    its schema in the options (as Arrow IPC, which keeps every polars dtype): datetimes with
    a time zone in UTC (polars writes offsets in minutes); csv with a header of its names
    where all are plain (else c0, c1, ...) and a text for missing values that no text cell
    holds (\\N, \\N1, ...)."""
    refuses = text_refusal(writer, (POLARS_FRAME, POLARS_SERIES))

    def write(result: Any, path: str) -> ReadOptions:
        import polars

        frame, options = _as_frame(result)
        if kind_of(result) == POLARS_LAZY and (why := refuses(frame)) is not None:  # its values exist only now
            raise ValueError(why)
        schema = io.BytesIO()
        frame.clear().write_ipc(schema)
        options["schema"] = base64.b64encode(schema.getvalue()).decode("ascii")
        frame = frame.with_columns(polars.col(_zoned(frame.schema)).dt.convert_time_zone("UTC"))
        if writer == "json":
            frame.write_json(path)
            return options
        options["missing"] = _missing_text(frame)
        frame.rename(dict(zip(frame.columns, _header(frame.columns)))).write_csv(path, null_value=options["missing"])
        return options

    return write


def _zoned(schema: Any) -> list[str]:
    return [name for name, dtype in schema.items() if dtype.base_type().__name__ == "Datetime" and getattr(dtype, "time_zone", None)]


def _header(names: list[str]) -> list[str]:
    return names if all(_PLAIN_NAME.fullmatch(n) for n in names) else [f"c{i}" for i in range(len(names))]


def _missing_text(frame: Any) -> str:
    import polars

    texts = [frame.get_column(n).cast(polars.String) for n, t in frame.schema.items()
             if t.base_type().__name__ in ("String", "Categorical", "Enum")]
    return missing_text(lambda text: any((values == text).any() for values in texts))


def read_polars_text(reader: str, lazy: bool = False) -> Any:
    """A reader of what ``write_polars_text`` wrote, with the recorded schema: Null columns
    read as text (polars' csv reader needs it) and datetimes in UTC, then cast back."""

    def read(buf: io.BytesIO, options: ReadOptions) -> Any:
        import polars

        schema = polars.read_ipc(io.BytesIO(base64.b64decode(options["schema"]))).schema
        nulls = [name for name, dtype in schema.items() if dtype == polars.Null]
        zoned: dict[str, Any] = {name: schema[name] for name in _zoned(schema)}
        reading = {
            name: polars.String if name in nulls else polars.Datetime(zoned[name].time_unit, "UTC") if name in zoned else dtype
            for name, dtype in schema.items()
        }
        if not schema:
            frame = polars.DataFrame()
        elif reader == "json":
            frame = polars.read_json(buf, schema=reading)
        else:
            header = _header(list(schema))
            frame = polars.read_csv(buf, schema=dict(zip(header, reading.values())), null_values=options["missing"])
            frame = frame.rename(dict(zip(header, schema)))
        frame = frame.cast(dict.fromkeys(nulls, polars.Null)).with_columns(
            polars.col(name).dt.convert_time_zone(dtype.time_zone) for name, dtype in zoned.items()
        )
        return frame.lazy() if lazy else _as_returned(frame, options)

    return read


# -- Arrow ----------------------------------------------------------------------------------


def write_arrow(writer: str) -> Any:
    """A writer of an Arrow Table or RecordBatch (as a one-batch table), by pyarrow."""

    def write(result: Any, path: str) -> ReadOptions:
        import pyarrow  # type: ignore[import-untyped]

        batch = kind_of(result) == ARROW_BATCH
        table = pyarrow.Table.from_batches([result]) if batch else result
        if writer == "parquet":
            import pyarrow.parquet  # type: ignore[import-untyped]

            pyarrow.parquet.write_table(table, path, use_compliant_nested_type=False)  # list fields keep their names
        else:
            import pyarrow.feather  # type: ignore[import-untyped]

            pyarrow.feather.write_feather(table, path)
        return {"batch": True} if batch else {}

    return write


def arrow_reader(buf: io.BytesIO) -> Any:
    """A reader over a copy of the bytes in memory Arrow owns (the copy replaces the one
    ``BytesIO.getbuffer`` made).

    Arrow's pool threads decode columns and may drop the last reference to the memory they
    read from after the read has returned. Memory a Python object owns then takes the GIL on
    that thread; if the interpreter has begun finalizing meanwhile, Python ends the thread
    inside a C++ destructor and the process aborts ("terminate called without an active
    exception", SIGABRT) after a successful script. Memory Arrow owns is freed without Python.
    """
    import pyarrow  # type: ignore[import-untyped]

    data = buf.getvalue()  # the BytesIO's own bytes object: no copy
    owned = pyarrow.allocate_buffer(len(data))
    memoryview(owned).cast("B")[:] = data
    return pyarrow.BufferReader(owned)


def read_parquet_table(buf: io.BytesIO) -> Any:
    import pyarrow.parquet  # type: ignore[import-untyped]

    # Not read_table: it imports pyarrow.dataset (8 ms). A BufferReader over the bytes spares
    # pyarrow the calls back into Python that reading a BytesIO costs.
    return pyarrow.parquet.ParquetFile(arrow_reader(buf)).read()


def read_feather_table(buf: io.BytesIO) -> Any:
    import pyarrow.feather  # type: ignore[import-untyped]

    return pyarrow.feather.read_table(arrow_reader(buf))


def read_arrow(read_table: Any) -> Any:
    """A reader of the table as it was returned: one record batch, or a table."""

    def read(buf: io.BytesIO, options: ReadOptions) -> Any:
        table = read_table(buf)
        return table.combine_chunks().to_batches()[0] if options.get("batch") else table

    return read


def arrow_refusal(result: Any) -> str | None:
    kind = kind_of(result)
    if kind not in (ARROW_TABLE, ARROW_BATCH):
        return f"it stores Arrow Tables and RecordBatches, not {kind or type(result).__qualname__}"
    if kind == ARROW_BATCH and result.num_rows == 0:
        return "an empty record batch reads back as no batch at all"
    return None


# -- NumPy ----------------------------------------------------------------------------------


def write_npy(result: Any, path: str) -> ReadOptions:
    import numpy

    with open(path, "wb") as file:
        numpy.save(file, result, allow_pickle=False)
    return {}


def read_npy(buf: io.BytesIO, options: ReadOptions) -> Any:
    import numpy

    return numpy.load(buf, allow_pickle=False)


def npy_refusal(result: Any) -> str | None:
    if kind_of(result) != NUMPY_ARRAY:
        return f"it stores NumPy arrays, not {type(result).__qualname__}"
    if result.dtype.hasobject:
        return f"its dtype {result.dtype} holds Python objects, which .npy keeps only by pickling them"
    return None


# -- JSON -----------------------------------------------------------------------------------


def write_json_value(result: Any, path: str) -> ReadOptions:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(result, file, ensure_ascii=False, allow_nan=False)
    return {}


def read_json_value(buf: io.BytesIO, options: ReadOptions) -> Any:
    return json.loads(buf.getvalue().decode("utf-8"))


def json_refusal(result: Any) -> str | None:
    """Why JSON would not give ``result`` back equal and of the same types, or None."""
    stack, where = [(result, "the value")], []
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind in (str, int, bool, type(None)):
            continue
        if kind is float:
            if not math.isfinite(value):
                where.append(f"{path} is {value}, which JSON cannot hold")
            continue
        if kind is list:
            stack += [(item, f"{path}[{i}]") for i, item in enumerate(value)]
        elif kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    where.append(f"{path} has the key {key!r}, which JSON would turn into text")
                    break
                stack.append((item, f"{path}[{key!r}]"))
        else:
            where.append(f"{path} is a {kind.__qualname__}, which JSON would not give back as one")
        if where:
            break
    return where[0] if where else None


# -- pickle ---------------------------------------------------------------------------------


def write_pickle(result: Any, path: str) -> ReadOptions:
    with open(path, "wb") as file:
        pickle.dump(result, file, protocol=pickle.HIGHEST_PROTOCOL)
    return {}


def read_pickle(buf: io.BytesIO, options: ReadOptions) -> Any:
    """``pickle.load``; a pickle of pandas objects that this pandas no longer loads as it is
    goes through pandas' compatible unpickler (as ``pandas.read_pickle`` would)."""
    try:
        return pickle.load(buf)
    except (AttributeError, ImportError, TypeError):
        import pandas

        buf.seek(0)
        return pandas.read_pickle(buf)


_POLARS = (POLARS_FRAME, POLARS_SERIES)
HANDLERS: dict[str, Handler] = {
    "pickle": Handler(write_pickle, read_pickle, lambda result: None),
    # A DataFrame's file is always read whole: no column statistics (7% of a write's CPU),
    # and no compression, which took 5% of a cold run of the polars DAG for a third fewer
    # bytes (benchmarks/RESULTS.md). A LazyFrame's scan may skip row groups by statistics.
    "polars-parquet": Handler(
        write_polars("parquet", statistics=False, compression="uncompressed"), read_polars("parquet"),
        polars_refusal(_POLARS), _POLARS_COLUMNS,
    ),
    "polars-ipc": Handler(write_polars("ipc"), read_polars("ipc"), polars_refusal(_POLARS)),
    "polars-csv": Handler(write_polars_text("csv"), read_polars_text("csv"), text_refusal("csv", _POLARS)),
    "polars-json": Handler(write_polars_text("json"), read_polars_text("json"), text_refusal("json", _POLARS)),
    "lazy-parquet": Handler(write_polars("parquet"), read_polars("parquet", lazy=True), polars_refusal((POLARS_LAZY,))),
    "lazy-ipc": Handler(write_polars("ipc"), read_polars("ipc", lazy=True), polars_refusal((POLARS_LAZY,))),
    "lazy-csv": Handler(write_polars_text("csv"), read_polars_text("csv", lazy=True), text_refusal("csv", (POLARS_LAZY,))),
    "lazy-json": Handler(write_polars_text("json"), read_polars_text("json", lazy=True), text_refusal("json", (POLARS_LAZY,))),
    "arrow-parquet": Handler(write_arrow("parquet"), read_arrow(read_parquet_table), arrow_refusal),
    "arrow-feather": Handler(write_arrow("feather"), read_arrow(read_feather_table), arrow_refusal),
    "npy": Handler(write_npy, read_npy, npy_refusal),
    "json-value": Handler(write_json_value, read_json_value, json_refusal),
}
