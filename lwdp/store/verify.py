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
from typing import TYPE_CHECKING

from .. import config
from ..formats import FORMATS
from .artifacts import LocalArtifactStore, checksum_bytes
from .cache import ResultCache, manifest_of, record_from_manifest
from .placement import Placement
from .records import ArtifactRecord

if TYPE_CHECKING:
    from .remote import RemoteArtifactStore


@dataclass(frozen=True)
class Problem:
    """One damaged or unlisted artifact."""

    kind: str  # "missing" | "corrupt" | "no-manifest" | "unrecorded" | "orphan" | "stray", or "shared-..." (below)
    hash: str
    stage: str | None
    path: Path | str  # a URL for an object in the shared store
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
    manifest and checksum agree, rewrites missing manifests, removes unlisted files and
    the temporary files of dead writers. Artifacts being written are left alone.
    """
    root = config.cache_dir(cache_dir)
    from .catalog import open_catalog  # SQLAlchemy: not imported by runs that only read

    catalog = open_catalog(root)
    cache = ResultCache(root, catalog)
    report = VerifyReport(repaired=repair)
    placement = Placement.of(cache)
    recorded = {record.hash: record for record in catalog.all_artifacts()}
    local = cache.store.payload_names()
    theirs = placement.teammates_rows(recorded, local)
    recorded = {h: record for h, record in recorded.items() if h not in theirs}
    for record in recorded.values():
        report.checked += 1
        problem = _check_recorded(cache.store, record, placement.local_copy_optional)
        if problem is not None:
            report.problems.append(_repair(cache, problem, record, placement) if repair else problem)
    for stored in cache.store.unlisted_files(set(recorded), local):
        report.checked += 1
        problem = _check_unrecorded(cache, stored.hash, stored.path)
        report.problems.append(_repair(cache, problem, None, placement) if repair else problem)
    for path in cache.store.stray_files():
        if repair:
            path.unlink(missing_ok=True)
        report.problems.append(Problem("stray", "", None, path, "removed" if repair else None))
    if placement.shared_store is not None:
        _verify_shared(cache, recorded, report, repair)
    report.dead_temp_files = cache.store.dead_temp_files()
    if repair:
        for path in report.dead_temp_files:
            path.unlink(missing_ok=True)
    return report


def _check_recorded(store: LocalArtifactStore, record: ArtifactRecord, copy_optional: bool) -> Problem | None:
    """A listed artifact's local file; with ``copy_optional`` (a shared store holds it), a
    copy never downloaded is no problem, and the shared store's object is checked apart."""
    path = store.path_for(record.hash, FORMATS[record.format].suffix)
    intact = store.is_intact(record.hash, FORMATS[record.format].suffix, record.size, record.checksum)
    if intact is None:
        return None if copy_optional else Problem("missing", record.hash, record.stage, path)
    if not intact:
        return Problem("corrupt", record.hash, record.stage, path)
    if store.read_manifest(record.hash) is None:
        return Problem("no-manifest", record.hash, record.stage, path)
    return None


def _check_unrecorded(cache: ResultCache, stage_hash: str, path: Path) -> Problem:
    record = cache.adoptable(stage_hash)
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
            cache.store.write_manifest(record.hash, manifest_of(record))
            done = "manifest rewritten"
        elif problem.kind == "unrecorded" and (adopted := cache.adoptable(problem.hash)) is not None:
            cache.record_adopted(adopted)
            done = "adopted"
        elif record is not None and placement.local_copy_optional:  # the row stands for the shared copy
            cache.store.delete(problem.hash, suffix)
            done = "local copy removed; downloaded from the shared store when needed"
        else:
            cache.catalog.delete_artifact(problem.hash)  # the row first, then the files
            cache.store.delete(problem.hash, suffix)
            done = "removed; the next run recomputes it" if record is not None else "removed"
    return Problem(problem.kind, problem.hash, problem.stage, problem.path, done)


def _verify_shared(cache: ResultCache, recorded: dict[str, ArtifactRecord], report: VerifyReport, repair: bool) -> None:
    """Check the shared store's object and manifest of every artifact the catalog lists:
    "shared-missing" (no object), "shared-unpublished" (an object without its manifest),
    "shared-corrupt" (a manifest that doesn't validate or bytes that don't match it).
    Repair publishes the local copy again where it is intact, else removes what is damaged
    (the next run recomputes and publishes it)."""
    remote = cache.remote
    assert remote is not None
    for url, _ in remote.stray_objects():
        if repair:
            remote.delete_stray(url)
        report.problems.append(Problem("shared-stray", "", None, url, "removed" if repair else None))
    stored = remote.payload_names()
    for stage_hash, record in recorded.items():
        suffix = FORMATS[record.format].suffix
        report.checked += 1
        kind = _shared_problem(remote, stage_hash, suffix, stored.get(stage_hash))
        if kind is None:
            continue
        problem = Problem(kind, stage_hash, record.stage, remote.describe(stage_hash, suffix))
        if repair:
            problem = _repair_shared(cache, problem, record, suffix)
        report.problems.append(problem)


def _shared_problem(remote: RemoteArtifactStore, stage_hash: str, suffix: str, stored_suffix: str | None) -> str | None:
    if stored_suffix != suffix:
        return "shared-missing"
    manifest = remote.read_manifest(stage_hash)
    if manifest is None:
        return "shared-unpublished"
    data = remote.read_bytes(stage_hash, suffix)
    try:
        shared = record_from_manifest(manifest, stage_hash)
    except ValueError:
        return "shared-corrupt"
    if data is None or len(data) != shared.size or checksum_bytes(data) != shared.checksum:
        return "shared-corrupt"
    return None


def _repair_shared(cache: ResultCache, problem: Problem, record: ArtifactRecord, suffix: str) -> Problem:
    remote = cache.remote
    assert remote is not None
    remote.delete(problem.hash, suffix)
    if cache.store.is_intact(record.hash, suffix, record.size, record.checksum):
        manifest = manifest_of(record, cache.local_stage_manifest(record.hash))
        remote.publish(record.hash, suffix, cache.store.read_bytes(record.hash, suffix) or b"", manifest)
        done = "published again from the local copy"
    else:
        done = "removed from the shared store; the next run recomputes it"
    return Problem(problem.kind, problem.hash, problem.stage, problem.path, done)
