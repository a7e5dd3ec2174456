"""The catalog as one pipeline run uses it: a run on a SQLite catalog never imports SQLAlchemy.

Importing SQLAlchemy costs ~130 ms, more than a whole warm run of a small pipeline and a
tenth of an incremental one, so on a SQLite catalog already at this lwdp's schema the
statements a run makes go through the standard library's ``sqlite3``: the reads (raw
digest memos, artifact rows, which hashes have lineage, the manifest a miss is explained
against), the rows of what it computes, and one batched write of last-access times and
lineage recency at its end. A new catalog is made at the head schema with ``sqlite3`` too
(`lwdp.store.head_schema`); migrating an older one, a damaged file, PostgreSQL catalogs
and all upkeep (gc, verify, lineage queries) go to the full `Catalog`. The SQL
here mirrors `lwdp.store.catalog` statement for statement; the test suite runs every
pipeline through this path and every upkeep through that one, on the same files.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..digest import DigestMemo, FileState
from .connections import on_close
from .records import ArtifactRecord, LineageRow, artifact_values, naive_utc, utcnow
from .catalog_file import BUSY_TIMEOUT_MS, CATALOG_FILE, HEAD_REVISION
from .head_schema import create_catalog_file

if TYPE_CHECKING:
    from .catalog import Catalog

logger = logging.getLogger("lwdp")
_IN_CHUNK = 500  # far below SQLite's bound-parameter limit
_ARTIFACT_COLUMNS = (
    "hash", "stage", "format", "size", "checksum", "read_options", "created_at", "last_access",
    "compute_seconds", "lwdp_version", "pandas_version",
)
_UPSERT_ARTIFACT = (
    f"INSERT INTO artifacts ({', '.join(_ARTIFACT_COLUMNS)}) VALUES ({', '.join('?' * len(_ARTIFACT_COLUMNS))}) "
    "ON CONFLICT (hash) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _ARTIFACT_COLUMNS[1:])
)
_UPSERT_MANIFEST = (
    "INSERT INTO stage_manifests (hash, stage, manifest, recorded_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hash) DO UPDATE SET manifest = excluded.manifest, recorded_at = excluded.recorded_at"
)
_UPSERT_LINEAGE = (
    "INSERT INTO lineage (hash, input_name, stage, input_kind, input_hash, input_path, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash, input_name) DO UPDATE SET recorded_at = excluded.recorded_at"
)
_UPSERT_MEMO = (
    "INSERT INTO raw_files (path, size, mtime_ns, ctime_ns, inode, digest, digested_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, "
    "inode = excluded.inode, digest = excluded.digest, digested_at_ns = excluded.digested_at_ns"
)
# Of the stage's other hashes, the one whose artifact was used last, else the one computed last.
_PREVIOUS_MANIFEST = (
    "SELECT m.manifest FROM stage_manifests AS m LEFT OUTER JOIN artifacts AS a ON a.hash = m.hash "
    "WHERE m.stage = ? AND m.hash != ? ORDER BY a.last_access IS NULL, a.last_access DESC, m.recorded_at DESC LIMIT 1"
)
_LOOKUP = (
    "SELECT hash, stage, format, size, checksum, read_options, created_at, last_access, "
    "compute_seconds, lwdp_version, pandas_version FROM artifacts WHERE hash = ?"
)


class SQLiteQuick:
    """A stdlib connection to a catalog file at `HEAD_REVISION`: the statements of a run."""

    def __init__(self, conn: sqlite3.Connection, inode: int, path: Path) -> None:
        self.conn = conn
        self._lookups = conn.cursor()  # one cursor, reused: the warm path's most frequent query
        self.inode = inode
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SQLiteQuick | None:
        """The connection, or None when the file is missing, not at this lwdp's schema or not
        a database (the full catalog then creates, migrates, refuses or moves it aside)."""
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

    def previous_manifest(self, stage: str, current: str) -> tuple[bool, dict[str, Any] | None]:
        seen = self.conn.execute("SELECT 1 FROM stage_manifests WHERE hash = ?", (current,)).fetchone() is not None
        found = self.conn.execute(_PREVIOUS_MANIFEST, (stage, current)).fetchone()
        return seen, json.loads(found[0]) if found is not None else None

    def record_artifact(self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> None:
        values = artifact_values(record)
        row = [_stored(values[name]) for name in _ARTIFACT_COLUMNS]
        with self._immediate():
            self.conn.execute(_UPSERT_ARTIFACT, row)
            if stage_manifest:
                manifest = json.dumps(stage_manifest, sort_keys=True, ensure_ascii=False)
                self.conn.execute(_UPSERT_MANIFEST, (record.hash, record.stage, manifest, _stored(utcnow())))

    def record_lineage(self, rows: list[LineageRow]) -> None:
        now = _stored(utcnow())
        values = sorted((r.hash, r.input_name, r.stage, r.input_kind, r.input_hash, r.input_path, now) for r in rows)
        with self._immediate():
            self.conn.executemany(_UPSERT_LINEAGE, values)

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        values = sorted((*memo.state, memo.digest, memo.digested_at_ns) for memo in memos)
        with self._immediate():
            self.conn.executemany(_UPSERT_MEMO, values)

    def hashes_with_lineage(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in in_chunks(hashes):
            query = f"SELECT DISTINCT hash FROM lineage WHERE hash IN ({_marks(chunk)})"
            found.update(h for (h,) in self.conn.execute(query, chunk))
        return found

    def mark_used(self, touched: list[str], evaluated: list[str], now: dt.datetime) -> None:
        """One write transaction: the artifacts read get ``now`` as last access, and the
        lineage of the stage hashes evaluated becomes the most recent of their stages."""
        stamp = _stored(naive_utc(now))
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


def _stored(value: Any) -> Any:
    """A value as SQLAlchemy stores it in SQLite: times as naive UTC text."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, dt.datetime) else value


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


