"""Which stages of a pipeline are fresh, stale (and why) or never computed, without running
anything: the current hashes compared with the catalog's artifacts and lineage."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import config
from .formats import FORMATS
from .hashing import InputRow, stage_hashes
from .run import dependency_order
from .stage import Stage
from .store.cache import ResultCache
from .store.catalog import Catalog, LineageRow, open_catalog


@dataclass(frozen=True)
class StageStatus:
    """One stage's state: "fresh", "stale", "never computed" or "not cached" (runs every call)."""

    stage: Stage
    hash: str
    state: str
    reasons: list[str] = field(default_factory=list)


def pipeline_status(target: Stage) -> list[StageStatus]:
    """The status of ``target`` and each ancestor, upstream first."""
    root = config.cache_dir()
    catalog = open_catalog(root)
    cache = ResultCache(root, catalog)
    order = dependency_order(target)
    hashes, inputs = stage_hashes(order, catalog, root)
    return [_status_of(stage, hashes[stage], inputs[stage], catalog, cache) for stage in order]


def _status_of(stage: Stage, stage_hash: str, inputs: list[InputRow], catalog: Catalog, cache: ResultCache) -> StageStatus:
    if not stage.cache:
        return StageStatus(stage, stage_hash, "not cached")
    record = catalog.lookup_artifact(stage_hash) or cache.adoptable(stage_hash)
    if record is not None:
        intact = cache.store.is_intact(stage_hash, FORMATS[record.format].suffix, record.size, record.checksum)
        if intact:
            return StageStatus(stage, stage_hash, "fresh")
        return StageStatus(stage, stage_hash, "stale", ["artifact missing or corrupt"])
    previous = _previous_hash(catalog, stage.name, stage_hash)
    if previous is None:
        return StageStatus(stage, stage_hash, "never computed")
    before = [row for row in catalog.inputs_of([previous]) if row.hash == previous]
    return StageStatus(stage, stage_hash, "stale", why_changed(before, inputs))


def _previous_hash(catalog: Catalog, stage_name: str, current: str) -> str | None:
    """The stage's most recent other hash: the newest artifact's, else the newest evaluated."""
    for record in catalog.all_artifacts(stage_name):
        if record.hash != current:
            return record.hash
    latest = catalog.latest_hash(stage_name)
    return latest if latest != current else None


def why_changed(before: list[LineageRow], now: list[InputRow]) -> list[str]:
    """What differs between a stage's previous inputs and its current ones; "code changed"
    when every input is the same (the hash covers nothing else)."""
    old = {row.input_name: row for row in before}
    new = {name: (kind, digest, path) for name, kind, digest, path in now}
    reasons = [f"input `{name}` added" for name in sorted(set(new) - set(old))]
    reasons += [f"input `{name}` removed" for name in sorted(set(old) - set(new))]
    for name in sorted(set(old) & set(new)):
        kind, digest, path = new[name]
        if old[name].input_hash == digest and old[name].input_kind == kind:
            continue
        if kind == "raw":
            reasons.append(f"raw input `{name}` ({path}) content changed")
        elif kind == "stage":
            reasons.append(f"upstream `{name}` changed")
        else:
            reasons.append(f"parameter `{name}` changed")
    return reasons or ["code changed"]
