"""Is a cached result reproducible? Compute the stage again from its cached inputs and
compare the result with its artifact (``lwdp verify --recompute``).

A stage whose result differs for the same hash depends on something its hash can't see:
unseeded randomness, the clock, a file or service it reads undeclared. Nothing is written:
upstreams come from the cache (an uncached one is computed in memory), the new result is
written to a temporary file in the artifact's format and read back, so both sides went
through the same format, and compared column by column.
"""

from __future__ import annotations

import importlib
import io
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..errors import UnknownStageError
from ..formats import FORMATS, native
from ..graph import dependency_order, registered
from ..hashing.stage_hash import stage_hashes
from ..run.context import RunContext
from ..run.cutoff import value_content
from ..run.serial import PipelineRun
from ..run.steps import call_stage
from ..store.cache import Hit

if TYPE_CHECKING:
    from ..graph import StageNode
    from ..store.cache import ResultCache

Outcome = Literal["reproduced", "differs", "skipped"]
_CAUSES = "unseeded randomness, the clock, or a file or service it reads without declaring it"


@dataclass(frozen=True)
class Reproduction:
    """What recomputing one cached stage gave: its result again, another (``detail`` says
    the first difference), or nothing to compare (``detail`` says why)."""

    stage: str
    hash: str
    outcome: Outcome
    detail: str = ""

    def __str__(self) -> str:
        if self.outcome == "reproduced":
            return f"reproduced  {self.stage} {self.hash[:12]}"
        if self.outcome == "skipped":
            return f"skipped     {self.stage}: {self.detail}"
        return f"DIFFERS     {self.stage} {self.hash[:12]}: {self.detail}. Likely causes: {_CAUSES}"


