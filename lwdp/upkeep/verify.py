"""Check every artifact against its catalog row and manifest, and optionally repair.

What can be wrong: a row whose file is missing, truncated or altered (``missing``,
``corrupt``); a file no row lists (``unrecorded`` when its manifest and checksum make it
adoptable, ``orphan`` otherwise); a row whose manifest is gone (``no-manifest``); a file
lwdp did not put where it is (``stray``). Where an artifact lives, and so what counts as
missing, is `Placement`'s rule: with a shared store, a local copy never downloaded is not
damage, and repairing a row never deletes what the store still holds.
Temporary files of writers that died are not damage (never read) and are listed apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import config
from ..formats import FORMATS
from ..store.adoption import adopt, adoptable, local_stage_manifest
from ..store.artifact_manifest import manifest_of, record_from_manifest
from ..store.artifact_store import ArtifactStore, bytes_match
from ..store.cache import ResultCache
from ..store.catalog import open_catalog
from ..store.placement import Placement
from ..store.records import ArtifactRecord
from ..store.shared_columns import check_files, side_files

if TYPE_CHECKING:
    from ..store.remote import RemoteArtifactStore


Damage = Literal["missing", "corrupt", "no-manifest"]


@dataclass(frozen=True)
class Problem:
    """One damaged or unlisted artifact."""

    kind: str  # a `Damage`, "unrecorded", "orphan" or "stray"; for the shared store "shared-..." (below)
    hash: str  # "" for a stray file
    stage: str | None
    path: str  # a URL for an object in the shared store
    repaired: str | None = None  # what --repair did about it

    def __str__(self) -> str:
        done = f"  -> {self.repaired}" if self.repaired else ""
        return f"{self.kind:<11} {self.stage or '?':<30} {self.hash[:12]}  {self.path}{done}"


@dataclass
class VerifyReport:
    """What `verify` found (and, with ``repair=True``, did)."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    dead_temp_files: list[Path] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is (left) wrong: every problem found was repaired."""
        return all(p.repaired for p in self.problems) if self.repaired else not self.problems

    def __repr__(self) -> str:
        lines = [f"VerifyReport: {self.checked} artifacts checked, {len(self.problems)} problems"]
        lines += [f"  {p}" for p in self.problems]
        if self.dead_temp_files:
            verb = "removed" if self.repaired else "left by dead writers"
            lines.append(f"  {len(self.dead_temp_files)} temporary files {verb}")
        return "\n".join(lines)


