"""Eviction: TTL by last access, LRU to a size budget, and a sweep of what nothing lists.

Every gc also removes files the catalog doesn't list, rows whose file is gone, the
temporary files of writers that died, and files lwdp did not put where they are (in this
cache directory and the shared store) once older than the grace period. An artifact is
deleted only while gc holds its lock exclusively, so one being computed or read at that moment is left alone; its row
goes first, then its files.

With a shared store and a shared catalog (`lwdp.configure(store_url=..., catalog_url=...)`)
the same rules apply to the shared store, by the last access teammates record: an
artifact read since this gc began is kept, and a reader whose object vanishes anyway
recomputes. Artifact objects in the shared store that no row lists are left alone (a
teammate may be about to record one). Where an artifact lives is `Placement`'s rule.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .. import config
from ..formats import FORMATS
from ..store.adoption import adopt, adoptable
from ..errors import InvalidSettingError
from ..store.cache import ResultCache
from ..store.eviction import POLICIES, Policy
from ..store.catalog import open_catalog
from ..store.records import utcnow
from ..units import human_size, parse_duration, parse_size

if TYPE_CHECKING:
    from ..store.remote import RemoteArtifactStore


@dataclass(frozen=True)
class Removal:
    """One artifact gc removed (or, in a dry run, would remove)."""

    hash: str  # "" for a stray file
    stage: str | None
    size: int
    reason: str  # "expired" | "lru" | "cost" | "dangling" | "orphan" | "stray"
    path: str | None = None  # a stray file's path or URL


@dataclass
class GcReport:
    """What a gc removed, or would remove in a dry run."""

    dry_run: bool
    removed: list[Removal] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)  # hashes kept because they were busy
    runs_forgotten: int = 0  # runs of the history beyond the newest ``keep_runs``

    @property
    def count(self) -> int:
        return len(self.removed)

    @property
    def bytes_freed(self) -> int:
        return sum(r.size for r in self.removed)

    @property
    def stages(self) -> list[str]:
        return sorted({r.stage for r in self.removed if r.stage})

    def __repr__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"GcReport: {verb} {self.count} artifacts, {human_size(self.bytes_freed)}, from {len(self.stages)} stages"]
        lines += [
            f"  {r.reason:<8} {r.path}" if r.path else f"  {r.reason:<8} {r.stage or '?':<40} {r.hash[:12]}  {human_size(r.size):>9}"
            for r in self.removed
        ]
        if self.temp_files:
            lines.append(f"  {len(self.temp_files)} temporary files of dead writers {verb}")
        if self.in_use:
            lines.append(f"  {len(self.in_use)} artifacts kept: in use by another process")
        if self.runs_forgotten:
            lines.append(f"  {self.runs_forgotten} older runs of the history {'would be ' if self.dry_run else ''}forgotten")
        return "\n".join(lines)


def gc(
    max_age: int | float | str | dt.timedelta | None = None,
    max_size: int | float | str | None = None,
    dry_run: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    policy: str = "lru",
    keep_runs: int = 1000,
) -> GcReport:
    """Remove artifacts not used within ``max_age``, then, beyond ``max_size`` bytes, those
    the ``policy`` gives up first: "lru" the least recently used, "cost" those that cost
    least to have again per byte (`lwdp.store.eviction`); and everything the catalog and
    the store don't agree on. The run history keeps its newest ``keep_runs`` runs.

    :raises UnitError: ``max_age`` or ``max_size`` can't be understood (a ValueError).
    :raises InvalidSettingError: ``policy`` is neither "lru" nor "cost" (a ValueError).
    """
    if policy not in POLICIES:
        raise InvalidSettingError(f"gc: policy must be \"lru\" or \"cost\", not {policy!r}")
    if keep_runs < 0:
        raise InvalidSettingError(f"gc: keep_runs must be 0 or more, not {keep_runs}")
    age = parse_duration(max_age) if max_age is not None else None
    budget = parse_size(max_size) if max_size is not None else None
    settings = config.settings(cache_dir)
    cache = ResultCache(settings, open_catalog(settings))
    report = GcReport(dry_run)
    started = utcnow()
    listed = cache.catalog.listed_formats()
    stored = cache.store.artifacts()
    placement = cache.placement
    shared = placement.shared_store if placement.evicts_from_shared_store else None
    canonical = placement.canonical_names(stored)
    theirs = placement.teammates_rows(listed, stored)
    dangling = {h for h, fmt in listed.items() if h not in theirs and canonical.get(h) != FORMATS[fmt].suffix}
    victims = [(row, "dangling") for row in cache.catalog.usage_rows(dangling)]
    victims += cache.catalog.eviction_victims(started - age if age is not None else None, budget, dangling | theirs, cast(Policy, policy))
    for row, reason in victims:
        _remove(cache, report, row.hash, row.stage, FORMATS[row.format].suffix, row.size, reason, started, shared)
    for orphan in cache.store.unlisted_files(set(listed), stored):
        record = adoptable(cache.store, orphan.hash)
        if record is not None:  # intact, only its row was lost: keep it, listed again
            if not dry_run:
                adopt(cache.catalog, cache.store, record)
            continue
        _remove(cache, report, orphan.hash, None, orphan.suffix, orphan.path.stat().st_size, "orphan", None)
    _sweep_strays(cache, report, placement.shared_store)
    report.temp_files = cache.store.dead_temp_files()
    if not dry_run:
        for path in report.temp_files:
            path.unlink(missing_ok=True)
    report.runs_forgotten = cache.catalog.forget_runs(keep_runs, dry_run)
    return report


def _sweep_strays(cache: ResultCache, report: GcReport, shared: RemoteArtifactStore | None) -> None:
    """Remove what lwdp did not put where it is, in this cache directory and in the shared
    store, once older than the grace period: no artifact of anyone's is ever there."""
    for store in (cache.store, shared) if shared is not None else (cache.store,):
        report.removed += [Removal("", None, size, "stray", where) for where, size in store.sweep_strays(not report.dry_run)]


def _remove(
    cache: ResultCache, report: GcReport, stage_hash: str, stage: str | None, suffix: str, size: int,
    reason: str, selected_at: dt.datetime | None, shared: RemoteArtifactStore | None = None,
) -> None:
    if cache.evict(stage_hash, suffix, selected_at, report.dry_run, shared):
        report.removed.append(Removal(stage_hash, stage, size, reason))
    else:
        report.in_use.append(stage_hash)
