"""The local artifact store: result files named by stage hash, published atomically.

A payload is written to a temporary name in its final directory, fsynced, checksummed and
``os.replace``d onto ``<root>/<hash[:2]>/<hash>.<suffix>``: a reader sees the whole file or
none. Beside it, ``<hash>.manifest.json`` says what the file is (stage, format, checksum),
so an artifact whose catalog row is lost can be verified and adopted again. Temporary
names start with ``.tmp-`` so a sweep can tell them apart; nothing here knows about SQL.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import xxhash

from ..formats import FORMATS
from ..hashing.raw_files import file_digest

T = TypeVar("T")
TEMP_PREFIX = ".tmp-"
MANIFEST_SUFFIX = "manifest.json"
UNLISTED_GRACE_S = 60.0
HASH = re.compile("[0-9a-f]{32}")  # a stage hash, or a checksum
_SUFFIXES = frozenset({fmt.suffix for fmt in FORMATS.values()} | {MANIFEST_SUFFIX})


_SIDE = re.compile(r"c[0-9]+")  # a file an artifact links: <hash>.c<k>.<suffix> (`shared_columns`)


def artifact_name(bucket: str, name: str) -> tuple[str, str] | None:
    """(hash, suffix) of ``name`` if it is where lwdp puts it: ``<hash>.<suffix>`` of a
    known format (or its manifest, or a file it links: ``c<k>.<suffix>``) in the bucket
    ``<hash[:2]>``; None for anything else."""
    stage_hash, dot, suffix = name.partition(".")
    known = suffix in _SUFFIXES or linked_by(suffix) is not None
    if dot and known and HASH.fullmatch(stage_hash) and stage_hash[:2] == bucket:
        return stage_hash, suffix
    return None


def linked_suffix(suffix: str, k: int) -> str:
    """The suffix of the ``k``-th file an artifact of ``suffix`` links."""
    return f"c{k}.{suffix}"


def linked_by(suffix: str) -> str | None:
    """The suffix of the artifact a linked file (``c<k>.<suffix>``) belongs to; None for
    any other suffix."""
    side, _, linked = suffix.partition(".")
    return linked if _SIDE.fullmatch(side) and linked in _SUFFIXES else None


@dataclass(frozen=True)
class StoredFile:
    """An artifact file found in the store."""

    hash: str
    suffix: str
    path: Path


class ArtifactStore(ABC):
    """What every artifact store is: bytes named by stage hash and suffix, laid out as
    ``<hash[:2]>/<hash>.<suffix>`` with ``<hash>.manifest.json`` beside each. A store
    implements the primitives; the checks built on them (checksum, intactness, manifests)
    are written once, here, for the local cache and the shared store alike."""

    @abstractmethod
    def describe(self, stage_hash: str, suffix: str) -> str:
        """Where the artifact is, as a person would find it: a path or a URL."""

    @abstractmethod
    def get(self, stage_hash: str, suffix: str) -> bytes | None:
        """The artifact's bytes, or None when it is not there."""

    @abstractmethod
    def put(self, stage_hash: str, suffix: str, payload: bytes) -> None:
        """Store ``payload`` whole or not at all, replacing what was there."""

    @abstractmethod
    def size(self, stage_hash: str, suffix: str) -> int | None:
        """The artifact's size in bytes, or None when it is not there."""

    @abstractmethod
    def delete(self, stage_hash: str, suffix: str) -> None:
        """Remove an artifact and its manifest (the manifest first); "already gone" is fine."""

    @abstractmethod
    def artifacts(self) -> dict[str, str]:
        """{hash: suffix} of every artifact stored where it belongs (no manifests)."""

    @abstractmethod
    def strays(self) -> list[tuple[str, int]]:
        """(where, size) of what lwdp did not put where it is (a wrong bucket folder, a name
        that is no artifact's), older than `UNLISTED_GRACE_S`."""

    @abstractmethod
    def delete_stray(self, where: str) -> None:
        """Remove what `strays` listed; "already gone" is fine."""

    def sweep_strays(self, remove: bool) -> list[tuple[str, int]]:
        """`strays`, each removed too when ``remove`` (gc, verify --repair)."""
        found = self.strays()
        for where, _ in found if remove else ():
            self.delete_stray(where)
        return found

    def exists(self, stage_hash: str, suffix: str) -> bool:
        return self.size(stage_hash, suffix) is not None

    def checksum(self, stage_hash: str, suffix: str) -> str | None:
        """The artifact's checksum (XXH3-128 of its bytes), or None when it is not there."""
        data = self.get(stage_hash, suffix)
        return checksum_bytes(data) if data is not None else None

    def is_intact(self, stage_hash: str, suffix: str, size: int, checksum: str) -> bool | None:
        """Whether the artifact has this size and checksum; None when it is not there."""
        actual = self.size(stage_hash, suffix)
        if actual is None:
            return None
        return actual == size and self.checksum(stage_hash, suffix) == checksum

    def write_manifest(self, stage_hash: str, manifest: dict[str, Any]) -> None:
        self.put(stage_hash, MANIFEST_SUFFIX, json.dumps(manifest, sort_keys=True).encode())

    def read_manifest(self, stage_hash: str) -> dict[str, Any] | None:
        """The manifest of ``stage_hash``: None when there is none, {} when it is not a JSON
        object (so that validating it fails, with the reason, like any other bad manifest)."""
        data = self.get(stage_hash, MANIFEST_SUFFIX)
        if data is None:
            return None
        try:
            manifest = json.loads(data)
        except ValueError:
            return {}
        return manifest if isinstance(manifest, dict) else {}


