"""How the csv, json, xml and excel files hold a frame of cells (see ``lwdp.formats.codec``), and
the options each records to read them back as they were written; how Stata files are written."""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from .handler import missing_text

Options = dict[str, Any]


def _missing_token(cells: pd.DataFrame) -> str:
    """The text for missing values: one no cell of the frame holds."""
    return missing_text(lambda text: any((cells[c] == text).any() for c in cells.columns))


def write_csv(cells: pd.DataFrame, path: str, options: Options) -> None:
    """A CRLF line terminator makes the writer quote any field holding a line break."""
    options["na_token"] = _missing_token(cells)
    cells.to_csv(path, index=False, na_rep=options["na_token"], lineterminator="\r\n")
    with open(path, "rb") as written:
        if b"\x00" in written.read():  # text holding NUL, at which pandas 2's C parser ends a field
            options["engine"] = "python"


def read_csv(buf: io.BytesIO, options: Options) -> pd.DataFrame:
    return pd.read_csv(
        buf, dtype=str, keep_default_na=False, na_values=[options["na_token"]], skip_blank_lines=False,
        engine=options.get("engine", "c"),
    )


def json_native(values: pd.Series) -> bool:
    """JSON numbers keep integers exactly (not floats: pandas writes 15 digits)."""
    return isinstance(values.dtype, np.dtype) and values.dtype.kind in "ib"


def write_json(cells: pd.DataFrame, path: str, options: Options) -> None:
    cells.to_json(path, orient="table", index=False)


def read_json(buf: io.BytesIO, options: Options) -> pd.DataFrame:
    return pd.read_json(buf, orient="table")


def write_xml(cells: pd.DataFrame, path: str, options: Options) -> None:
    """Cells as attributes, which keep line breaks, tabs and surrounding spaces (as character
    references, so no pretty printing); a missing value is a missing attribute."""
    options["names"] = list(cells.columns)
    cells.to_xml(path, index=False, attr_cols=list(cells.columns), parser="etree", pretty_print=False)


def read_xml(buf: io.BytesIO, options: Options) -> pd.DataFrame:
    names = options["names"]
    raw = pd.read_xml(buf, parser="etree", converters=dict.fromkeys(names, _as_tuple))
    return raw.reindex(columns=names).map(lambda v: v[0] if isinstance(v, tuple) else None)


def _as_tuple(value: Any) -> Any:
    """An XML attribute in a 1-tuple, which pandas' reader does not take for missing ("NA", "")."""
    return (value,)


def excel_native(values: pd.Series) -> bool:
    """Excel numbers are doubles with 15 significant digits: columns of integers up to
    2**53 and of finite floats that 15 digits give back (and not -0.0) stay numbers."""
    if not isinstance(values.dtype, np.dtype) or values.dtype.kind not in "biuf":
        return False
    present = values.dropna().to_numpy()
    if values.dtype.kind in "iu":
        return bool(((present >= -(2**53)) & (present <= 2**53)).all())
    if values.dtype.kind == "f":
        floats = present.astype("float64").tolist()
        return all(math.isfinite(v) and float(f"{v:.15g}") == v and str(v) != "-0.0" for v in floats)
    return True


def write_excel(cells: pd.DataFrame, path: str, options: Options) -> None:
    options["na_token"] = _missing_token(cells)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        cells.to_excel(writer, index=False, na_rep=options["na_token"], merge_cells=False)
        for row in writer.sheets["Sheet1"].iter_rows():
            for cell in row:
                if cell.data_type in ("f", "e"):  # openpyxl takes "=1+1" for a formula, "#N/A" for an error
                    cell.data_type = "s"


def read_excel(buf: io.BytesIO, options: Options) -> pd.DataFrame:
    """The reader drops trailing empty cells: a column of empty strings may be missing."""
    raw = pd.read_excel(buf, engine="openpyxl", dtype=object, keep_default_na=False, na_values=[options["na_token"]])
    width = options["row_numbers"] + options["index_levels"] + len(options["dtypes"])
    return raw.reindex(columns=[*raw.columns, *range(raw.shape[1], width)], fill_value="")


# pandas writes 64-bit numbers that Stata's 32-bit types would take for missing values
# (integers beyond 2147483620, floats beyond 1.7e38) as doubles, but 32-bit ones as they
# are, so they would come back missing.
_WIDER_FOR_STATA = {"int32": "int64", "Int32": "Int64", "float32": "float64", "Float32": "Float64"}


def write_stata(df: pd.DataFrame, path: str) -> None:
    """Format 118: Unicode text. pandas warns that it renames columns and writes categories
    as text labels; lwdp restores both."""
    wider = {c: _WIDER_FOR_STATA[str(t)] for c, t in df.dtypes.items() if str(t) in _WIDER_FOR_STATA}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.InvalidColumnName)
        warnings.simplefilter("ignore", pd.errors.ValueLabelTypeMismatch)
        df.astype(wider).to_stata(path, write_index=False, version=118)
