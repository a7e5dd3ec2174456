"""The catalog as one pipeline run uses it: a warm run never imports SQLAlchemy.

Importing SQLAlchemy costs ~130 ms, more than a whole warm run of a small pipeline, so on a
SQLite catalog already at this lwdp's schema the three reads a warm run makes (raw digest
memos, artifact rows, which hashes have lineage) and its one write (last-access times and
lineage recency, batched once per run) go through the standard library's ``sqlite3``.
Everything else -- creating or migrating the catalog, recording artifacts, explaining a
miss, PostgreSQL catalogs -- goes to the full `Catalog`, opened on first need. The SQL here
mirrors `lwdp.store.catalog` statement for statement; both are tested on the same files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..digest import DigestMemo, FileState
from .records import ArtifactRecord, LineageRow, utcnow
from .catalog_file import BUSY_TIMEOUT_MS, CATALOG_FILE, HEAD_REVISION

if TYPE_CHECKING:
    from .catalog import Catalog

_IN_CHUNK = 500  # far below SQLite's bound-parameter limit
_LOOKUP = (
    "SELECT hash, stage, format, size, checksum, read_options, created_at, last_access, "
    "compute_seconds, lwdp_version, pandas_version FROM artifacts WHERE hash = ?"
)


class SQLiteReader:
    """A stdlib connection to a catalog file at `HEAD_REVISION`, for the warm path."""

    def __init__(self, conn: sqlite3.Connection, inode: int, path: Path) -> None:
        self.conn = conn
        self._lookups = conn.cursor()  # one cursor, reused: the warm path's most frequent query
        self.inode = inode
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SQLiteReader | None:
        """The reader, or None when the file is missing, not at this lwdp's schema or not a
        database (the full catalog then creates, migrates, refuses or moves it aside)."""
        try:
            inode = path.stat().st_ino
            conn = sqlite3.connect(
                f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error):
            return None
        try:
            conn.execute("PRAGMA synchronous = NORMAL")  # as the full catalog: WAL commits without fsync
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            revision = None
        if revision != (HEAD_REVISION,):
            conn.close()
            return None
        return cls(conn, inode, path)

    def is_current(self) -> bool:
        try:
            return self.path.stat().st_ino == self.inode
        except FileNotFoundError:
            return False

    def lookup_artifact(self, stage_hash: str) -> ArtifactRecord | None:
        row = self._lookups.execute(_LOOKUP, (stage_hash,)).fetchone()
        if row is None:
            return None
        h, stage, fmt, size, checksum, options, created, used, seconds, lwdp_version, pandas_version = row
        return ArtifactRecord(
            h, stage, fmt, size, checksum, json.loads(options or "{}"), _aware_utc(created), _aware_utc(used),
            seconds, lwdp_version, pandas_version,
        )

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]:
        memos: dict[str, DigestMemo] = {}
        for chunk in in_chunks(paths):
            query = (
                "SELECT path, size, mtime_ns, ctime_ns, inode, digest, digested_at_ns FROM raw_files "
                f"WHERE path IN ({_marks(chunk)})"
            )
            for path, size, mtime_ns, ctime_ns, inode, digest, at_ns in self.conn.execute(query, chunk):
                memos[path] = DigestMemo(FileState(path, size, mtime_ns, ctime_ns, inode), digest, at_ns)
        return memos

    def hashes_with_lineage(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in in_chunks(hashes):
            query = f"SELECT DISTINCT hash FROM lineage WHERE hash IN ({_marks(chunk)})"
            found.update(h for (h,) in self.conn.execute(query, chunk))
        return found

    def mark_used(self, touched: list[str], evaluated: list[str], now: dt.datetime) -> None:
        """One write transaction: the artifacts read get ``now`` as last access, and the
        lineage of the stage hashes evaluated becomes the most recent of their stages."""
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DateTime text
        with self._immediate():
            for chunk in in_chunks(sorted(touched)):
                self.conn.execute(f"UPDATE artifacts SET last_access = ? WHERE hash IN ({_marks(chunk)})", [stamp, *chunk])
            for chunk in in_chunks(sorted(evaluated)):
                self.conn.execute(f"UPDATE lineage SET recorded_at = ? WHERE hash IN ({_marks(chunk)})", [stamp, *chunk])

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")  # a read-then-write deferred BEGIN fails under load
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def _aware_utc(stored: str) -> dt.datetime:
    """A time as SQLAlchemy stores it in SQLite (naive UTC text), as the aware UTC value
    the full catalog returns."""
    return dt.datetime.fromisoformat(stored + "+00:00")


def in_chunks(values: list[str]) -> Iterator[list[str]]:
    """Slices of values for ``IN (...)`` lists, far below SQLite's bound-parameter limit."""
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _marks(values: list[str]) -> str:
    return ",".join("?" * len(values))


