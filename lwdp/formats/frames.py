"""The formats of pandas results: for each, how a DataFrame is written to a file and read back.

Every format pandas can both write (``DataFrame.to_X``) and read (``pandas.read_X``) to a
file is here. What a file loses -- dtypes, the index, column labels -- its writer returns
as *read options* that its reader uses to restore the frame; what a format cannot give
back unchanged, its checks refuse (``lwdp.formats.checks``). csv, json, xml and excel files
hold text cells that lwdp writes and decodes itself (``lwdp.formats.codec``), so no
reader's type guessing changes a value.

Only a pandas result, or an artifact of one, imports this module (and so pandas).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from . import checks, files, native
from .checks import FrameCheck
from .codec import from_cells, missing_marker, object_kind, restore_missing, to_cells
from .handler import Columns, Handler, ReadOptions


def _refusal(*frame_checks: FrameCheck) -> Callable[[Any], "str | None"]:
    """Why a format with these checks would not give ``result`` back unchanged, or None."""

    def refuses(result: Any) -> str | None:
        if not isinstance(result, pd.DataFrame):
            return f"it stores DataFrames, not {type(result).__qualname__}"
        return next((why for check in frame_checks if (why := check(result)) is not None), None)

    return refuses


# -- read options: the dtypes, labels and index a file loses --------------------------------


def _dtype_names(dtypes: Any) -> list[Any]:
    """dtype names, except categoricals: [categories, ordered], since "category" says neither
    (just "category" if JSON cannot hold the categories: Arrow keeps those)."""
    return [
        (_json_categories(t) or "category") if isinstance(t, pd.CategoricalDtype) else str(t) for t in dtypes
    ]


def _json_categories(dtype: pd.CategoricalDtype) -> list[Any] | None:
    return [dtype.categories.tolist(), bool(dtype.ordered)] if checks.all_plain(dtype.categories) else None


def _dtype(name: Any) -> Any:
    return pd.CategoricalDtype(name[0], ordered=name[1]) if isinstance(name, list) else pd.api.types.pandas_dtype(name)


def _dtype_options(df: pd.DataFrame) -> ReadOptions:
    """The dtypes of every column and index level, and how object columns' values were missing."""
    markers = {
        key: marker
        for key, _, values in checks.keyed_columns(df, checks.is_object)
        if (marker := missing_marker(values)) is not None
    }
    return {
        "dtypes": _dtype_names(df.dtypes),
        "index_dtypes": _dtype_names(df.index.get_level_values(i).dtype for i in range(df.index.nlevels)),
        "index_names": [n if isinstance(n, (str, int, float)) else None for n in df.index.names],
        "missing": markers,
        "labels_dtype": str(df.columns.dtype),
        "index_freq": df.index.freqstr if isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)) else None,
    }


def _labels_options(df: pd.DataFrame) -> ReadOptions:
    """The column labels and their name, where JSON keeps them (strings, numbers, bools)."""
    if not checks.all_plain(df.columns):
        return {}
    name = df.columns.name
    return {"columns": df.columns.tolist(), "columns_name": name if isinstance(name, (str, int, float)) else None}


