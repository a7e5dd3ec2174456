"""The catalog file of a cache directory: SQLite in WAL mode, through the standard library.

Importing SQLAlchemy costs ~130 ms, more than a whole warm run of a small pipeline, so the
catalog's statements run on ``sqlite3`` connections, pooled per process and handed to one
thread at a time. A new file is made at the head schema with ``sqlite3`` too
(`lwdp.store.head_schema`); only an older file is migrated, with Alembic.

Writes begin with ``BEGIN IMMEDIATE`` (a deferred BEGIN that reads then writes fails at
once with "database is locked" under concurrency) and stay short. A catalog file found
damaged is moved aside, kept for inspection, and a new one made: artifacts are adopted
again from their manifests as they are asked for.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from ..errors import CatalogDamagedError, CatalogUnavailableError
from .catalog_file import BUSY_TIMEOUT_MS, CATALOG_FILE, HEAD_REVISION, cache_dir_error, is_corruption
from .database import Params
from .head_schema import create_catalog_file
from .records import sqlite_time, utcnow

logger = logging.getLogger("lwdp")


class _Session:
    """Statements on one connection; times become the text SQLite catalogs hold."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._streams: list[sqlite3.Cursor] = []

    def rows(self, sql: str, params: Params | None = None, stream: bool = False) -> Iterable[tuple[Any, ...]]:
        cursor = self.conn.execute(sql, _stored(params) if params else ())
        if not stream:
            return cursor.fetchall()  # a cursor left unfinished would hold its snapshot in the pool
        self._streams.append(cursor)
        return cursor

    def close(self) -> None:
        """End the reads of streams left unfinished (a walk that stopped early)."""
        for cursor in self._streams:
            cursor.close()

    def run(self, sql: str, params: Params) -> None:
        self.conn.execute(sql, _stored(params))

    def run_many(self, sql: str, rows: Sequence[Params]) -> None:
        self.conn.executemany(sql, [_stored(row) for row in rows])


def _stored(params: Params) -> Params:
    if not any(isinstance(value, dt.datetime) for value in params.values()):
        return params
    return {name: sqlite_time(value) if isinstance(value, dt.datetime) else value for name, value in params.items()}


class SQLiteDatabase:
    """The catalog file at this lwdp's schema."""

    def __init__(self, path: Path, first: sqlite3.Connection | None = None) -> None:
        """``first``: a connection already open to the file, the pool's first."""
        self.path = path
        self.inode = path.stat().st_ino
        self._idle: list[sqlite3.Connection] = [first] if first is not None else []
        self._pool = threading.Lock()

    def is_current(self) -> bool:
        """False once the catalog file was deleted or replaced under this process."""
        try:
            return self.path.stat().st_ino == self.inode
        except FileNotFoundError:
            return False

    def read(self) -> AbstractContextManager[_Session]:
        """Each query in its own implicit transaction: no BEGIN and COMMIT to pay for on a
        warm run's lookups (a read of several queries needs no snapshot across them)."""
        return self._session(None)

    def write(self) -> AbstractContextManager[_Session]:
        return self._session("BEGIN IMMEDIATE")

    @contextmanager
    def _session(self, begin: str | None) -> Iterator[_Session]:
        with self._pool:
            conn = self._idle.pop() if self._idle else None
        with self._errors_explained():
            if conn is None:
                conn = _connect(self.path)
            try:
                if begin is not None:
                    conn.execute(begin)
                session = _Session(conn)
                yield session
                session.close()
                if begin is not None:
                    conn.execute("COMMIT")
            except BaseException:
                _close_after_failure(conn)
                raise
        with self._pool:
            self._idle.append(conn)

    def close(self) -> None:
        with self._pool:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def _errors_explained(self) -> Iterator[None]:
        """SQLite's failures as lwdp errors; a catalog found damaged is moved aside."""
        try:
            yield
        except sqlite3.OperationalError as exc:  # before its base class, DatabaseError
            locked = "locked" in str(exc)
            cause = f"another process kept it locked for {BUSY_TIMEOUT_MS // 1000} s" if locked else str(exc)
            raise CatalogUnavailableError(
                f"catalog {self.path}: {cause}; retry, or check the disk and the permissions of {self.path.parent}"
            ) from exc
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            if self.is_current():
                self.close()
                _move_aside(self.path, exc)
            raise CatalogDamagedError(f"catalog {self.path} turned out damaged ({exc}) and was moved aside") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the existing file (``mode=rw``: never a new empty one); the path is
    quoted, since a URI reads ``?``, ``#`` and ``%`` in it as its own syntax."""
    conn = sqlite3.connect(
        f"file:{urllib.parse.quote(str(path))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None, check_same_thread=False,
    )
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL commits without fsync: a crash loses no more than the last runs' marks
    return conn


def _close_after_failure(conn: sqlite3.Connection) -> None:
    """A connection whose transaction failed is closed, not reused (closing rolls back)."""
    try:
        conn.close()
    except sqlite3.Error:
        pass


def open_sqlite(cache_dir: Path) -> SQLiteDatabase:
    """The catalog file of ``cache_dir``, made at the head schema when missing (or made anew,
    if the one there is not a database) and migrated when older.

    :raises CacheDirError: the directory or its catalog cannot be created or opened.
    :raises CatalogVersionError: the catalog was made by a newer lwdp.
    """
    path = cache_dir / CATALOG_FILE
    try:
        if not path.exists():
            create_catalog_file(cache_dir)
        try:
            conn = _connected_at_head(path)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) or not is_corruption(exc):
                raise
            _move_aside(path, exc)
            create_catalog_file(cache_dir)
            conn = _connected_at_head(path)
        if conn is None:
            from .migrate import migrate_sqlite  # SQLAlchemy and Alembic: only for an older file

            migrate_sqlite(path)
        return SQLiteDatabase(path, conn)  # the connection that checked the revision serves first
    except (OSError, sqlite3.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc
        raise cache_dir_error(cache_dir, reason, getattr(exc, "errno", None)) from exc


def _connected_at_head(path: Path) -> sqlite3.Connection | None:
    """A connection to the file if its schema is at `HEAD_REVISION`; None (and no connection
    left open) if it is older or not stamped, as a file another tool left empty."""
    conn = _connect(path)
    try:
        stamped = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone() is not None
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone() if stamped else None
    except BaseException:
        conn.close()
        raise
    if found == (HEAD_REVISION,):
        return conn
    conn.close()
    return None


def _move_aside(path: Path, damage: object) -> None:
    """Keep a damaged catalog for inspection under another name; the next open starts anew."""
    aside = path.with_name(f"{CATALOG_FILE}.corrupt-{utcnow():%Y%m%dT%H%M%S%f}")
    logger.warning(
        "catalog %s is damaged (%s); moved it to %s and started a new one: cached "
        "artifacts are re-adopted from their manifests as they are used",
        path, damage, aside.name,
    )
    for suffix in ("", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
