"""Cache formats: for each, how a result is written to a file and read back.

Every format pandas can both write (``DataFrame.to_X``) and read (``pandas.read_X``) to a
file is here. Text and spreadsheet formats lose dtypes and the index, so their writer
returns *read options* (the index levels it wrote, the columns and their dtypes) that the
catalog keeps beside the artifact and the reader uses to restore the frame.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .errors import FormatUnavailableError, UnknownFormatError

ReadOptions = dict[str, Any]
PANDAS_MAJOR = int(pd.__version__.split(".")[0])


FrameCheck = Callable[[pd.DataFrame], "str | None"]


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

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def why_cannot_store(self, result: Any) -> str | None:
        """Why this format would not give ``result`` back unchanged, or None if it would."""
        if not self.frames_only:
            return None
        if not isinstance(result, pd.DataFrame):
            return f"it stores DataFrames, not {type(result).__qualname__}"
        return next((why for check in self.checks if (why := check(result)) is not None), None)


def _all_columns(df: pd.DataFrame) -> list[tuple[Any, pd.Series | pd.Index]]:
    """(label, values) of every column and index level."""
    levels = [(f"(index level {i})", df.index.get_level_values(i)) for i in range(df.index.nlevels)]
    return [*df.items(), *levels]


# What an object column may hold and still come back equal from parquet, feather and orc
# (lists, sets, tuples and dicts come back as arrays or merged structs).
_ARROW_SAFE_OBJECT_KINDS = frozenset(
    {"string", "empty", "bytes", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "date", "datetime"}
)


def _only_arrow_safe_objects(df: pd.DataFrame) -> str | None:
    for label, values in _all_columns(df):
        if values.dtype == object:
            kind = pd.api.types.infer_dtype(values, skipna=True)
            if kind not in _ARROW_SAFE_OBJECT_KINDS:
                return f"column {label!r} holds Python objects ({kind}) that would not come back unchanged"
    return None


def _plain_unique_labels(df: pd.DataFrame) -> str | None:
    """Text and spreadsheet files have one header row of names."""
    if df.shape[1] == 0:
        return "the frame has no columns"
    if not all(isinstance(c, (str, int, float, bool)) for c in df.columns):
        return "column labels must be strings or numbers (no MultiIndex columns)"
    if not df.columns.is_unique or len({str(c) for c in df.columns}) != df.shape[1]:
        return "column labels must be unique"
    return None


_EXACT_DOUBLE_INT = 2**53


def _has_columns(df: pd.DataFrame) -> str | None:
    """Arrow tables have no rows without columns: the row count would be lost."""
    return "the frame has no columns" if df.shape[1] == 0 else None


def _has_columns_and_rows(df: pd.DataFrame) -> str | None:
    """XML and ORC files of an empty frame don't say what its columns were."""
    return "the frame is empty (no columns or no rows)" if 0 in df.shape else None


def _no_missing_integers(df: pd.DataFrame) -> str | None:
    """Stata writes a nullable integer column with missing values as floats."""
    for label, values in _all_columns(df):
        if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_integer_dtype(values.dtype) and values.isna().any():
            return f"integer column {label!r} has missing values"
    return None


def _no_empty_rows(df: pd.DataFrame) -> str | None:
    """A spreadsheet reader drops rows in which every cell is empty."""
    if df.shape[1] and _has_default_index(df) and df.isna().all(axis=1).any():
        return "a row has no values at all, which it would drop"
    return None


def _no_timedeltas(df: pd.DataFrame) -> str | None:
    """pandas writes JSON timedeltas it cannot read back."""
    for label, values in _all_columns(df):
        if pd.api.types.is_timedelta64_dtype(values.dtype):
            return f"column {label!r} holds timedeltas, which pandas cannot read back from JSON"
    return None


def _unique_index(df: pd.DataFrame) -> str | None:
    """JSON's table layout keys rows by index: repeated keys would collapse rows."""
    return None if df.index.is_unique else "its index has repeated values"


def _ints_fit_doubles(df: pd.DataFrame) -> str | None:
    """Excel and Stata keep numbers as doubles: larger integers would change."""
    for label, values in _all_columns(df):
        if pd.api.types.is_integer_dtype(values.dtype) and len(values):
            if values.max() > _EXACT_DOUBLE_INT or values.min() < -_EXACT_DOUBLE_INT:
                return f"column {label!r} has integers beyond 2**53, which it stores as doubles"
    return None


def _no_missing_text(df: pd.DataFrame) -> str | None:
    """Stata has no missing string: it would come back as ''."""
    for label, values in _all_columns(df):
        if _is_text(values) and values.isna().any():
            return f"text column {label!r} has missing values, which it would give back as ''"
    return None


