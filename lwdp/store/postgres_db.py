"""A catalog a team shares on PostgreSQL (``catalog_url``), through psycopg 3.

Plain READ COMMITTED transactions: every write is a short ``INSERT ... ON CONFLICT`` or a
one-row UPDATE or DELETE, which PostgreSQL keeps atomic under concurrency by itself.
Messages name the URL with its password hidden, and lwdp never logs it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, TextClause, create_engine, make_url, text
from sqlalchemy.engine import URL

from ..errors import CatalogUnavailableError, MissingExtraError
from .database import Params
from .migrate import ensure_schema

# Unless the URL says otherwise: fail within seconds when the host doesn't answer (instead
# of the kernel's minutes), and show up as lwdp in pg_stat_activity.
_CONNECT_DEFAULTS = {"connect_timeout": 10, "application_name": "lwdp"}
_INSUFFICIENT_PRIVILEGE = "42501"
_HOW_TO_SET = "lwdp.configure(catalog_url=...) or LWDP_CATALOG_URL"


@functools.lru_cache(maxsize=256)
def _statement(sql: str) -> TextClause:
    """Parsed once: the catalog's statements are a few texts (``IN`` lists vary in length)."""
    return text(sql)


class _Session:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Params | None = None, stream: bool = False) -> Iterable[tuple[Any, ...]]:
        options = {"yield_per": 1000} if stream else None  # a server-side cursor, for this query alone
        return iter(self.conn.execute(_statement(sql), dict(params or {}), execution_options=options))

    def run(self, sql: str, params: Params) -> None:
        self.conn.execute(_statement(sql), dict(params))

    def run_many(self, sql: str, rows: Sequence[Params]) -> None:
        self.conn.execute(_statement(sql), [dict(row) for row in rows])


class PostgresDatabase:
    """The catalog database at ``url``, migrated when opened."""

    def __init__(self, url: URL) -> None:
        self.path = url.render_as_string(hide_password=True)
        try:
            self.engine = create_engine(
                url, pool_pre_ping=True,  # a server restart or an idle timeout doesn't break the next run
                connect_args={k: v for k, v in _CONNECT_DEFAULTS.items() if k not in url.query},
            )
        except ImportError as exc:
            raise MissingExtraError(f"a PostgreSQL catalog needs psycopg: pip install 'lwdp[postgres]' (catalog {self.path})") from exc
        try:
            with self.errors_explained():
                ensure_schema(self.engine, self.path)
        except BaseException:
            self.engine.dispose()
            raise

    def is_current(self) -> bool:
        """Always: unlike a file, a database is not replaced under a running process."""
        return True

    @contextmanager
    def read(self) -> Iterator[_Session]:
        with self.errors_explained(), self.engine.connect() as conn, conn.begin():
            yield _Session(conn)

    write = read  # READ COMMITTED: each write is a statement PostgreSQL keeps atomic

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def errors_explained(self) -> Iterator[None]:
        """A server that can't be reached, or refuses the login or the access, as a
        `CatalogUnavailableError` naming the URL without its password."""
        try:
            yield
        except sqlalchemy.exc.DBAPIError as exc:
            refused = getattr(exc.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE
            if not (refused or isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))):
                raise
            cause = " ".join(str(exc.orig).split())
            raise CatalogUnavailableError(
                f"catalog {self.path}: {cause}; check that the server is up and reachable, and the "
                f"URL and its credentials ({_HOW_TO_SET}, ~/.pgpass)"
            ) from exc


def open_postgres(url: str) -> PostgresDatabase:
    """The shared catalog at ``url`` (``postgresql://`` means psycopg 3), migrated.

    :raises CatalogUnavailableError: not a PostgreSQL URL, or the server can't be reached
        or refuses the login.
    :raises MissingExtraError: psycopg is not installed.
    """
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise CatalogUnavailableError(  # the text may hold a password: not repeated
            f"the catalog URL is not a database URL; set {_HOW_TO_SET} to postgresql+psycopg://USER@HOST:PORT/DATABASE"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise CatalogUnavailableError(
            f"catalog {parsed.render_as_string(hide_password=True)}: a shared catalog is a PostgreSQL "
            f"database; set {_HOW_TO_SET} to postgresql+psycopg://USER@HOST:PORT/DATABASE"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return PostgresDatabase(parsed)