def _with_labels(df: pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    if "columns" in options and len(options["columns"]) == df.shape[1]:
        df.columns = pd.Index(options["columns"], name=options.get("columns_name"))
    return df


def _cast(values: pd.Series, name: Any, marker: str | None) -> pd.Series:
    """``values`` as the recorded dtype, where they came back other (as they came back if it
    cannot be cast, which the property tests would report as a difference)."""
    target = _dtype(name)
    if name != "category" and (values.dtype != target or str(values.dtype) != str(target)):
        try:
            if _relabelled(values.dtype, target):  # Stata gives categories back as text
                values = from_cells(pd.Series(values, dtype=object), target, None, None).set_axis(values.index)
            else:
                values = values.astype(target)
        except (TypeError, ValueError, KeyError):
            return values
    return restore_missing(values, marker)


def _relabelled(dtype: Any, target: Any) -> bool:
    """Whether a categorical came back with its categories as another dtype (text)."""
    categoricals = isinstance(dtype, pd.CategoricalDtype) and isinstance(target, pd.CategoricalDtype)
    return categoricals and dtype.categories.dtype != target.categories.dtype


def _restore_dtypes(df: pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    """Cast columns, index levels and labels back to the recorded dtypes where they came back
    other (Arrow has no datetime64[s] and no object integers with missing values; Stata no
    nullable integers)."""
    markers = options.get("missing", {})
    for position, name in enumerate(options.get("dtypes", [])[: df.shape[1]]):
        column = df.iloc[:, position]
        values: Any = _cast(column, name, markers.get(f"c{position}"))  # a Series (stubs say no)
        if values is not column:  # setting a column copies it: only where one changed
            df.isetitem(position, values)
    index_dtypes, names = options.get("index_dtypes", []), options.get("index_names", df.index.names)
    if len(index_dtypes) == df.index.nlevels:
        current = _dtype_names(df.index.get_level_values(i).dtype for i in range(df.index.nlevels))
        if index_dtypes == current and not any(key.startswith("i") for key in markers):
            df.index = df.index.set_names(names)  # the index as it came back, RangeIndex included
        else:
            levels = [
                _cast(pd.Series(df.index.get_level_values(i)), name, markers.get(f"i{i}"))
                for i, name in enumerate(index_dtypes)
            ]
            df.index = _index(levels, names)
    return _restore_attributes(df, options)


def _restore_attributes(df: pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    """The column labels' dtype (pandas 3 reads object text labels back as str) and the
    index's frequency (no file keeps it), where they came back other."""
    wanted = options.get("labels_dtype")
    if wanted is not None and str(df.columns.dtype) != wanted:
        try:
            df.columns = df.columns.astype(wanted)
        except (TypeError, ValueError):
            pass
    freq = options.get("index_freq")
    if freq is not None and isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)) and df.index.freqstr != freq:
        df.index = type(df.index)(df.index, freq=freq)
    return df


def _index(levels: list[pd.Series], names: list[Any]) -> pd.Index:
    if len(levels) > 1:
        return pd.MultiIndex.from_arrays(levels, names=names)
    return pd.Index(levels[0]).rename(names[0])  # not the Series' name


# -- parquet, feather, orc ----------------------------------------------------------------


# pyarrow's readers are imported on first read: together they cost ~20 ms, and an
# ``import lwdp`` that reads nothing should not pay for them.


def _write_parquet(df: pd.DataFrame, path: str) -> None:
    """LZ4 and no column statistics: lwdp always reads whole files, so statistics would only
    cost time (20% of a write), and LZ4 reads 30% faster than Snappy at the same size.

    The frame is converted to Arrow on this thread when small: pandas' ``to_parquet`` lets
    pyarrow start a pool of Python threads for any frame of a few thousand cells, which
    costs 7 times the conversion itself on a tiny one."""
    import pyarrow  # type: ignore[import-untyped]
    import pyarrow.parquet  # type: ignore[import-untyped]

    threads = None if df.size > _CELLS_WORTH_THREADS else 1
    table = pyarrow.Table.from_pandas(df, nthreads=threads)
    pyarrow.parquet.write_table(table, path, compression="lz4", write_statistics=False,
                                use_dictionary=_columns_worth_a_dictionary(table))


_CELLS_WORTH_THREADS = 1_000_000
_DICTIONARY_SAMPLE_ROWS = 10_000
_DICTIONARY_MAX_DISTINCT = 0.9


def _columns_worth_a_dictionary(table: Any) -> list[str]:
    """The columns whose first rows repeat values: dictionary encoding shrinks those (to a
    third for a price, a tenth for a region) and costs less than plain encoding of what it
    removes. On columns of nearly unique values (ids, timestamps, measurements) pyarrow would
    build a dictionary only to give it up at 1 MiB: a third of a typical write's CPU for
    nothing (benchmarks/RESULTS.md, "Parallel runs"). Categoricals are dictionaries already."""
    import pyarrow  # type: ignore[import-untyped]
    import pyarrow.compute  # type: ignore[import-untyped]
    import pyarrow.types  # type: ignore[import-untyped]

    chosen = []
    for name, column in zip(table.column_names, table.columns):
        if pyarrow.types.is_dictionary(column.type):
            chosen.append(name)
            continue
        sample = column.slice(0, _DICTIONARY_SAMPLE_ROWS)
        try:
            distinct = pyarrow.compute.count_distinct(sample).as_py()
        except pyarrow.ArrowNotImplementedError:  # no values to count (an all-null column), or nested ones
            continue
        if distinct < _DICTIONARY_MAX_DISTINCT * len(sample) and not pyarrow.types.is_boolean(column.type):
            chosen.append(name)
    return chosen


def _read_orc(buf: io.BytesIO) -> pd.DataFrame:
    import pyarrow.orc  # type: ignore[import-untyped]

    return _from_arrow(pyarrow.orc.ORCFile(native.arrow_reader(buf)).read())


def _from_arrow(table: Any) -> pd.DataFrame:
    """Integer columns with missing values as Python ints (not floats, as pandas reads them).
    Asked only where there are some: it makes every conversion 3x slower."""
    import pyarrow.types  # type: ignore[import-untyped]

    nulls = any(pyarrow.types.is_integer(column.type) and column.null_count for column in table.columns)
    return table.to_pandas(integer_object_nulls=nulls)


def _arrow_handler(to_file: Callable[[pd.DataFrame, str], Any], read_table: Callable[[io.BytesIO], Any],
                   more_checks: tuple[FrameCheck, ...] = ()) -> Handler:
    """A format that keeps Arrow types and pandas' metadata: only dtypes Arrow lacks need
    casting back."""

    def write(df: pd.DataFrame, path: str) -> ReadOptions:
        with warnings.catch_warnings():  # that labels of mixed types come back as text: lwdp restores them
            warnings.filterwarnings("ignore", "The DataFrame has column names of mixed type")
            to_file(df, path)
        return {**_dtype_options(df), **_labels_options(df)}

    def read(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
        return _restore_dtypes(_with_labels(_from_arrow(read_table(buf)), options), options)

    return Handler(write, read, _refusal(
        checks.has_columns, checks.arrow_labels, checks.index_names_apart, checks.arrow_index_levels,
        checks.only_arrow_safe_objects, checks.uniform_missing, *more_checks,
    ))


def _columns_handler(name: str, to_file: Callable[[pd.DataFrame, str], Any],
                     from_file: Callable[[io.BytesIO], pd.DataFrame], frame_checks: tuple[FrameCheck, ...]) -> Handler:
    """A format that keeps typed columns but no index or labels (ORC, Stata): the index is
    written as leading columns and restored, like the labels and dtypes, from the options."""

    def write(df: pd.DataFrame, path: str) -> ReadOptions:
        options = _layout_options(df, row_numbers=False)
        to_file(_flat_frame(df, options, lambda key, values: values), path)
        return options

    def read(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
        _check_layout(name, options)
        df = from_file(buf)
        if options["index_levels"]:
            df = df.set_index(list(df.columns[: options["index_levels"]]))
        return _restore_dtypes(_with_labels(df, options), options)

    return Handler(write, read, _refusal(*frame_checks))


# The layout of the files and options of the formats that lose the index (all but parquet,
# feather and pickle); an artifact of another layout is not read (lwdp recomputes it).
LAYOUT = 2


def _check_layout(name: str, options: ReadOptions) -> None:
    if options.get("layout") != LAYOUT:
        raise ValueError(f"{name} artifact written by another version of lwdp")


def _layout_options(df: pd.DataFrame, row_numbers: bool) -> ReadOptions:
    """Dtypes and labels; how many index levels the file holds (none for the default index,
    whose dtypes and names are then not recorded); whether row numbers come first."""
    options = {**_dtype_options(df), **_labels_options(df), "row_numbers": row_numbers, "layout": LAYOUT}
    if checks.has_default_index(df):
        del options["index_dtypes"], options["index_names"]
    options["index_levels"] = df.index.nlevels if "index_dtypes" in options else 0
    return options


def _flat_frame(df: pd.DataFrame, options: ReadOptions, cells: Callable[[str, pd.Series], pd.Series]) -> pd.DataFrame:
    """Row numbers (if ``options`` says so), the index levels (if not the default index) and
    the columns of ``df``, each as ``cells(key, values)`` makes it, under ``_header`` names."""
    pairs = [(key, values) for key, _, values in checks.keyed_columns(df)]
    written = pairs[df.index.nlevels - options["index_levels"]:]
    columns = [cells(key, values).reset_index(drop=True) for key, values in written]
    if options["row_numbers"]:
        columns.insert(0, cells("row", pd.Series(range(len(df)), dtype="int64")))
    frame = pd.DataFrame(dict(enumerate(columns)), index=range(len(df)))
    return frame.set_axis(_header(df, options), axis=1)


_PLAIN_NAME = re.compile(r"(?!(?i:xml))[A-Za-z_][A-Za-z0-9_]*")


def _header(df: pd.DataFrame, options: ReadOptions) -> list[str]:
    """Header names: row, index level names (or index, level_N), column labels; positional
    names (c0, c1, ...) if those are not unique or not all plain names (which XML and
    Stata require)."""
    levels = [
        str(n) if n is not None else ("index" if df.index.nlevels == 1 else f"level_{i}")
        for i, n in enumerate(df.index.names)
    ]
    names = ["row"] * options["row_numbers"] + levels[len(levels) - options["index_levels"]:]
    names += [str(c) for c in df.columns]
    if len(set(names)) < len(names) or not all(_PLAIN_NAME.fullmatch(n) for n in names):
        return [f"c{i}" for i in range(len(names))]
    return names


# -- csv, json, xml, excel: text cells ----------------------------------------------------

NativeColumn = Callable[[pd.Series], bool]


def _text_handler(
    name: str, to_file: Callable[[pd.DataFrame, str, ReadOptions], None],
    from_file: Callable[[io.BytesIO, ReadOptions], pd.DataFrame], frame_checks: tuple[FrameCheck, ...],
    native: NativeColumn = lambda values: False, row_numbers: bool = False,
) -> Handler:
    """A format whose file holds the cells ``lwdp.formats.codec`` writes: row numbers first (if
    ``row_numbers``), the index levels (if not the default index), then the columns.

    ``native``: whether a column is written as it is (the file keeps its values exactly).
    ``to_file`` writes a frame of cells and may add options of its own for ``from_file``,
    which returns the cells, in the same order.
    """

    def write(df: pd.DataFrame, path: str) -> ReadOptions:
        options = _layout_options(df, row_numbers)
        kinds = {key: object_kind(values) for key, _, values in checks.keyed_columns(df, checks.is_object)}
        options["kinds"] = kinds

        def cells(key: str, values: pd.Series) -> pd.Series:
            return values if native(values) else pd.Series(to_cells(values, kinds.get(key)), dtype=object)

        to_file(_flat_frame(df, options, cells), path, options)
        return options

    def read(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
        _check_layout(name, options)
        return _from_text_cells(from_file(buf, options), options)

    return Handler(write, read, _refusal(*frame_checks))


def _from_text_cells(cells: pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    """Decode every column of cells by its recorded dtype and rebuild the frame."""
    levels = options["index_levels"]
    dtypes = options.get("index_dtypes", []) + options["dtypes"]
    keys = [f"i{j}" for j in range(levels)] + [f"c{i}" for i in range(len(options["dtypes"]))]
    kinds, markers = options["kinds"], options["missing"]
    decoded = [
        from_cells(cells.iloc[:, pos], _dtype(dtype), kinds.get(key), markers.get(key))
        for pos, (key, dtype) in enumerate(zip(keys, dtypes), start=int(options["row_numbers"]))
    ]
    columns = decoded[levels:]
    df = pd.DataFrame(dict(enumerate(columns)), index=range(len(cells)))
    if "index_dtypes" in options:
        df.index = _index(decoded[:levels], options["index_names"])
    return _restore_attributes(_with_labels(df, options), options)


# -- columns kept once (`lwdp.store.shared_columns`) ---------------------------------------


def _column_names(df: Any) -> list[str] | None:
    """A frame's columns where they can be told apart by name: unique text labels."""
    if not isinstance(df, pd.DataFrame) or isinstance(df.columns, pd.MultiIndex) or not df.columns.is_unique:
        return None
    names = list(df.columns)
    return names if all(type(name) is str for name in names) else None


def _same_column(df: pd.DataFrame, name: str, other: Any, other_name: str) -> bool:
    return _same_values(df[name], other[other_name])


def _same_values(a: pd.Series | pd.Index, b: pd.Series | pd.Index) -> bool:
    """Exactly the same values: dtype and bits (-0.0 is not 0.0; NaNs in the same places).
    Only dtypes compared without Python objects: NumPy's, text, and categoricals whose
    categories are those, in the same order (pandas calls unordered categoricals of the
    same categories in another order equal: their codes mean other values)."""
    if len(a) != len(b) or a.dtype != b.dtype or str(a.dtype) != str(b.dtype):
        return False
    if isinstance(a.dtype, np.dtype):
        return a.dtype.kind in "biufcmM" and _same_bits(a.to_numpy(), b.to_numpy())
    if isinstance(a.dtype, pd.CategoricalDtype) and isinstance(b.dtype, pd.CategoricalDtype):
        ordered, categories = a.dtype.ordered == b.dtype.ordered, _same_values(a.dtype.categories, b.dtype.categories)
        return ordered and categories and _same_bits(a.array.codes, b.array.codes)
    return isinstance(a.dtype, pd.StringDtype) and bool(a.array.equals(b.array))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    as_bits = f"u{a.itemsize}" if a.itemsize in (1, 2, 4, 8) else "u1"
    return bool(np.array_equal(a.view(as_bits), b.view(as_bits)))


def _combine(own: pd.DataFrame, order: list[str], shared: dict[str, tuple[Any, str]]) -> pd.DataFrame:
    """The frame again: its own file's columns and index, with the shared columns put back
    in place, by position (the frames holding them have other indexes), none copied."""
    arrays = {name: (own[name] if name in own.columns else shared[name][0][shared[name][1]]).array for name in order}
    df = pd.DataFrame(arrays, index=own.index, copy=False)
    df.columns = pd.Index(order, dtype=own.columns.dtype, name=own.columns.name)
    df.attrs = own.attrs
    return df


_COLUMNS = Columns(
    _column_names, lambda df, name: int(df[name].nbytes), _same_column, lambda df, names: df.drop(columns=names), _combine,
)


_TEXT = (checks.plain_unique_labels, checks.fits_text, checks.uniform_missing)
# Characters XML 1.0 (xlsx files too) cannot hold, even escaped.
_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"


HANDLERS: dict[str, Handler] = {
    "parquet": _arrow_handler(_write_parquet, native.read_parquet_table, (checks.plain_categories,))._replace(columns=_COLUMNS),
    "feather": _arrow_handler(lambda df, p: df.to_feather(p), native.read_feather_table),
    "orc": _columns_handler(
        "orc", lambda df, p: df.to_orc(p), _read_orc,
        (checks.plain_unique_labels, checks.has_columns_and_rows, checks.orc_types, checks.only_arrow_safe_objects,
         checks.uniform_missing),
    ),
    "csv": _text_handler("csv", files.write_csv, files.read_csv, _TEXT),
    "json": _text_handler("json", files.write_json, files.read_json, _TEXT, native=files.json_native),
    "excel": _text_handler(
        "excel", files.write_excel, files.read_excel,
        (*_TEXT, checks.fits_sheet, checks.text_without(f"{_NOT_XML}|\r", "an xlsx file cannot hold it")),
        native=files.excel_native, row_numbers=True,
    ),
    "xml": _text_handler(
        "xml", files.write_xml, files.read_xml,
        (*_TEXT, checks.text_without(_NOT_XML, "XML cannot hold it"), checks.has_columns_and_rows),
        row_numbers=True,
    ),
    "stata": _columns_handler(
        "stata", files.write_stata, pd.read_stata,
        (checks.plain_unique_labels, checks.stata_types, checks.ints_fit_doubles, checks.no_missing_text,
         checks.text_without("\x00", "Stata ends text at a NUL character"), checks.whole_milliseconds),
    ),
}
