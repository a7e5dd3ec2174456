"""Cache formats: their names, suffixes and the kinds of result each stores, and which format
a result is cached in.

The writers and readers live in a module per library, imported when a result of theirs is
written or read: ``lwdp.formats.frames`` (pandas; every format pandas can both write and
read to a file) and ``lwdp.formats.native`` (polars, Arrow, NumPy, JSON values, pickle).
So a polars pipeline never imports pandas, and ``import lwdp`` imports neither.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import FormatUnavailableError, ResultNotStorableError, UnknownFormatError
from . import native
from .handler import Handler, ReadOptions

logger = logging.getLogger("lwdp")


@dataclass(frozen=True)
class Format:
    """One cache format: a suffix, and the module whose handler writes, reads and refuses
    (``frames``: pandas DataFrames; ``native``: the kinds it lists, and pickle)."""

    name: str
    suffix: str
    module: str = "frames"
    requires: tuple[str, ...] = ()
    # The kinds of result a native format stores, and the family a user names it by
    # (cache_format="parquet" for a polars frame is "polars-parquet").
    kinds: tuple[str, ...] = ()
    family: str = ""

    @property
    def named(self) -> str:
        """What a user calls it in ``cache_format``."""
        return self.family or self.name

    @property
    def frames_only(self) -> bool:
        return self.module == "frames"

    def handler(self) -> Handler:
        return importlib.import_module(f"{__name__}.{self.module}").HANDLERS[self.name]  # type: ignore[no-any-return]

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def write(self, result: Any, path: str) -> ReadOptions:
        return self.handler().write(result, path)

    def read(self, buf: io.BytesIO, options: ReadOptions) -> Any:
        return self.handler().read(buf, options)

    def why_cannot_store(self, result: Any) -> str | None:
        """Why this format would not give ``result`` back unchanged, or None if it would."""
        return self.handler().refuses(result)


_POLARS = (native.POLARS_FRAME, native.POLARS_SERIES)
_ARROW = (native.ARROW_TABLE, native.ARROW_BATCH)

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("parquet", "parquet"),
        Format("feather", "feather"),
        Format("orc", "orc"),
        Format("pickle", "pkl", "native"),
        Format("csv", "csv"),
        Format("json", "json"),
        Format("excel", "xlsx", requires=("openpyxl",)),
        Format("xml", "xml"),
        Format("stata", "dta"),
        Format("polars-parquet", "pl.parquet", "native", ("polars",), _POLARS, "parquet"),
        Format("polars-ipc", "pl.arrow", "native", ("polars",), _POLARS, "feather"),
        Format("polars-csv", "pl.csv", "native", ("polars",), _POLARS, "csv"),
        Format("polars-json", "pl.json", "native", ("polars",), _POLARS, "json"),
        Format("lazy-parquet", "lz.parquet", "native", ("polars",), (native.POLARS_LAZY,), "parquet"),
        Format("lazy-ipc", "lz.arrow", "native", ("polars",), (native.POLARS_LAZY,), "feather"),
        Format("lazy-csv", "lz.csv", "native", ("polars",), (native.POLARS_LAZY,), "csv"),
        Format("lazy-json", "lz.json", "native", ("polars",), (native.POLARS_LAZY,), "json"),
        Format("arrow-parquet", "pa.parquet", "native", (), _ARROW, "parquet"),
        Format("arrow-feather", "pa.arrow", "native", (), _ARROW, "feather"),
        Format("npy", "npy", "native", (), (native.NUMPY_ARRAY,)),
        Format("json-value", "value.json", "native", (), (native.JSON_VALUE,), "json"),
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
    if native.is_pandas(result, "DataFrame"):
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
