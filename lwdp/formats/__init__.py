"""Cache formats: for each, how a result is written to a file and read back.

Every format pandas can both write (``DataFrame.to_X``) and read (``pandas.read_X``) to a
file is here. What a file loses -- dtypes, the index, column labels -- its writer returns
as *read options* (JSON, kept in the catalog beside the artifact) that its reader uses to
restore the frame; what a format cannot give back unchanged, its checks refuse
(``lwdp.formats.checks``). csv, json, xml and excel files hold text cells that lwdp writes and
decodes itself (``lwdp.formats.codec``), so no reader's type guessing changes a value.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import FormatUnavailableError, ResultNotStorableError, UnknownFormatError
from . import checks, files, native
from .codec import from_cells, missing_marker, object_kind, restore_missing, to_cells

logger = logging.getLogger("lwdp")

ReadOptions = dict[str, Any]
PANDAS_MAJOR = int(pd.__version__.split(".")[0])
FrameCheck = checks.FrameCheck


@dataclass(frozen=True)
class Format:
    """One cache format: a suffix, a writer to a path, a reader from bytes, and the checks
    that refuse a frame it would not give back unchanged."""

    name: str
    suffix: str
    write: Callable[[Any, str], ReadOptions]
    read: Callable[[io.BytesIO, ReadOptions], Any]
    frames_only: bool = True
    requires: tuple[str, ...] = field(default=())
    checks: tuple[FrameCheck, ...] = field(default=())
    # Formats of results that are not pandas objects (`lwdp.formats.native`): the kinds
    # they store, the family a user names them by (cache_format="parquet" for a polars
    # frame is "polars-parquet"), and why one would not come back unchanged.
    kinds: tuple[str, ...] = ()
    family: str = ""
    refuses: Callable[[Any], str | None] | None = None

    @property
    def named(self) -> str:
        """What a user calls it in ``cache_format``."""
        return self.family or self.name

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def why_cannot_store(self, result: Any) -> str | None:
        """Why this format would not give ``result`` back unchanged, or None if it would."""
        if self.refuses is not None:
            return self.refuses(result)
        if not self.frames_only:
            return None
        if not isinstance(result, pd.DataFrame):
            return f"it stores DataFrames, not {type(result).__qualname__}"
        return next((why for check in self.checks if (why := check(result)) is not None), None)


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


def _arrow_reader(buf: io.BytesIO) -> Any:
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


def _read_parquet(buf: io.BytesIO) -> Any:
    import pyarrow.parquet  # type: ignore[import-untyped]

    # Not read_table: it imports pyarrow.dataset (8 ms). A BufferReader over the bytes spares
    # pyarrow the calls back into Python that reading a BytesIO costs.
    return pyarrow.parquet.ParquetFile(_arrow_reader(buf)).read()


def _read_feather(buf: io.BytesIO) -> Any:
    import pyarrow.feather  # type: ignore[import-untyped]

    return pyarrow.feather.read_table(_arrow_reader(buf))


def _read_orc(buf: io.BytesIO) -> pd.DataFrame:
    import pyarrow.orc  # type: ignore[import-untyped]

    return _from_arrow(pyarrow.orc.ORCFile(_arrow_reader(buf)).read())


def _from_arrow(table: Any) -> pd.DataFrame:
    """Integer columns with missing values as Python ints (not floats, as pandas reads them).
    Asked only where there are some: it makes every conversion 3x slower."""
    import pyarrow.types  # type: ignore[import-untyped]

    nulls = any(pyarrow.types.is_integer(column.type) and column.null_count for column in table.columns)
    return table.to_pandas(integer_object_nulls=nulls)


def _arrow_format(name: str, suffix: str, to_file: Callable[[pd.DataFrame, str], Any],
                  read_table: Callable[[io.BytesIO], Any], more_checks: tuple[FrameCheck, ...] = ()) -> Format:
    """A format that keeps Arrow types and pandas' metadata: only dtypes Arrow lacks need
    casting back."""

    def write(df: pd.DataFrame, path: str) -> ReadOptions:
        with warnings.catch_warnings():  # that labels of mixed types come back as text: lwdp restores them
            warnings.filterwarnings("ignore", "The DataFrame has column names of mixed type")
            to_file(df, path)
        return {**_dtype_options(df), **_labels_options(df)}

    def read(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
        return _restore_dtypes(_with_labels(_from_arrow(read_table(buf)), options), options)

    return Format(
        name, suffix, write, read,
        checks=(checks.has_columns, checks.arrow_labels, checks.index_names_apart, checks.arrow_index_levels,
                checks.only_arrow_safe_objects, checks.uniform_missing, *more_checks),
    )


def _columns_format(name: str, suffix: str, to_file: Callable[[pd.DataFrame, str], Any],
                    from_file: Callable[[io.BytesIO], pd.DataFrame], frame_checks: tuple[FrameCheck, ...]) -> Format:
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

    return Format(name, suffix, write, read, checks=frame_checks)


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


def _text_format(
    name: str, suffix: str, to_file: Callable[[pd.DataFrame, str, ReadOptions], None],
    from_file: Callable[[io.BytesIO, ReadOptions], pd.DataFrame], frame_checks: tuple[FrameCheck, ...],
    native: NativeColumn = lambda values: False, row_numbers: bool = False, requires: tuple[str, ...] = (),
) -> Format:
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

    return Format(name, suffix, write, read, requires=requires, checks=frame_checks)


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


def _write_pickle(obj: Any, path: str) -> ReadOptions:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {}


_TEXT = (checks.plain_unique_labels, checks.fits_text, checks.uniform_missing)
# Characters XML 1.0 (xlsx files too) cannot hold, even escaped.
_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        _arrow_format("parquet", "parquet", _write_parquet, _read_parquet,
                      (checks.plain_categories,)),
        _arrow_format("feather", "feather", lambda df, p: df.to_feather(p), _read_feather),
        _columns_format(
            "orc", "orc", lambda df, p: df.to_orc(p), _read_orc,
            (checks.plain_unique_labels, checks.has_columns_and_rows, checks.orc_types, checks.only_arrow_safe_objects,
             checks.uniform_missing),
        ),
        Format("pickle", "pkl", _write_pickle, lambda b, o: pd.read_pickle(b), frames_only=False),
        _text_format("csv", "csv", files.write_csv, files.read_csv, _TEXT),
        _text_format("json", "json", files.write_json, files.read_json, _TEXT, native=files.json_native),
        _text_format(
            "excel", "xlsx", files.write_excel, files.read_excel,
            (*_TEXT, checks.fits_sheet, checks.text_without(f"{_NOT_XML}|\r", "an xlsx file cannot hold it")),
            native=files.excel_native, row_numbers=True, requires=("openpyxl",),
        ),
        _text_format(
            "xml", "xml", files.write_xml, files.read_xml,
            (*_TEXT, checks.text_without(_NOT_XML, "XML cannot hold it"), checks.has_columns_and_rows),
            row_numbers=True,
        ),
        _columns_format(
            "stata", "dta", files.write_stata, pd.read_stata,
            (checks.plain_unique_labels, checks.stata_types, checks.ints_fit_doubles, checks.no_missing_text,
             checks.text_without("\x00", "Stata ends text at a NUL character"), checks.whole_milliseconds),
        ),
        *(
            Format(f"polars-{writer}", suffix, native.write_polars(writer), native.read_polars(writer), frames_only=False,
                   requires=("polars",), kinds=(native.POLARS_FRAME, native.POLARS_SERIES), family=family,
                   refuses=native.polars_refusal((native.POLARS_FRAME, native.POLARS_SERIES)))
            for writer, suffix, family in (("parquet", "pl.parquet", "parquet"), ("ipc", "pl.arrow", "feather"))
        ),
        *(
            Format(f"lazy-{writer}", suffix, native.write_polars(writer), native.read_polars(writer, lazy=True),
                   frames_only=False, requires=("polars",), kinds=(native.POLARS_LAZY,), family=family,
                   refuses=native.polars_refusal((native.POLARS_LAZY,)))
            for writer, suffix, family in (("parquet", "lz.parquet", "parquet"), ("ipc", "lz.arrow", "feather"))
        ),
        Format("arrow-parquet", "pa.parquet", native.write_arrow("parquet"), lambda b, o: native.arrow_result(_read_parquet(b), o),
               frames_only=False, kinds=(native.ARROW_TABLE, native.ARROW_BATCH), family="parquet", refuses=native.arrow_refusal),
        Format("arrow-feather", "pa.arrow", native.write_arrow("feather"), lambda b, o: native.arrow_result(_read_feather(b), o),
               frames_only=False, kinds=(native.ARROW_TABLE, native.ARROW_BATCH), family="feather", refuses=native.arrow_refusal),
        Format("npy", "npy", native.write_npy, native.read_npy, frames_only=False, kinds=(native.NUMPY_ARRAY,),
               refuses=native.npy_refusal),
        Format("json-value", "value.json", native.write_json_value, native.read_json_value, frames_only=False,
               kinds=(native.JSON_VALUE,), family="json", refuses=native.json_refusal),
    )
}
DEFAULT_FRAME_FORMAT = "parquet"
DEFAULT_OBJECT_FORMAT = "pickle"
# The format of each kind of result that is not a pandas object, unless a stage names another.
_NATIVE_DEFAULTS = {
    native.POLARS_FRAME: "polars-parquet", native.POLARS_SERIES: "polars-parquet", native.POLARS_LAZY: "lazy-parquet",
    native.ARROW_TABLE: "arrow-parquet", native.ARROW_BATCH: "arrow-parquet", native.NUMPY_ARRAY: "npy",
    native.JSON_VALUE: "json-value",
}


def get_format(name: str) -> Format:
    """The format called ``name``.

    :raises UnknownFormatError: no such format.
    :raises FormatUnavailableError: its optional dependency is missing.
    """
    fmt = FORMATS.get(name)
    if fmt is None:
        raise UnknownFormatError(
            f"unknown cache format {name!r}; formats that work: {', '.join(available_formats())}"
        )
    missing = fmt.missing_modules()
    if missing:
        raise FormatUnavailableError(
            f"cache format {name!r} needs {', '.join(missing)}: pip install {' '.join(missing)}"
        )
    return fmt


FRAME_FORMATS = [name for name, fmt in FORMATS.items() if not fmt.kinds]  # pandas' (and pickle)


def available_formats() -> list[str]:
    """The names a stage may give ``cache_format`` whose dependencies are installed (a
    family's name covers its polars and Arrow formats)."""
    return list(dict.fromkeys(fmt.named for fmt in FORMATS.values() if not fmt.missing_modules()))


def default_format_for(result: Any) -> Format:
    """parquet for DataFrames (pandas' and polars'), Arrow tables and LazyFrames, npy for
    NumPy arrays, JSON for plain values of JSON types, pickle for anything else."""
    if isinstance(result, pd.DataFrame):
        return FORMATS[DEFAULT_FRAME_FORMAT]
    kind = native.kind_of(result)
    if kind is None or kind == native.JSON_VALUE and native.json_refusal(result) is not None:
        return FORMATS[DEFAULT_OBJECT_FORMAT]  # a value JSON would change is pickled, as ever: nothing to warn of
    return FORMATS[_NATIVE_DEFAULTS[kind]]


def _for_kind(stage_name: str, wanted: Format, result: Any) -> Format:
    """The format of ``wanted``'s family for ``result``'s kind (cache_format="parquet" of a
    polars frame: "polars-parquet"), or ``wanted`` itself.

    :raises ResultNotStorableError: the result is of a kind no format of that family stores.
    """
    kind = native.kind_of(result)
    if kind is None or kind in wanted.kinds or wanted.name == DEFAULT_OBJECT_FORMAT:
        return wanted
    found = next((fmt for fmt in FORMATS.values() if kind in fmt.kinds and fmt.named == wanted.named), None)
    if found is None:
        named = sorted({fmt.named for fmt in FORMATS.values() if kind in fmt.kinds} | {DEFAULT_OBJECT_FORMAT})
        raise ResultNotStorableError(
            f"stage '{stage_name}': cache format {wanted.name!r} cannot store the {type(result).__qualname__} it "
            f"returned (a {kind}); give cache_format one of the formats for it: {', '.join(named)}"
        )
    return found or wanted


def stored_as(stored: str, wanted: Format) -> bool:
    """Whether an artifact stored in format ``stored`` is in the format a stage names
    (``cache_format="parquet"`` names polars' parquet too)."""
    return stored == wanted.name or stored in FORMATS and FORMATS[stored].named == wanted.named


@dataclass(frozen=True)
class FormatChoice:
    """The format a result is cached in, and the one its writer's refusal falls back to
    (pickle where lwdp chose the format; None where the user named it: a refusal is an error)."""

    format: Format
    fallback: Format | None


def choose_format(stage_name: str, result: Any, wanted: Format | None) -> FormatChoice:
    """The format to cache ``result`` in: ``wanted``, else the default for its type; pickle
    where the default frame format's checks refuse the result (with a warning).

    :raises ResultNotStorableError: ``wanted`` would not give ``result`` back unchanged.
    """
    fmt = _for_kind(stage_name, wanted, result) if wanted is not None else default_format_for(result)
    lwdp_chose = wanted is None and fmt.name != DEFAULT_OBJECT_FORMAT
    pickled = FORMATS[DEFAULT_OBJECT_FORMAT]
    why_not = fmt.why_cannot_store(result)
    if why_not is None:
        return FormatChoice(fmt, pickled if lwdp_chose else None)
    refusal = ResultNotStorableError(
        f"stage '{stage_name}': cache format {fmt.name!r} cannot store the {type(result).__qualname__} "
        f"it returned: {why_not}; use cache_format='pickle'"
    )
    if not lwdp_chose:
        raise refusal
    warn_falling_back(refusal)
    return FormatChoice(pickled, None)


def warn_falling_back(refusal: ResultNotStorableError) -> None:
    logger.warning("%s; caching it as pickle instead (the default for such results)", refusal)
