"""Check every artifact against its catalog row and manifest, and optionally repair.

What can be wrong: a row whose file is missing, truncated or altered (``missing``,
``corrupt``); a file no row lists (``unrecorded`` when its manifest and checksum make it
adoptable, ``orphan`` otherwise); a row whose manifest is gone (``no-manifest``).
Temporary files of writers that died are not damage (never read) and are listed apart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from ..digest import file_digest
from ..formats import FORMATS
from .artifacts import TEMP_PREFIX, LocalArtifactStore
from .cache import ResultCache, manifest_of, record_from_manifest
from .catalog import ArtifactRecord, open_catalog

ORPHAN_GRACE_S = 60.0  # a writer publishes the file a moment before its row


@dataclass(frozen=True)
class Problem:
    """One damaged or unlisted artifact."""

    kind: str  # "missing" | "corrupt" | "no-manifest" | "unrecorded" | "orphan"
    hash: str
    stage: str | None
    path: Path
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
    root = Path(cache_dir).absolute() if cache_dir is not None else config.cache_dir()
    catalog = open_catalog(root)
    cache = ResultCache(root, catalog)
    report = VerifyReport(repaired=repair)
    recorded = {record.hash: record for record in catalog.all_artifacts()}
    for record in recorded.values():
        report.checked += 1
        problem = _check_recorded(cache.store, record)
        if problem is not None:
            report.problems.append(_repair(cache, problem, record) if repair else problem)
    for stored in cache.store.files():
        if stored.hash in recorded or _younger_than(stored.path, ORPHAN_GRACE_S):
            continue
        report.checked += 1
        problem = _check_unrecorded(cache.store, stored.hash, stored.path)
        report.problems.append(_repair(cache, problem, None) if repair else problem)
    report.dead_temp_files = [p for p in cache.store.temp_files() if not _writer_alive(p)]
    if repair:
        for path in report.dead_temp_files:
            path.unlink(missing_ok=True)
    return report


def _check_recorded(store: LocalArtifactStore, record: ArtifactRecord) -> Problem | None:
    path = store.path_for(record.hash, FORMATS[record.format].suffix)
    try:
        intact = path.stat().st_size == record.size and file_digest(str(path)) == record.checksum
    except FileNotFoundError:
        return Problem("missing", record.hash, record.stage, path)
    if not intact:
        return Problem("corrupt", record.hash, record.stage, path)
    if store.read_manifest(record.hash) is None:
        return Problem("no-manifest", record.hash, record.stage, path)
    return None


def _check_unrecorded(store: LocalArtifactStore, stage_hash: str, path: Path) -> Problem:
    manifest = store.read_manifest(stage_hash)
    try:
        record = record_from_manifest(manifest) if manifest is not None else None
    except (KeyError, TypeError, ValueError):
        record = None
    if record is not None and path.stat().st_size == record.size and file_digest(str(path)) == record.checksum:
        return Problem("unrecorded", stage_hash, record.stage, path)
    return Problem("orphan", stage_hash, None if record is None else record.stage, path)


def _repair(cache: ResultCache, problem: Problem, record: ArtifactRecord | None) -> Problem:
    with cache.locks.try_hold(problem.hash) as free:
        if not free:
            return problem  # being written right now: not ours to touch
        if problem.kind == "no-manifest" and record is not None:
            cache.store.write_manifest(record.hash, manifest_of(record))
            done = "manifest rewritten"
        elif problem.kind == "unrecorded":
            manifest = cache.store.read_manifest(problem.hash)
            assert manifest is not None
            cache.catalog.record_artifact(record_from_manifest(manifest))
            done = "adopted"
        else:
            cache.catalog.delete_artifact(problem.hash)  # the row first, then the files
            cache.store.delete(problem.hash, problem.path.name.partition(".")[2])
            done = "removed; the next run recomputes it" if record is not None else "removed"
    return Problem(problem.kind, problem.hash, problem.stage, problem.path, done)


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except FileNotFoundError:
        return True


def _writer_alive(temp: Path) -> bool:
    """Temporary names are ``.tmp-<hash>-<pid>-<random>.<suffix>``: is that pid running?"""
    try:
        pid = int(temp.name[len(TEMP_PREFIX):].split("-")[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