def verify(repair: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check every artifact's file and checksum; with ``repair``, make the cache consistent.

    Repair drops damaged artifacts (the next run recomputes them), adopts files whose
    manifest and checksum agree, rewrites missing manifests, removes unlisted and stray
    files and the temporary files of dead writers. Artifacts being written are left alone.
    """
    settings = config.settings(cache_dir)
    catalog = open_catalog(settings)
    cache = ResultCache(settings, catalog)
    report = VerifyReport(repaired=repair)
    placement = cache.placement
    recorded = {record.hash: record for record in catalog.all_artifacts()}
    local = cache.store.artifacts()
    theirs = placement.teammates_rows(recorded, local)
    recorded = {h: record for h, record in recorded.items() if h not in theirs}
    for record in recorded.values():
        report.checked += 1
        kind = _damage(cache.store, record)
        if kind is None or (kind == "missing" and placement.local_copy_optional):  # downloaded when needed
            continue
        problem = Problem(kind, record.hash, record.stage, cache.store.describe(record.hash, FORMATS[record.format].suffix))
        report.problems.append(_repair(cache, problem, record, placement) if repair else problem)
    for stored in cache.store.unlisted_files(set(recorded), local):
        report.checked += 1
        problem = _check_unrecorded(cache, stored.hash, str(stored.path))
        report.problems.append(_repair(cache, problem, None, placement) if repair else problem)
    _report_strays(cache.store, "stray", report, repair)
    if placement.shared_store is not None:
        _report_strays(placement.shared_store, "shared-stray", report, repair)
        _verify_shared(cache, placement.shared_store, recorded, report, repair)
    report.dead_temp_files = cache.store.dead_temp_files()
    if repair:
        for path in report.dead_temp_files:
            path.unlink(missing_ok=True)
    return report


def _damage(store: ArtifactStore, record: ArtifactRecord) -> Damage | None:
    """What is wrong with the artifact ``record`` lists, in ``store``: written once for the
    local cache and the shared store. Its manifest must be there and describe it."""
    intact = check_files(store, record, keep_bytes=False).intact
    if intact is None:
        return "missing"
    if not intact:
        return "corrupt"
    manifest = store.read_manifest(record.hash)
    try:
        described = record_from_manifest(manifest, record.hash) if manifest is not None else None
    except ValueError:
        described = None
    if described is None or (described.format, described.size, described.checksum) != (record.format, record.size, record.checksum):
        return "no-manifest"
    return None


def _report_strays(store: ArtifactStore, kind: str, report: VerifyReport, repair: bool) -> None:
    report.problems += [Problem(kind, "", None, where, "removed" if repair else None) for where, _ in store.sweep_strays(repair)]


def _check_unrecorded(cache: ResultCache, stage_hash: str, path: str) -> Problem:
    record = adoptable(cache.store, stage_hash)
    if record is not None:
        return Problem("unrecorded", stage_hash, record.stage, path)
    stage = (cache.store.read_manifest(stage_hash) or {}).get("stage")
    return Problem("orphan", stage_hash, stage if isinstance(stage, str) else None, path)


def _repair(cache: ResultCache, problem: Problem, record: ArtifactRecord | None, placement: Placement) -> Problem:
    with cache.locks.try_hold(problem.hash) as free:
        if not free:
            return problem  # being written right now: not ours to touch
        suffix = Path(problem.path).name.partition(".")[2]
        if problem.kind == "no-manifest" and record is not None:
            cache.store.write_manifest(record.hash, manifest_of(record, local_stage_manifest(cache.store, record.hash)))
            done = "manifest rewritten"
        elif problem.kind == "unrecorded" and (adopted := adoptable(cache.store, problem.hash)) is not None:
            adopt(cache.catalog, cache.store, adopted)
            done = "adopted"
        elif record is not None and placement.local_copy_optional:  # the row stands for the shared copy
            cache.store.delete(problem.hash, suffix)
            done = "local copy removed; downloaded from the shared store when needed"
        else:
            cache.catalog.delete_artifact(problem.hash)  # the row first, then the files
            cache.store.delete(problem.hash, suffix)
            done = "removed; the next run recomputes it" if record is not None else "removed"
    return Problem(problem.kind, problem.hash, problem.stage, problem.path, done)


_SHARED_KINDS = {"missing": "shared-missing", "corrupt": "shared-corrupt", "no-manifest": "shared-unpublished"}


def _verify_shared(
    cache: ResultCache, remote: RemoteArtifactStore, recorded: dict[str, ArtifactRecord], report: VerifyReport, repair: bool,
) -> None:
    """Check the shared store's object and manifest of every artifact the catalog lists:
    "shared-missing" (no object), "shared-unpublished" (an object without a manifest that
    describes it), "shared-corrupt" (bytes that don't match). Repair publishes the local
    copy again where it is intact, else removes what is damaged (the next run recomputes
    and publishes it)."""
    for record in recorded.values():
        report.checked += 1
        damage = _damage(remote, record)
        if damage is None:
            continue
        suffix = FORMATS[record.format].suffix
        problem = Problem(_SHARED_KINDS[damage], record.hash, record.stage, remote.describe(record.hash, suffix))
        report.problems.append(_repair_shared(cache, remote, problem, record, suffix) if repair else problem)


def _repair_shared(cache: ResultCache, remote: RemoteArtifactStore, problem: Problem, record: ArtifactRecord, suffix: str) -> Problem:
    remote.delete(problem.hash, suffix)
    if side_files(record):  # written before the store was set: it links local files, and objects can't
        cache.catalog.delete_artifact(record.hash)
        cache.store.delete(record.hash, suffix)
        done = "removed (it linked local files); the next run recomputes it and publishes it whole"
        return Problem(problem.kind, problem.hash, problem.stage, problem.path, done)
    local_copy = cache.store.get(record.hash, suffix)
    if local_copy is not None and bytes_match(local_copy, record.size, record.checksum):
        remote.publish(record.hash, suffix, local_copy, manifest_of(record, local_stage_manifest(cache.store, record.hash)))
        done = "published again from the local copy"
    else:
        done = "removed from the shared store; the next run recomputes it"
    return Problem(problem.kind, problem.hash, problem.stage, problem.path, done)
