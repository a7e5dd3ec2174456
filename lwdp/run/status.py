"""Which stages of a pipeline are fresh, stale (and why) or never computed, without running
anything: the current hashes and the cache's own probe (`ResultCache.probe`), the answer a
run acts on, so that what this says and what the next call does can't disagree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..graph import StageNode, dependency_order
from ..hashing.manifest import raw_content_changed, stage_manifest, why_rerun
from ..hashing.stage_hash import InputRow, stage_hashes
from ..store.cache import Loadable, Miss, MissReason, Source
from ..store.catalog import Catalog
from .context import RunContext
from .cutoff import REUSED
from .undeclared import UNDECLARED

if TYPE_CHECKING:
    from ..stage import Stage

State = Literal["fresh", "stale", "never computed", "not cached"]


@dataclass(frozen=True)
class StageStatus:
    """One stage's state: "fresh", "stale", "never computed" or "not cached" (runs every
    call); for a stale stage why it would rerun (`lwdp.hashing.manifest.why_rerun`), and for a
    fresh one where its result would come from."""

    stage: Stage
    hash: str
    state: State
    reasons: list[str] = field(default_factory=list)
    source: Source | None = None
    reused: str | None = None  # a fresh result reused by early cutoff: why (`lwdp.run.cutoff`)
    undeclared: dict[str, list[str]] = field(default_factory=dict)  # what computing it read undeclared

    def __str__(self) -> str:
        if self.stage.partitions and self.state == "fresh":
            return f"stage {self.stage.name}: fresh (its {len(self.stage.partitions)} partitions cached)"
        if self.state == "fresh":
            where = " in the shared store, to be downloaded" if self.source is Source.SHARED else ""
            reused = f"; reused, as {self.reused}" if self.reused else ""
            return f"stage {self.stage.name}: fresh (cached as {self.hash[:12]}{where}{reused}){self.undeclared_note}"
        if self.state == "not cached":
            return f"stage {self.stage.name}: not cached (cache=False): runs on every call"
        return f"stage {self.stage.name}: {self.state}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")

    @property
    def undeclared_note(self) -> str:
        """What computing it read without declaring it ("; it read ..."), or nothing."""
        read = [*self.undeclared.get("files", []), *(f"{path} (listed)" for path in self.undeclared.get("listings", []))]
        said = f"; it read {', '.join(read)}, not among its inputs: a change there won't rerun it" if read else ""
        if self.undeclared.get("connections"):
            said += f"; it connected to {', '.join(self.undeclared['connections'])}"
        return said


def pipeline_status(target: Stage) -> list[StageStatus]:
    """The status of ``target`` and each ancestor, upstream first."""
    order = dependency_order(target)
    with RunContext() as context:
        hashes, inputs = stage_hashes(order, context.catalog, context.settings)
        statuses: dict[StageNode, StageStatus] = {}
        for stage in order:
            if stage.partitions:
                statuses[stage] = _combination_status(stage, hashes[stage], [statuses[p] for p in stage.partitions])
            elif not stage.cache:
                statuses[stage] = StageStatus(stage, hashes[stage], "not cached")
            else:
                found = context.cache.probe(stage.name, hashes[stage], stage.format)
                statuses[stage] = stage_status(context.catalog, stage, hashes[stage], inputs[stage], found)
    return list(statuses.values())


def _combination_status(stage: Stage, stage_hash: str, partitions: list[StageStatus]) -> StageStatus:
    """A partitioned stage's state, from its partitions': fresh when all are, else which
    would be computed and why."""
    stale = [status for status in partitions if status.state != "fresh"]
    if not stale:
        return StageStatus(stage, stage_hash, "fresh")
    if partitions[0].state == "not cached":
        return StageStatus(stage, stage_hash, "not cached")
    state: State = "never computed" if all(status.state == "never computed" for status in partitions) else "stale"
    return StageStatus(stage, stage_hash, state, [reason for status in stale for reason in status.reasons])


def stage_status(catalog: Catalog, stage: Stage, stage_hash: str, inputs: list[InputRow], found: Loadable | Miss) -> StageStatus:
    """What the probe's answer means for ``stage``: fresh, or why it would be computed (what
    changed since its result was last cached, when there is no result for this hash)."""
    if isinstance(found, Loadable):
        manifest = catalog.stage_manifest(stage_hash) or {}
        reused = manifest.get(REUSED)
        because = reused.get("because") if isinstance(reused, dict) else None
        return StageStatus(
            stage, stage_hash, "fresh", source=found.source, reused=because if isinstance(because, str) else None,
            undeclared=manifest.get(UNDECLARED) or {},
        )
    if found.reason is not MissReason.NEVER_COMPUTED:
        return StageStatus(stage, stage_hash, "stale", [str(found)])
    stored_before, previous = catalog.previous_manifest(stage.name, stage_hash)
    reasons = why_rerun(stored_before, previous, stage_manifest(stage, inputs))
    if stage.partition is not None:  # one file of a partitioned stage: say which, and its change in short
        content = next((raw_content_changed(name, path) for name, _, _, path in inputs if path == stage.partition), None)
        reasons = [f"partition {stage.partition}: {'content changed' if reason == content else reason}" for reason in reasons]
    return StageStatus(stage, stage_hash, "stale" if previous or stored_before else "never computed", reasons)
