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
from ..formats import FORMATS
from ..graph import dependency_order, registered
from ..hashing.stage_hash import stage_hashes
from ..run.context import RunContext
from ..run.cutoff import value_content
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
            return found
    raise UnknownStageError(f"no stage named {name!r}: run from the pipeline's directory, so that its module imports")


def recompute_cached(names: list[str], count: int, catalog_names: list[str]) -> list[Reproduction]:
    """Recompute the stages named, or else ``count`` stages chosen at random among those of
    ``catalog_names`` that are cached at their current hash, and compare."""
    stages = [find_stage(name) for name in names]
    stages = [part for stage in stages for part in (stage.partitions or (stage,))]
    if not names:
        candidates = []
        for name in catalog_names:
            try:
                candidates.append(find_stage(name))
            except UnknownStageError:
                continue
        random.shuffle(candidates)
        stages = candidates
    results: list[Reproduction] = []
    for stage in stages:
        found = reproduce(stage)
        if names or found.outcome != "skipped":
            results.append(found)
        if not names and len(results) == count:
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
        values: dict[StageNode, Any] = {}
        for node in order[:-1]:
            value = _value(cache, node, hashes[node], values)
            if value is None:
                return Reproduction(stage.name, stage_hash, "skipped", f"its upstream {node.name} is not cached")
            values[node] = value[0]
        result, _ = call_stage(stage, _arguments(stage, values), context.settings)
        again = _through_format(result, record.format)
    difference = first_difference(cached.value, again)
    return Reproduction(stage.name, stage_hash, "differs" if difference else "reproduced", difference or "")


def _value(cache: ResultCache, stage: StageNode, stage_hash: str, values: dict[StageNode, Any]) -> tuple[Any] | None:
    """(the result of an upstream,) from the cache, or computed in memory if it is not cached."""
    if stage.cache:
        found = cache.peek(stage.name, stage_hash)
        return (found.value,) if isinstance(found, Hit) else None
    result, _ = call_stage(stage, _arguments(stage, values), cache.settings)
    return (result,)


def _arguments(stage: StageNode, values: dict[StageNode, Any]) -> dict[str, Any]:
    return {
        inp.name: values[inp.value] if inp.kind == "stage" else inp.value
        for inp in stage.inputs
        if inp.name in stage.passed_inputs
    }


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
    if isinstance(cached, pd.DataFrame) and isinstance(again, pd.DataFrame):
        if list(cached.columns) != list(again.columns):
            return f"columns {list(cached.columns)} cached, {list(again.columns)} now"
        if len(cached) != len(again):
            return f"{len(cached):,} rows cached, {len(again):,} now"
        for column in cached.columns:
            said = _series_difference(cached[column], again[column], f"column `{column}`")
            if said:
                return said
        if not cached.index.equals(again.index):
            return "the index differs"
        return None
    if isinstance(cached, pd.Series) and isinstance(again, pd.Series):
        return _series_difference(cached, again, "the series")
    try:
        same = bool(cached == again)
    except Exception:  # arrays and the like: compare what they pickle to
        same = value_content(cached) == value_content(again) is not None
    return None if same else f"the value differs: {_short(cached)} cached, {_short(again)} now"


def _series_difference(cached: pd.Series, again: pd.Series, what: str) -> str | None:
    if cached.dtype != again.dtype:
        return f"{what}: dtype {cached.dtype} cached, {again.dtype} now"
    if len(cached) != len(again):
        return f"{what}: {len(cached):,} values cached, {len(again):,} now"
    left, right = cached.reset_index(drop=True), again.reset_index(drop=True)
    both_missing = left.isna() & right.isna()
    equal = (left == right).fillna(False).astype(bool) | both_missing
    if bool(equal.all()):
        return None
    row = int((~equal).to_numpy().argmax())
    return f"{what} differs first at row {row}: {_short(left.iloc[row])} cached, {_short(right.iloc[row])} now"


def _short(value: Any) -> str:
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # 0.25, not np.float64(0.25)
        value = value.item()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
