"""What the catalog needs of a database: transactions that run SQL text.

The catalog's statements are SQL text with named parameters (``:name``) that SQLite and
PostgreSQL both accept, written once in `lwdp.store.catalog`. A `Database` runs them: the
cache directory's SQLite file through the standard library (`lwdp.store.sqlite_db`: a run
never imports SQLAlchemy), a team's PostgreSQL through SQLAlchemy (`lwdp.store.postgres_db`).
Parameters are naive UTC times, text and numbers; each database stores times its own way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

Params = Mapping[str, Any]
_IN_CHUNK = 500  # far below SQLite's bound-parameter limit


class Session(Protocol):
    """Statements on one connection: a read's queries, or a write's transaction."""

    def rows(self, sql: str, params: Params | None = None, stream: bool = False) -> Iterable[tuple[Any, ...]]:
        """The rows of a query; ``stream``: fetched in batches as they are iterated (a
        walk that may stop early over a large table), not all at once."""

    def run(self, sql: str, params: Params) -> None:
        """A statement that returns no rows."""

    def run_many(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement, once per parameter row."""


class Database(Protocol):
    """Where a catalog lives."""

    @property
    def path(self) -> Path | str:
        """For messages: the file, or the URL without its password."""

    def read(self) -> AbstractContextManager[Session]:
        """Queries (no snapshot across them is promised); a failure raises an lwdp error
        that says what to do."""

    def write(self) -> AbstractContextManager[Session]:
        """A write transaction (on SQLite it excludes other writers from its start, so a
        read-then-write never fails on upgrading its lock; PostgreSQL locks rows)."""

    def is_current(self) -> bool:
        """False once the database was replaced under this process (a SQLite file deleted)."""

    def close(self) -> None: ...


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    """Slices of values for ``IN (...)`` lists."""
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def in_list(values: Sequence[str], params: dict[str, Any]) -> str:
    """``(:in0, :in1, ...)`` for ``values``, which are added to ``params``."""
    marks = []
    for i, value in enumerate(values):
        params[f"in{i}"] = value
        marks.append(f":in{i}")
    return f"({', '.join(marks)})"