def _has_default_index(df: pd.DataFrame) -> bool:
    idx = df.index
    return isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and idx.name is None


def _text_layout(df: pd.DataFrame) -> ReadOptions:
    """The options that restore names, index and dtypes; ``index_col`` means "write the index"."""
    write_index = not _has_default_index(df)
    options: ReadOptions = {"dtypes": _dtype_names(df.dtypes)}
    if all(isinstance(c, (str, int, float, bool)) for c in df.columns):
        options["columns"] = list(df.columns)
    if isinstance(df.columns.name, (str, int)):
        options["columns_name"] = df.columns.name
    if write_index:
        options.update(_dtype_options(df), index_col=list(range(df.index.nlevels)))
    return options


def _restore(df: pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    """Undo what a text format lost: column labels, index and dtypes, where they fit."""
    if "columns" in options and len(options["columns"]) == df.shape[1]:
        df.columns = options["columns"]
    df.columns.name = options.get("columns_name")
    return _restore_dtypes(df, options)


def _dtype_options(df: pd.DataFrame) -> ReadOptions:
    """The dtypes of every column and index level, to cast back to after reading."""
    return {
        "dtypes": _dtype_names(df.dtypes),
        "index_dtypes": _dtype_names(df.index.get_level_values(i).dtype for i in range(df.index.nlevels)),
        "index_names": [n if isinstance(n, (str, int)) else None for n in df.index.names],
    }


def _dtype_names(dtypes: Any) -> list[Any]:
    """dtype names, except categoricals: [categories, ordered], since "category" says neither."""
    return [
        [t.categories.tolist(), bool(t.ordered)] if isinstance(t, pd.CategoricalDtype) else str(t)
        for t in dtypes
    ]


def _restore_dtypes(df: pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    """Cast columns and index levels back to the recorded dtypes where they came back other
    (Arrow has no datetime64[s] and reads object strings as str; text has no dtypes)."""
    for position, dtype in enumerate(options.get("dtypes", [])[: df.shape[1]]):
        df.isetitem(position, _astype_or_keep(df.iloc[:, position], dtype))
    index_dtypes = options.get("index_dtypes", [])
    current = _dtype_names(df.index.get_level_values(i).dtype for i in range(df.index.nlevels))
    if len(index_dtypes) == df.index.nlevels and index_dtypes != current:
        levels = [_astype_or_keep(pd.Series(df.index.get_level_values(i)), t) for i, t in enumerate(index_dtypes)]
        index = pd.MultiIndex.from_arrays(levels) if len(levels) > 1 else pd.Index(levels[0])
        df.index = index.set_names(options.get("index_names", df.index.names))
    elif "index_names" in options and len(options["index_names"]) == df.index.nlevels:
        df.index = df.index.set_names(options["index_names"])
    return df


def _arrow_format(name: str, suffix: str, to_file: Callable[[pd.DataFrame, str], Any],
                  from_file: Callable[[io.BytesIO], pd.DataFrame]) -> Format:
    """A format that keeps Arrow types: only dtypes Arrow lacks need casting back."""

    def write(df: pd.DataFrame, path: str) -> ReadOptions:
        to_file(df, path)
        return _dtype_options(df)

    def read(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
        return _restore_dtypes(from_file(buf), options)

    return Format(name, suffix, write, read, checks=(_only_arrow_safe_objects, _has_columns))


def _astype_or_keep(values: pd.Series, dtype: Any) -> Any:
    target = pd.CategoricalDtype(dtype[0], ordered=dtype[1]) if isinstance(dtype, list) else dtype
    if values.dtype == target and str(values.dtype) == str(target):
        return values
    try:
        return values.astype(target)
    except (TypeError, ValueError):
        return values


def _with_layout(
    to_file: Callable[[pd.DataFrame, str, ReadOptions], Any],
    from_file: Callable[[io.BytesIO, ReadOptions], pd.DataFrame],
    reader_sets_index: bool,
) -> tuple[Callable[[Any, str], ReadOptions], Callable[[io.BytesIO, ReadOptions], Any]]:
    """Writer and reader for a format that loses the index or dtypes, restoring both on read.

    ``to_file`` writes the index when ``options`` has ``index_col`` and may add options of
    its own for ``from_file``.
    """

    def write(df: pd.DataFrame, path: str) -> ReadOptions:
        options = _text_layout(df)
        to_file(df, path, options)
        return options

    def read(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
        df = from_file(buf, options)
        index_col = options.get("index_col")
        if index_col and not reader_sets_index:
            df = df.set_index(list(df.columns[: len(index_col)]))
        return _restore(df, options)

    return write, read


def _is_text(values: pd.Series | pd.Index) -> bool:
    if isinstance(values.dtype, pd.StringDtype):
        return True
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _write_csv(df: pd.DataFrame, path: str, options: ReadOptions) -> None:
    """csv that keeps strings such as "007", "NA" or "a\rb" as they are.

    Missing values are written as a token that no string in the frame equals, text
    columns are read back as text, and a CRLF line terminator makes the writer quote any
    field holding a line break.
    """
    write_index = "index_col" in options
    columns: list[pd.Series | pd.Index] = [df.index.get_level_values(i) for i in range(df.index.nlevels)] if write_index else []
    columns += [df.iloc[:, i] for i in range(df.shape[1])]
    text = [pos for pos, values in enumerate(columns) if _is_text(values)]
    token = next(
        t for t in (f"\\N{n or ''}" for n in itertools.count())
        if not any((columns[pos] == t).any() for pos in text)
    )
    options.update(na_token=token, text_positions=text)
    df.to_csv(path, index=write_index, na_rep=token, lineterminator="\r\n")


def _read_csv(buf: io.BytesIO, options: ReadOptions) -> pd.DataFrame:
    # pandas 3 parses floats exactly by default (and deprecates the option)
    exact_floats: dict[str, Any] = {} if PANDAS_MAJOR >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(
        buf,
        index_col=options.get("index_col"),
        keep_default_na=False,
        na_values=[options["na_token"]],
        dtype={pos: "str" for pos in options["text_positions"]},
        **exact_floats,
    )


def _write_json(df: pd.DataFrame, path: str, options: ReadOptions) -> None:
    """JSON whose floats are exact: pandas' writer keeps at most 15 digits and drops inf."""
    exact = df.copy()
    exact.columns = [str(c) for c in df.columns]  # the table reader fails on integer labels
    for pos in range(df.shape[1]):
        values = df.iloc[:, pos]
        if values.dtype == "float64":
            exact.isetitem(pos, values.map(repr).astype(object).where(values.notna(), None).to_numpy())
    exact.to_json(path, orient="table", index="index_col" in options, date_unit="ns")


_CSV = _with_layout(_write_csv, _read_csv, True)
_JSON = _with_layout(_write_json, lambda b, o: pd.read_json(b, orient="table"), True)
_EXCEL = _with_layout(
    lambda df, p, o: df.to_excel(p, index="index_col" in o, engine="openpyxl"),
    lambda b, o: pd.read_excel(b, index_col=o.get("index_col"), engine="openpyxl"),
    True,
)
_XML = _with_layout(
    lambda df, p, o: df.to_xml(p, index="index_col" in o, parser="etree"),
    lambda b, o: pd.read_xml(b, parser="etree"),
    False,
)
_STATA = _with_layout(
    lambda df, p, o: df.to_stata(p, write_index="index_col" in o), lambda b, o: pd.read_stata(b), False
)
_ORC = _with_layout(
    lambda df, p, o: (df.reset_index() if "index_col" in o else df).to_orc(p), lambda b, o: pd.read_orc(b), False
)


def _write_pickle(obj: Any, path: str) -> ReadOptions:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {}


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        _arrow_format("parquet", "parquet", lambda df, p: df.to_parquet(p), pd.read_parquet),
        _arrow_format("feather", "feather", lambda df, p: df.to_feather(p), pd.read_feather),
        Format("orc", "orc", *_ORC, checks=(_only_arrow_safe_objects, _has_columns_and_rows)),
        Format("pickle", "pkl", _write_pickle, lambda b, o: pd.read_pickle(b), frames_only=False),
        Format("csv", "csv", *_CSV, checks=(_plain_unique_labels,)),
        Format("json", "json", *_JSON, checks=(_plain_unique_labels, _unique_index, _ints_fit_doubles, _no_timedeltas)),
        Format(
            "excel", "xlsx", *_EXCEL, requires=("openpyxl",),
            checks=(_plain_unique_labels, _ints_fit_doubles, _no_empty_rows),
        ),
        Format("xml", "xml", *_XML, checks=(_plain_unique_labels, _has_columns_and_rows)),
        Format(
            "stata", "dta", *_STATA,
            checks=(_plain_unique_labels, _ints_fit_doubles, _no_missing_text, _no_missing_integers),
        ),
    )
}
DEFAULT_FRAME_FORMAT = "parquet"
DEFAULT_OBJECT_FORMAT = "pickle"


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


def available_formats() -> list[str]:
    """Formats whose dependencies are installed."""
    return [name for name, fmt in FORMATS.items() if not fmt.missing_modules()]


def default_format_for(result: Any) -> Format:
    """parquet for DataFrames, pickle for anything else."""
    return FORMATS[DEFAULT_FRAME_FORMAT if isinstance(result, pd.DataFrame) else DEFAULT_OBJECT_FORMAT]
