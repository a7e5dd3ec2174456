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

InputRow = tuple[str, str, str, "str | None"]  # as `lwdp.hashing.stage_hash` names it

TRACKED_FILE = "tracked"  # a file read: its content counts
TRACKED_LISTING = "listing"  # a directory listed: its entries' names count
TRACKED_KINDS = (TRACKED_FILE, TRACKED_LISTING)
WATCHED = "watched"
# In an input key (`lwdp.run.cutoff`) in "track" mode, never recorded: early cutoff then
# reuses only results computed watched, from files with the same contents.
WATCHED_ROW: InputRow = ("lwdp watched", WATCHED, "", None)  # no input's name has a space
_UNVERIFIED = ("lwdp undeclared inputs", WATCHED, "unverified")
MISSING = "missing"
_MAX_STEPS = 8  # a stage whose reads change at every run stops moving here


class TrackedReads(NamedTuple):
    """Tracked reads as the catalog has them, as input rows: by stage hash (every hash of
    an artifact computed watched has an entry, if empty), and each stage's latest."""

    by_hash: dict[str, list[InputRow]]
    latest: dict[str, list[InputRow]]


class TrackedStore(Protocol):
    """Where tracked reads are recorded (the catalog)."""

    def tracked_inputs(self, stages: list[str]) -> TrackedReads: ...


def shown_path(path: str, cwd: str) -> str:
    """A path as lwdp records and shows it: relative to the working directory ``cwd`` when
    under it (as raw inputs are written, so a project that moves keeps its hashes)."""
    relative = os.path.relpath(path, cwd)
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
    declared_hash: str, rehash: Callable[[list[tuple[str, str, str]]], str], recorded: TrackedReads, stage: str,
    now: dict[tuple[str, str], str],
) -> tuple[str, list[InputRow]]:
    """(the stage's hash, its tracked rows now), in "track" mode.

    Its declared hash, while what was recorded read under it is unchanged; else ``rehash``
    of those reads' digests now, checked the same way in turn (a result computed there may
    have read more). A declared hash never computed watched (a new one, or one computed
    with "ignore") can't vouch for its result: the stage's latest tracked reads, with their
    digests now, then make its hash (so that early cutoff, through the input key, reuses
    only a result computed from files with these very contents). Where records disagree
    with the hash they are under (a file changed while the stage read it), the answer is a
    hash nothing was stored under."""
    reads = recorded.by_hash.get(declared_hash)
    if reads is None:
        rows = _now(recorded.latest.get(stage, []), now)
        stage_hash = rehash([*_triples(rows), _UNVERIFIED])
        reads = recorded.by_hash.get(stage_hash)
        if reads is None:
            return stage_hash, rows
    else:
        stage_hash = declared_hash
    seen = {stage_hash}
    for _ in range(_MAX_STEPS):
        rows = _now(reads, now)
        if rows[:-1] == reads:
            return stage_hash, rows
        stage_hash = rehash(_triples(rows))
        if stage_hash in seen:
            break
        seen.add(stage_hash)
        reads = recorded.by_hash.get(stage_hash)
        if reads is None:
            return stage_hash, rows
    return rehash([*_triples(rows), _UNVERIFIED]), rows


def _now(reads: list[InputRow], now: dict[tuple[str, str], str]) -> list[InputRow]:
    """The reads with their digests now, and the "watched" mark: in an input key it keeps
    early cutoff from reusing a result computed unwatched."""
    return [*(tracked_row(kind, path, now[kind, path]) for _, kind, _, path in reads if path is not None), WATCHED_ROW]


def _triples(rows: list[InputRow]) -> list[tuple[str, str, str]]:
    return [(name, kind, digest) for name, kind, digest, _ in rows if kind != WATCHED]
