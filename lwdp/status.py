"""Which stages of a pipeline are fresh, stale (and why) or never computed, without running
anything: the current hashes compared with the catalog's artifacts and lineage."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import config
from .formats import FORMATS
from .hashing import InputRow, stage_hashes
from .manifest import stage_manifest, why_rerun
from .run import dependency_order
from .stage import Stage
from .store.cache import ResultCache
from .store.catalog import open_catalog


@dataclass(frozen=True)
class StageStatus:
    """One stage's state: "fresh", "stale", "never computed" or "not cached" (runs every
    call), and for a stale stage why it would rerun (`lwdp.manifest.why_rerun`)."""

    stage: Stage
    hash: str
    state: str
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.state == "fresh":
            return f"stage {self.stage.name}: fresh (cached as {self.hash[:12]})"
        if self.state == "not cached":
            return f"stage {self.stage.name}: not cached (cache=False): runs on every call"
        return f"stage {self.stage.name}: {self.state}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def pipeline_status(target: Stage) -> list[StageStatus]:
    """The status of ``target`` and each ancestor, upstream first."""
    root = config.cache_dir()
    catalog = open_catalog(root)
    cache = ResultCache(root, catalog)
    order = dependency_order(target)
    hashes, inputs = stage_hashes(order, catalog, root)
    return [_status_of(stage, hashes[stage], inputs[stage], cache) for stage in order]


def _status_of(stage: Stage, stage_hash: str, inputs: list[InputRow], cache: ResultCache) -> StageStatus:
    if not stage.cache:
        return StageStatus(stage, stage_hash, "not cached")
    record = cache.catalog.lookup_artifact(stage_hash) or cache.adoptable(stage_hash)
    if record is not None:
        intact = cache.store.is_intact(stage_hash, FORMATS[record.format].suffix, record.size, record.checksum)
        if intact:
            return StageStatus(stage, stage_hash, "fresh")
        return StageStatus(stage, stage_hash, "stale", ["artifact missing or corrupt"])
    stored_before, previous = cache.catalog.previous_manifest(stage.name, stage_hash)
    reasons = why_rerun(stored_before, previous, stage_manifest(stage, inputs))
    return StageStatus(stage, stage_hash, "stale" if previous or stored_before else "never computed", reasons)
