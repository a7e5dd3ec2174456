"""The catalog file of a cache directory: SQLite in WAL mode, one engine per process.

Writes begin with ``BEGIN IMMEDIATE`` (a deferred BEGIN that reads then writes fails at
once with "database is locked" under concurrency) and stay short. A catalog file found
damaged is moved aside, kept for inspection, and a new one made: artifacts are adopted
again from their manifests as they are asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event

from ..errors import CatalogDamagedError, CatalogUnavailableError
from .catalog_file import BUSY_TIMEOUT_MS, CATALOG_FILE, cache_dir_error
from .head_schema import create_catalog_file
from .migrate import ensure_schema
from .records import utcnow

logger = logging.getLogger("lwdp")



class SQLiteDatabase:
    """The catalog file, migrated when opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = _make_engine(path)
        ensure_schema(self.engine, str(path))
        self.inode = path.stat().st_ino

    def is_current(self) -> bool:
        """False once the catalog file was deleted or replaced under this process."""
        try:
            return self.path.stat().st_ino == self.inode
        except FileNotFoundError:
            return False

    @contextmanager
    def errors_explained(self) -> Iterator[None]:
        """SQLite's failures as lwdp errors; a catalog found damaged is moved aside."""
        try:
            yield
        except sqlalchemy.exc.OperationalError as exc:  # before its base class, DatabaseError
            locked = "locked" in str(exc.orig)
            cause = f"another process kept it locked for {BUSY_TIMEOUT_MS // 1000} s" if locked else str(exc.orig)
            raise CatalogUnavailableError(
                f"catalog {self.path}: {cause}; retry, or check the disk and the permissions of {self.path.parent}"
            ) from exc
        except sqlalchemy.exc.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            if self.is_current():
                self.engine.dispose()
                _move_aside(self.path, exc.orig)
            raise CatalogDamagedError(f"catalog {self.path} turned out damaged ({exc.orig}) and was moved aside") from exc


def open_sqlite(cache_dir: Path) -> SQLiteDatabase:
    """The catalog file of ``cache_dir``, made (or made anew, if the one there is not a
    database) and migrated.

    :raises CacheDirError: the directory or its catalog cannot be created or opened.
    """
    path = cache_dir / CATALOG_FILE
    if not path.exists():
        create_catalog_file(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            return SQLiteDatabase(path)
        except sqlalchemy.exc.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            _move_aside(path, exc.orig)
        return SQLiteDatabase(path)
    except (OSError, sqlalchemy.exc.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc.orig
        raise cache_dir_error(cache_dir, reason, getattr(exc, "errno", None)) from exc


def _make_engine(path: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"isolation_level": None, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # before journal_mode
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("lwdp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


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


def _is_corruption(exc: sqlalchemy.exc.DatabaseError) -> bool:
    text = str(exc.orig).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text
