"""Formats for results that are not pandas objects, each written and read by its own
library, so nothing is pickled: polars DataFrames, Series and LazyFrames (parquet or
Arrow IPC, by polars), Arrow tables and record batches (parquet or IPC, by pyarrow), NumPy
arrays (``.npy``, never with pickled objects) and plain values of JSON types (JSON).

Which kind a result is, is told by its type's module, so that checking a pandas result
imports none of these libraries; polars is imported only to read or write a polars
result.
"""

from __future__ import annotations

import io
import json
import math
import sys
from typing import Any

ReadOptions = dict[str, Any]

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


def is_immutable(result: Any) -> bool:
    """Whether consumers may share ``result`` without a copy (polars and Arrow objects)."""
    return kind_of(result) in (POLARS_FRAME, POLARS_SERIES, POLARS_LAZY, ARROW_TABLE, ARROW_BATCH)


# -- polars ---------------------------------------------------------------------------------


def write_polars(writer: str) -> Any:
    """A writer of a polars DataFrame, Series (as a one-column frame) or LazyFrame
    (collected) with ``DataFrame.write_<writer>``, LZ4-compressed: on the polars DAG it
    writes in ~half zstd's time for 1.8x the bytes (benchmarks/RESULTS.md)."""

    def write(result: Any, path: str) -> ReadOptions:
        kind = kind_of(result)
        if kind == POLARS_LAZY:
            result = result.collect()
        frame = result.to_frame() if kind == POLARS_SERIES else result
        getattr(frame, f"write_{writer}")(path, compression="lz4")
        return {"series": True} if kind == POLARS_SERIES else {}

    return write


def read_polars(reader: str, lazy: bool = False) -> Any:
    """A reader with ``polars.read_<reader>`` (``polars.scan_<reader>`` for a LazyFrame:
    a consumer that selects or filters decodes only what it needs)."""

    def read(buf: io.BytesIO, options: ReadOptions) -> Any:
        import polars

        if lazy:
            return getattr(polars, f"scan_{reader}")(buf)
        frame = getattr(polars, f"read_{reader}")(buf)
        return frame.to_series() if options.get("series") else frame

    return read


def polars_refusal(kinds: tuple[str, ...]) -> Any:
    def refuses(result: Any) -> str | None:
        kind = kind_of(result)
        return None if kind in kinds else f"it stores {' or '.join(kinds)}s, not {kind or type(result).__qualname__}"

    return refuses


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


def arrow_result(table: Any, options: ReadOptions) -> Any:
    """The table read back as it was returned: one record batch, or a table."""
    return table.combine_chunks().to_batches()[0] if options.get("batch") else table


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