_connections: dict[tuple[int, int, Path], SQLiteQuick] = {}


@on_close
def _close_connections() -> None:
    for quick in _connections.values():
        quick.conn.close()
    _connections.clear()


def _quick_for(cache_dir: Path) -> SQLiteQuick | None:
    """This thread's connection to the cache directory's catalog (one per thread, so the
    writer thread's transactions never mix with the run's reads; made again after a fork
    or once the file was replaced)."""
    key = (os.getpid(), threading.get_ident(), cache_dir)
    quick = _connections.get(key)
    if quick is None or not quick.is_current():
        if quick is not None:
            quick.conn.close()
        quick = SQLiteQuick.open(cache_dir / CATALOG_FILE)
        if quick is None:
            _connections.pop(key, None)
            return None
        _connections[key] = quick
    return quick


class RunCatalog:
    """The catalog of one run: `SQLiteQuick` where it can serve, the full catalog otherwise.

    Last-access times of the artifacts read and the recency of the lineage of the stage
    hashes evaluated are written once, by `flush`, at the end of the run. A catalog the quick
    path can't serve (older, damaged, or a ``catalog_url``) is the full one's. A cache
    directory without a catalog (a first, cold run) gets one at the head schema, made with
    the standard library in a few milliseconds (`lwdp.store.head_schema`).
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._quick_ok = config.catalog_url() is None
        self._per_thread = threading.local()
        self._touched: set[str] = set()
        self._evaluated: set[str] = set()
        if self._quick_ok and not (cache_dir / CATALOG_FILE).exists():
            create_catalog_file(cache_dir)

    @property
    def full(self) -> Catalog:
        """The full catalog (SQLAlchemy), opened or migrated on first need.

        :raises CacheDirError: (and the other errors of `open_catalog`)
        """
        from .catalog import open_catalog

        return open_catalog(self.cache_dir)

    def _quick(self) -> SQLiteQuick | None:
        if not self._quick_ok:
            return None
        quick: SQLiteQuick | None = getattr(self._per_thread, "quick", None)
        if quick is None:  # once per run and thread: a stat and a dict lookup
            quick = self._per_thread.quick = _quick_for(self.cache_dir)
        return quick

    def _fast(self, method: str, *args: Any) -> Any:
        """The quick path's answer; on any SQLite error the full catalog's, which explains it
        (a damaged file is moved aside there) and takes over for the rest of the run."""
        quick = self._quick()
        if quick is not None:
            try:
                return getattr(quick, method)(*args)
            except sqlite3.Error:
                self._quick_ok = False
        return getattr(self.full, method)(*args)

    def lookup_artifact(self, stage_hash: str) -> ArtifactRecord | None:
        return self._fast("lookup_artifact", stage_hash)

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]:
        return self._fast("load_digest_memos", paths)

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        self._fast("save_digest_memos", memos)

    def record_artifact(self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> None:
        self._fast("record_artifact", record, stage_manifest)

    def previous_manifest(self, stage: str, current: str) -> tuple[bool, dict[str, Any] | None]:
        return self._fast("previous_manifest", stage, current)

    def mark_used(self, touched: list[str], evaluated: list[str], now: dt.datetime) -> None:
        """Mark artifacts used (and lineage recent) at once, not at the end of the run."""
        self._fast("mark_used", touched, evaluated, now)

    def touch_artifact(self, stage_hash: str) -> None:
        """Mark an artifact used, at the end of the run (a read holds its lock meanwhile)."""
        self._touched.add(stage_hash)

    def record_lineage(self, rows: Iterable[LineageRow]) -> None:
        """Record the lineage of hashes the catalog has not seen; the others' lineage only
        becomes the most recent of their stages, at the end of the run."""
        by_hash: dict[str, list[LineageRow]] = {}
        for row in rows:
            by_hash.setdefault(row.hash, []).append(row)
        known = self._fast("hashes_with_lineage", list(by_hash)) if self._quick() is not None else set()
        new = [row for h, hash_rows in by_hash.items() if h not in known for row in hash_rows]
        if new:
            self._fast("record_lineage", new)
        self._evaluated.update(known)

    def flush(self, raising: bool = True) -> None:
        """Write the deferred marks of use in one transaction.

        ``raising=False``: the run is failing already; what fails here is only logged.
        """
        try:
            touched, evaluated = list(self._touched), list(self._evaluated)
            self._touched.clear()
            self._evaluated.clear()
            if touched or evaluated:
                self.mark_used(touched, evaluated, utcnow())
        except Exception as exc:
            if raising:
                raise
            logger.error("%s", exc)
