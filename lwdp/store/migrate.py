"""Bring a catalog's schema to this lwdp's revision with Alembic, or refuse a newer one.

The common case (a catalog already at `HEAD_REVISION`) costs one SELECT and never imports
Alembic (a SQLite catalog checks its revision without SQLAlchemy, `lwdp.store.sqlite_db`,
and comes here only when older). An upgrade runs in one transaction that excludes other migrators, so processes
opening a brand-new catalog at once migrate it exactly once: SQLite's ``BEGIN IMMEDIATE``
(the caller's engine emits it), or a PostgreSQL advisory lock held until the commit.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing import Any

import sqlalchemy.exc
from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, text

from ..errors import CatalogVersionError
from .catalog_file import BUSY_TIMEOUT_MS, HEAD_REVISION, cache_dir_error, enable_wal

_ELSEWHERE = {
    "sqlite": "point LWDP_CACHE_DIR at another cache directory",
    "postgresql": "point LWDP_CATALOG_URL at another database",
}
_MIGRATION_LOCK = 0x6C776470_6D696772  # "lwdpmigr": the advisory lock key of migrations on PostgreSQL


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the installed package, or the repo's top level."""
    migrations = importlib.import_module("lwdp.migrations")
    return Path(migrations.__path__[0])


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def ensure_schema(engine: Engine, where: str) -> None:
    """Upgrade the catalog at ``where`` in place if it is older than this lwdp.

    :raises CatalogVersionError: the catalog was made by a newer lwdp.
    """
    with engine.connect() as conn:
        if current_revision(conn) == HEAD_REVISION:
            return
    with engine.connect() as conn:
        conn = conn.execution_options(lwdp_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            revision = current_revision(conn)
            if revision != HEAD_REVISION:
                with _alembic_logs_at_debug():
                    _upgrade(conn, revision, where)


def migrate_sqlite(path: Path) -> None:
    """Upgrade the SQLite catalog at ``path`` (made when missing) to `HEAD_REVISION`.

    :raises CatalogVersionError: the catalog was made by a newer lwdp.
    :raises CacheDirError: the file can't be opened or written.
    """
    url = URL.create("sqlite", database=str(path))  # not an f-string: '?' or '#' in the path are not a query
    engine = create_engine(url, connect_args={"isolation_level": None, "timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        enable_wal(cursor.execute)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("lwdp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    try:
        ensure_schema(engine, str(path))
    except sqlalchemy.exc.OperationalError as exc:
        raise cache_dir_error(path.parent, exc.orig, None) from exc
    finally:
        engine.dispose()


def _upgrade(conn: Connection, revision: str | None, where: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = conn
    known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
    if revision is not None and revision not in known:
        from ..version import __version__

        raise CatalogVersionError(
            f"catalog {where} has schema revision {revision!r}, newer than this lwdp "
            f"{__version__} knows (newest {HEAD_REVISION!r}); upgrade lwdp (pip install -U lwdp) "
            f"or {_ELSEWHERE[conn.dialect.name]}"
        )
    command.upgrade(config, "head")


class _Relog(logging.Handler):
    """Hands each record to ``target`` at DEBUG."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.debug("catalog migration: %s", record.getMessage())


@contextmanager
def _alembic_logs_at_debug() -> Iterator[None]:
    """Alembic logs INFO lines as it loads and runs each revision; a user who turns on
    INFO to see lwdp's stage lines should not see its internals, so while lwdp migrates,
    Alembic's records go to the ``lwdp`` logger at DEBUG instead of propagating."""
    alembic = logging.getLogger("alembic")
    handler = _Relog(logging.getLogger("lwdp"))
    saved = alembic.propagate, alembic.level
    alembic.addHandler(handler)
    alembic.propagate, alembic.level = False, logging.INFO
    try:
        yield
    finally:
        alembic.removeHandler(handler)
        alembic.propagate, alembic.level = saved