def find_stage(name: str) -> StageNode:
    """The stage of that qualified name (``pipeline.stg_total``, as the catalog names it),
    importing its module from the working directory as a run would.

    :raises UnknownStageError: no module makes a stage of that name.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parts = name.split("[", 1)[0].split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        found = registered(name)
        if found is not None:
            found.refresh()  # a partitioned stage lists its files
            return found
    raise UnknownStageError(f"no stage named {name!r}: run from the pipeline's directory, so that its module imports")


def recompute_cached(names: list[str], count: int, catalog_names: list[str]) -> list[Reproduction]:
    """Recompute the stages named (each partition of a partitioned one), or else ``count``
    stages chosen at random among those of ``catalog_names`` that are cached at their
    current hash, and compare."""
    if names:
        return [reproduce(part) for name in names for part in (find_stage(name).partitions or (find_stage(name),))]
    candidates = []
    for name in catalog_names:
        try:
            candidates.append(find_stage(name))
        except UnknownStageError:
            continue
    random.shuffle(candidates)
    results: list[Reproduction] = []
    for stage in candidates:
        found = reproduce(stage)
        if found.outcome != "skipped":
            results.append(found)
            if len(results) == count:
                break
    return results


def reproduce(stage: StageNode) -> Reproduction:
    """Recompute ``stage`` from its cached inputs and compare with its artifact."""
    with RunContext() as context:
        order = dependency_order(stage)
        hashes, _ = stage_hashes(order, context.catalog, context.settings)
        stage_hash = hashes[stage]
        if not stage.cache:
            return Reproduction(stage.name, stage_hash, "skipped", "not cached (cache=False)")
        cache = context.cache
        cached = cache.peek(stage.name, stage_hash)
        record = cache.catalog.lookup_artifact(stage_hash)
        if not isinstance(cached, Hit) or record is None:
            return Reproduction(stage.name, stage_hash, "skipped", "not cached at its current hash: run it first")
        try:
            result = _computed(stage, _Upstreams(cache, hashes))
        except _NotCached as gone:
            return Reproduction(stage.name, stage_hash, "skipped", f"its upstream {gone} is not cached")
        except Exception as exc:
            return Reproduction(stage.name, stage_hash, "skipped", f"computing it again raised {type(exc).__name__}: {exc}")
        again = _through_format(result, record.format)
    difference = first_difference(cached.value, again)
    return Reproduction(stage.name, stage_hash, "differs" if difference else "reproduced", difference or "")


class _NotCached(Exception):
    """An upstream the stage needs has no readable artifact: nothing to recompute from."""


class _Upstreams:
    """The results a recomputation needs, read from the cache (never marked used) or, for
    an uncached upstream, computed in memory; each once."""

    def __init__(self, cache: ResultCache, hashes: dict[StageNode, str]) -> None:
        self.cache, self.hashes = cache, hashes
        self.values: dict[StageNode, Any] = {}

    def __call__(self, stage: StageNode) -> Any:
        if stage not in self.values:
            if stage.cache:
                found = self.cache.peek(stage.name, self.hashes[stage])
                if not isinstance(found, Hit):
                    raise _NotCached(stage.name)
                self.values[stage] = found.value
            else:
                self.values[stage] = _computed(stage, self)
        return self.values[stage]


def _computed(stage: StageNode, upstreams: _Upstreams) -> Any:
    result, _ = call_stage(stage, PipelineRun.arguments(stage, upstreams), upstreams.cache.settings)
    return result


def _through_format(result: Any, format_name: str) -> Any:
    """``result`` written in the format and read back, as its artifact was."""
    fmt = FORMATS[format_name]
    with tempfile.TemporaryDirectory(prefix="lwdp-verify-") as folder:
        path = os.path.join(folder, f"result{fmt.suffix}")
        options = fmt.write(result, path)
        with open(path, "rb") as file:
            return fmt.read(io.BytesIO(file.read()), options)


def first_difference(cached: Any, again: Any) -> str | None:
    """Where ``again`` first differs from ``cached``, in words; None when they are equal."""
    if native.kind_of(cached) == native.POLARS_LAZY:
        cached, again = cached.collect(), again.collect()
    if native.kind_of(cached) == native.POLARS_FRAME and native.kind_of(again) == native.POLARS_FRAME:
        return _polars_difference(cached, again)
    if isinstance(cached, pd.DataFrame) and isinstance(again, pd.DataFrame):
        if list(cached.columns) != list(again.columns):
            return f"columns {list(cached.columns)} cached, {list(again.columns)} now"
        if len(cached) != len(again):
            return f"{len(cached):,} rows cached, {len(again):,} now"
        for position, column in enumerate(cached.columns):
            said = _series_difference(cached.iloc[:, position], again.iloc[:, position], f"column `{column}`")
            if said:
                return said
        return None if cached.index.equals(again.index) else "the index differs"
    if isinstance(cached, pd.Series) and isinstance(again, pd.Series):
        return _series_difference(cached, again, "the series")
    return None if _same(cached, again) else f"the value differs: {_short(cached)} cached, {_short(again)} now"


def _polars_difference(cached: Any, again: Any) -> str | None:
    if cached.columns != again.columns:
        return f"columns {cached.columns} cached, {again.columns} now"
    if cached.height != again.height:
        return f"{cached.height:,} rows cached, {again.height:,} now"
    for name in cached.columns:
        left, right = cached.get_column(name), again.get_column(name)
        if left.dtype != right.dtype:
            return f"column `{name}`: dtype {left.dtype} cached, {right.dtype} now"
        if left.equals(right):
            continue
        row = next(i for i, (a, b) in enumerate(zip(left.to_list(), right.to_list())) if not _same(a, b))
        said = f"column `{name}` differs first at row {row}: {_short(left[row])} cached, {_short(right[row])} now"
        try:
            if cached.sort(cached.columns).equals(again.sort(again.columns)):
                said += " (the same rows in another order: a join or group_by without maintain_order=True?)"
        except Exception:  # columns polars can't sort by (nested types)
            pass
        return said
    return None


def _series_difference(cached: pd.Series, again: pd.Series, what: str) -> str | None:
    if cached.dtype != again.dtype:
        return f"{what}: dtype {cached.dtype} cached, {again.dtype} now"
    if len(cached) != len(again):
        return f"{what}: {len(cached):,} values cached, {len(again):,} now"
    left, right = cached.reset_index(drop=True), again.reset_index(drop=True)
    equal: Any
    try:
        equal = ((left == right).fillna(False).astype(bool) | (left.isna() & right.isna())).to_numpy()
    except (TypeError, ValueError):  # cells that don't compare as a whole (arrays, mixed objects)
        equal = [_same(a, b) for a, b in zip(left, right)]
    for row, same in enumerate(equal):
        if not same and not _same(left.iloc[row], right.iloc[row]):
            return f"{what} differs first at row {row}: {_short(left.iloc[row])} cached, {_short(right.iloc[row])} now"
    return None


def _same(cached: Any, again: Any) -> bool:
    """Equal, or both missing, or pickling to the same bytes (arrays, nested values)."""
    try:
        if bool(cached == again):
            return True
    except (TypeError, ValueError):
        pass
    try:
        if bool(pd.isna(cached)) and bool(pd.isna(again)):
            return True
    except (TypeError, ValueError):
        pass
    return value_content(cached) == value_content(again) is not None


def _short(value: Any) -> str:
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # 0.25, not np.float64(0.25)
        value = value.item()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
