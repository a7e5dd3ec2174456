"""Undeclared inputs a stage was seen reading, tracked as `make` tracks the headers a
compiler lists in its generated dependency files (``undeclared_inputs="track"``).

After a stage computes, the files it opened and the directories it listed without
declaring them are recorded with its hash (lineage rows of kind "tracked" and "listing",
with their digests then). When the stage is hashed again, the result recorded under its
declared hash is valid only if every one of them is unchanged; otherwise its hash moves
on to one that also covers their digests now, which misses (or finds the result computed
with those contents before). A stage's hash, and so its consumers', thus changes exactly
when a file it read changed, which is what makes this correct for a whole pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

import xxhash

from .raw_files import digest_files

if TYPE_CHECKING:
    from .raw_files import MemoStore
    from .stage_hash import InputRow

TRACKED_FILE = "tracked"  # a file read: its content counts
TRACKED_LISTING = "listing"  # a directory listed: its entries' names count
TRACKED_KINDS = (TRACKED_FILE, TRACKED_LISTING)
MISSING = "missing"
_MAX_STEPS = 8  # a stage whose reads change at every run stops moving here


class TrackedReads(NamedTuple):
    """Tracked reads as the catalog has them, as input rows: by stage hash, and each
    stage's most recently recorded ones."""

    by_hash: dict[str, list[InputRow]]
    latest: dict[str, list[InputRow]]


NO_TRACKED_READS = TrackedReads({}, {})


class TrackedStore(Protocol):
    """Where tracked reads are recorded (the catalog)."""

    def tracked_inputs(self, stages: list[str]) -> TrackedReads: ...


def shown_path(path: str) -> str:
    """A path as lwdp records and shows it: relative to the working directory when under
    it (as raw inputs are written, so a project that moves keeps its hashes)."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def tracked_row(kind: str, path: str, digest: str) -> InputRow:
    return (f"{kind} {path}", kind, digest, path)


def listing_digest(directory: str) -> str:
    """XXH3-128 of a directory's sorted entry names ("missing" when it is gone)."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    return xxhash.xxh3_128_hexdigest("\0".join(names).encode())


def current_digests(rows: list[InputRow], memos: MemoStore) -> dict[tuple[str, str], str]:
    """{(kind, path): digest now} of tracked rows: files by content (memoized by metadata,
    like raw inputs), directories by listing, "missing" for what is gone."""
    files = {path: os.path.abspath(path) for _, kind, _, path in rows if kind == TRACKED_FILE and path and os.path.isfile(path)}
    read = digest_files(files.values(), memos, {full: f"tracked file {path}" for path, full in files.items()}) if files else {}
    now: dict[tuple[str, str], str] = {}
    for _, kind, _, path in rows:
        assert path is not None
        if kind == TRACKED_FILE:
            now[kind, path] = read[files[path]] if path in files else MISSING
        else:
            now[kind, path] = listing_digest(path)
    return now


def resolved_hash(
    declared_hash: str, rehash: Callable[[list[InputRow]], str], recorded: TrackedReads, stage: str,
    now: dict[tuple[str, str], str],
) -> tuple[str, list[InputRow]]:
    """(the stage's hash, its tracked rows now): its declared hash while what was recorded
    read under it is unchanged, else ``rehash`` of those reads' digests now, checked the
    same way in turn (a result computed there may have read more).

    A declared hash with nothing recorded (the stage's code or an upstream changed) gets
    the stage's latest tracked reads as rows, with their digests now: they don't change
    its hash, but they enter its input key, so that early cutoff finds an earlier result
    only if it was computed from files with these very contents (`lwdp.run.cutoff`)."""
    stage_hash = declared_hash
    reads = recorded.by_hash.get(stage_hash)
    if reads is None:
        return stage_hash, _now(recorded.latest.get(stage, []), now)
    for _ in range(_MAX_STEPS):
        rows = _now(reads, now)
        if rows == reads:
            break
        stage_hash = rehash(rows)
        reads = recorded.by_hash.get(stage_hash)
        if reads is None:
            break
    return stage_hash, rows


def _now(reads: list[InputRow], now: dict[tuple[str, str], str]) -> list[InputRow]:
    return [tracked_row(kind, path, now[kind, path]) for _, kind, _, path in reads if path is not None]