class LocalArtifactStore(ArtifactStore):
    """Artifacts under ``<cache_dir>/artifacts``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "artifacts"

    def path_for(self, stage_hash: str, suffix: str) -> Path:
        return self.root / stage_hash[:2] / f"{stage_hash}.{suffix}"

    def _paths(self, stage_hash: str, suffix: str) -> tuple[Path, Path]:
        """Where an artifact's file goes, in a folder made if need be, and a temporary name
        beside it that says which process writes it."""
        final = self.path_for(stage_hash, suffix)
        final.parent.mkdir(parents=True, exist_ok=True)
        return final, final.with_name(f"{TEMP_PREFIX}{stage_hash}-{os.getpid()}-{secrets.token_hex(4)}.{suffix}")

    def describe(self, stage_hash: str, suffix: str) -> str:
        return str(self.path_for(stage_hash, suffix))

    def write(
        self, stage_hash: str, suffix: str, write_to: Callable[[str], T], sync_directory: bool = True,
    ) -> tuple[T, int, str]:
        """Publish what ``write_to(temp_path)`` writes; return its result, size and checksum.

        On any failure the temporary file is removed and nothing is published.
        ``sync_directory=False``: the rename is made durable by the caller's next write in
        the same directory (an artifact's manifest, written next, syncs it for both).
        """
        final, temp = self._paths(stage_hash, suffix)
        try:
            written = write_to(str(temp))
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
            size = temp.stat().st_size
            checksum = file_digest(str(temp))
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if sync_directory:
            _fsync_dir(final.parent)
        return written, size, checksum

    def link(self, stage_hash: str, suffix: str, source: Path) -> tuple[int, str | None]:
        """Publish ``source`` as the artifact's file ``suffix``: a hard link, or a copy where
        the filesystem makes none (written as `write` writes: whatever a link fails with,
        EXDEV, EPERM, FUSE's ENOSYS, ..., a copy fails too only if it must). Its size, and
        its checksum when copied (None: a link has the source's very bytes, already synced).
        The rename is made durable by the caller's next write in the directory (the
        manifest).

        :raises FileNotFoundError: ``source`` is gone.
        """
        final, temp = self._paths(stage_hash, suffix)
        try:
            os.link(source, temp)
        except FileNotFoundError:
            raise
        except OSError:
            _, size, checksum = self.write(stage_hash, suffix, lambda path: shutil.copyfile(source, path), sync_directory=False)
            return size, checksum
        try:
            size = temp.stat().st_size
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)  # left where final was the same file already (rename does nothing)
        return size, None

    def put(self, stage_hash: str, suffix: str, payload: bytes) -> None:
        self.write(stage_hash, suffix, lambda path: Path(path).write_bytes(payload))

    def get(self, stage_hash: str, suffix: str) -> bytes | None:
        try:
            return self.path_for(stage_hash, suffix).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, stage_hash: str, suffix: str) -> int | None:
        try:
            return self.path_for(stage_hash, suffix).stat().st_size
        except FileNotFoundError:
            return None

    def checksum(self, stage_hash: str, suffix: str) -> str | None:
        """Streamed through one reused buffer: a large artifact is never held whole."""
        try:
            return file_digest(str(self.path_for(stage_hash, suffix)))
        except FileNotFoundError:
            return None

    def delete(self, stage_hash: str, suffix: str) -> None:
        """The manifest, the file, then the files it links."""
        self.path_for(stage_hash, MANIFEST_SUFFIX).unlink(missing_ok=True)
        self.path_for(stage_hash, suffix).unlink(missing_ok=True)
        self.delete_links(stage_hash, suffix)

    def delete_links(self, stage_hash: str, suffix: str, start: int = 0) -> None:
        """The files an artifact links (`shared_columns`), numbered from 0 and linked in
        order, from the ``start``-th (those an earlier result of the hash had beyond its own)."""
        for k in itertools.count(start):
            side = self.path_for(stage_hash, linked_suffix(suffix, k))
            if not side.exists():
                break
            side.unlink(missing_ok=True)

    def artifacts(self) -> dict[str, str]:
        """{hash: suffix} of every published artifact file, from one pass over the store's
        directories (no manifests, no temporary files)."""
        names: dict[str, str] = {}
        if not self.root.is_dir():
            return names
        with os.scandir(self.root) as buckets:
            for bucket in buckets:
                if not bucket.is_dir():
                    continue
                with os.scandir(bucket.path) as entries:
                    for entry in entries:
                        found = artifact_name(bucket.name, entry.name)
                        if found is not None and found[1] != MANIFEST_SUFFIX and linked_by(found[1]) is None:
                            names[found[0]] = found[1]
        return names

    def strays(self) -> list[tuple[str, int]]:
        """Anything outside the buckets counts too. Temporary files of writers are not
        stray (`dead_temp_files` covers them)."""
        found = []
        cutoff = time.time() - UNLISTED_GRACE_S
        for top, _, names in os.walk(self.root):
            bucket = os.path.relpath(top, self.root)
            for name in names:
                named = artifact_name(bucket, name)
                in_place = named is not None or (len(bucket) == 2 and name.startswith(TEMP_PREFIX))
                path = Path(top, name)
                made = _mtime(path)
                if named is not None and (linked := linked_by(named[1])) is not None:
                    # Stays with its artifact's own file, which writers make before any link.
                    in_place = Path(top, f"{named[0]}.{linked}").exists()
                if not in_place and made <= cutoff:
                    found.append((str(path), _size(path)))
        return sorted(found)

    def delete_stray(self, where: str) -> None:
        Path(where).unlink(missing_ok=True)

    def unlisted_files(self, listed: set[str], names: dict[str, str] | None = None) -> Iterator[StoredFile]:
        """Artifact files whose hash is not in ``listed``, except ones published in the last
        `UNLISTED_GRACE_S` (a writer records its row a moment after publishing)."""
        cutoff = time.time() - UNLISTED_GRACE_S
        for stage_hash, suffix in (self.artifacts() if names is None else names).items():
            if stage_hash not in listed:
                path = self.path_for(stage_hash, suffix)
                if _mtime(path) <= cutoff:
                    yield StoredFile(stage_hash, suffix, path)

    def dead_temp_files(self) -> list[Path]:
        """Temporary files whose writer is no longer running (never read; safe to delete)."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob(f"??/{TEMP_PREFIX}*") if not _writer_alive(p)]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # just removed: treat as too young to touch


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _writer_alive(temp: Path) -> bool:
    """Temporary names are ``.tmp-<hash>-<pid>-<random>.<suffix>``: is that pid running?"""
    try:
        pid = int(temp.name[len(TEMP_PREFIX):].split("-")[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # running, as another user
    return True


def checksum_bytes(data: bytes) -> str:
    """The artifact checksum of in-memory bytes (same as `file_digest` of the file)."""
    return xxhash.xxh3_128_hexdigest(data)


def bytes_match(data: bytes | None, size: int, checksum: str) -> bool | None:
    """Whether ``data`` has this size and checksum; None when there is no data."""
    if data is None:
        return None
    return len(data) == size and checksum_bytes(data) == checksum


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