_readers: dict[tuple[int, Path], SQLiteReader] = {}


def _reader_for(cache_dir: Path) -> SQLiteReader | None:
    """This process's reader of the cache directory's catalog (made again after a fork or
    once the file was replaced)."""
    key = (os.getpid(), cache_dir)
    reader = _readers.get(key)
    if reader is None or not reader.is_current():
        if reader is not None:
            reader.conn.close()
        reader = SQLiteReader.open(cache_dir / CATALOG_FILE)
        if reader is None:
            _readers.pop(key, None)
            return None
        _readers[key] = reader
    return reader


class RunCatalog:
    """The catalog of one run: fast reads, deferred marks of use, the full catalog for the rest.

    Last-access times of the artifacts read and the recency of the lineage of the stage
    hashes evaluated are written once, by `flush`, at the end of the run. A catalog the
    reader can't serve (missing, older, damaged, or a ``catalog_url``) is the full one's.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.reader = None if config.catalog_url() else _reader_for(cache_dir)
        self._touched: set[str] = set()
        self._evaluated: set[str] = set()

    @property
    def full(self) -> Catalog:
        """The full catalog (SQLAlchemy), opened, created or migrated on first need."""
        from .catalog import open_catalog

        return open_catalog(self.cache_dir)

    def _fast(self, method: str, *args: Any) -> Any:
        """The reader's answer; on any SQLite error the full catalog's, which explains it
        (a damaged file is moved aside there) and takes over for the rest of the run."""
        if self.reader is not None:
            try:
                return getattr(self.reader, method)(*args)
            except sqlite3.Error:
                self.reader = None
        return getattr(self.full, method)(*args)

    def lookup_artifact(self, stage_hash: str) -> ArtifactRecord | None:
        return self._fast("lookup_artifact", stage_hash)

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]:
        return self._fast("load_digest_memos", paths)

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        self.full.save_digest_memos(memos)

    def record_artifact(self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> None:
        self.full.record_artifact(record, stage_manifest)

    def previous_manifest(self, stage: str, current: str) -> tuple[bool, dict[str, Any] | None]:
        return self.full.previous_manifest(stage, current)

    def touch_artifact(self, stage_hash: str) -> None:
        """Mark an artifact used, at the end of the run (a read holds its lock meanwhile)."""
        self._touched.add(stage_hash)

    def record_lineage(self, rows: Iterable[LineageRow]) -> None:
        """Record the lineage of hashes the catalog has not seen; the others' lineage only
        becomes the most recent of their stages, at the end of the run."""
        by_hash: dict[str, list[LineageRow]] = {}
        for row in rows:
            by_hash.setdefault(row.hash, []).append(row)
        known = self._fast("hashes_with_lineage", list(by_hash)) if self.reader is not None else set()
        new = [row for h, hash_rows in by_hash.items() if h not in known for row in hash_rows]
        if new:
            self.full.record_lineage(new)
        self._evaluated.update(known)

    def flush(self) -> None:
        """Write the deferred marks of use in one transaction."""
        touched, evaluated = list(self._touched), list(self._evaluated)
        self._touched.clear()
        self._evaluated.clear()
        if not touched and not evaluated:
            return
        if self.reader is not None:
            try:
                self.reader.mark_used(touched, evaluated, utcnow())
                return
            except sqlite3.Error:
                self.reader = None
        self.full.mark_used(touched, evaluated, utcnow())
