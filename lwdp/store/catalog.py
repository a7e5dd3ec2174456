"""The catalog: every SQL statement lwdp runs, on SQLite or PostgreSQL alike.

The catalog is the SQLite file of the cache directory (`sqlite_db`), or a database a team
shares when ``catalog_url`` is set (`postgres_db`); both run the same SQLAlchemy Core
statements over the same tables. The one dialect-specific statement, the upsert, takes
its ``insert`` from the engine's dialect (both have ``on_conflict_do_update``). Each
transaction is short: none is open while a stage computes or a file is written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .. import config
from ..digest import DigestMemo, FileState
from .connections import on_close
from .postgres_db import open_postgres
from .quick_catalog import in_chunks
from .records import ArtifactRecord, LineageRow, UsageRow, artifact_values, lineage_row, naive_utc, record_from_row, utcnow
from .schema import artifacts, lineage, raw_files, stage_manifests
from .sqlite_db import open_sqlite

__all__ = ["ArtifactRecord", "Catalog", "LineageRow", "UsageRow", "open_catalog", "utcnow"]

_Insert = sqlite.Insert | postgresql.Insert
_INSERTS: dict[str, Callable[[Table], _Insert]] = {
    "sqlite": sqlite.insert, "postgresql": postgresql.insert,
}


class Database(Protocol):
    """Where a catalog lives: its engine, and what only that engine knows."""

    @property
    def path(self) -> Path | str:
        """For messages: the file, or the URL without its password."""

    @property
    def engine(self) -> Engine: ...

    def is_current(self) -> bool: ...

    def errors_explained(self) -> AbstractContextManager[None]: ...


class Catalog:
    """The artifacts, lineage and digest memo of one cache directory (or a team's)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = db.path  # for messages
        self.engine = db.engine
        insert = _INSERTS[self.engine.dialect.name]
        self._upsert_artifacts = _upsert(insert, artifacts)
        self._upsert_manifests = _upsert(insert, stage_manifests, ["manifest", "recorded_at"])
        self._upsert_lineage = _upsert(insert, lineage, ["recorded_at"])
        self._upsert_memos = _upsert(insert, raw_files)

    def is_current(self) -> bool:
        """False once the catalog was replaced under this process (a SQLite file deleted)."""
        return self.db.is_current()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.db.errors_explained(), self.engine.connect() as conn:
            conn = conn.execution_options(lwdp_write=True)  # SQLite: BEGIN IMMEDIATE
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.db.errors_explained(), self.engine.connect() as conn, conn.begin():
            yield conn

    # artifacts

    def lookup_artifact(self, stage_hash: str) -> ArtifactRecord | None:
        with self._read() as conn:
            row = conn.execute(select(artifacts).where(artifacts.c.hash == stage_hash)).mappings().first()
        return None if row is None else record_from_row(row)

    def all_artifacts(self, stage: str | None = None) -> list[ArtifactRecord]:
        """Every artifact row (of one stage), newest first."""
        query = select(artifacts).order_by(artifacts.c.created_at.desc())
        if stage is not None:
            query = query.where(artifacts.c.stage == stage)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [record_from_row(row) for row in rows]

    def listed_formats(self) -> dict[str, str]:
        """{hash: format} of every artifact row: what gc compares with the files."""
        with self._read() as conn:
            return dict(conn.execute(select(artifacts.c.hash, artifacts.c.format)).all())

    def usage_rows(self, hashes: Iterable[str]) -> list[UsageRow]:
        """The rows of these hashes, as gc reports them."""
        a = artifacts
        rows: list[UsageRow] = []
        with self._read() as conn:
            for chunk in in_chunks(sorted(hashes)):
                query = select(a.c.hash, a.c.stage, a.c.format, a.c.size).where(a.c.hash.in_(chunk))
                rows.extend(UsageRow(*row) for row in conn.execute(query))
        return rows

    def eviction_victims(
        self, expired_before: dt.datetime | None, budget: int | None, ignore: set[str]
    ) -> list[tuple[UsageRow, str]]:
        """The rows gc evicts, and why: "expired" (last used before ``expired_before``), then
        "lru": while the others exceed ``budget`` bytes, the least recently used of them
        (strict LRU: what stays is the most recently used run of rows that fits). Rows in
        ``ignore`` neither go nor count.

        The cost grows with the victims, not with the catalog: one SUM over the recency
        index, then a walk of it from the oldest row (it covers every column read) that
        stops once enough bytes are freed (listing all million rows took 9 s).
        """
        a = artifacts
        columns = (a.c.hash, a.c.stage, a.c.format, a.c.size)
        cutoff = naive_utc(expired_before) if expired_before is not None else None
        kept = a.c.last_access >= cutoff if cutoff is not None else literal(True)
        victims: list[tuple[UsageRow, str]] = []
        with self._read() as conn:
            if cutoff is not None:
                expired = conn.execute(select(*columns).where(a.c.last_access < cutoff))
                victims += [(UsageRow._make(row), "expired") for row in expired if row[0] not in ignore]
            if budget is None:
                return victims
            excess = conn.execute(select(func.coalesce(func.sum(a.c.size), 0)).where(kept)).scalar_one() - budget
            for chunk in in_chunks(sorted(ignore)):
                ignored = select(func.coalesce(func.sum(a.c.size), 0)).where(kept, a.c.hash.in_(chunk))
                excess -= conn.execute(ignored).scalar_one()
            if excess <= 0:
                return victims
            oldest_first = conn.execute(
                select(*columns).where(kept).order_by(a.c.last_access.asc()).execution_options(yield_per=1000)
            )
            for row in oldest_first:
                if row[0] in ignore:
                    continue
                victims.append((UsageRow._make(row), "lru"))
                excess -= row[3]
                if excess <= 0:
                    break
            oldest_first.close()
        return victims

    def record_artifact(self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> None:
        """Insert or replace an artifact's row and, when given, its stage hash's manifest
        (`lwdp.manifest`), in one transaction."""
        self.record_artifacts([record], {record.hash: stage_manifest} if stage_manifest else None)

    def record_artifacts(self, records: Iterable[ArtifactRecord], stage_manifests_by_hash: dict[str, dict[str, Any]] | None = None) -> None:
        """Insert or replace artifact rows and stage manifests, in one transaction."""
        values = _in_key_order([artifact_values(record) for record in records], artifacts)
        if not values:
            return
        stages = {row["hash"]: row["stage"] for row in values}
        manifest_values = _in_key_order([
            {"hash": h, "stage": stages[h], "manifest": json.dumps(m, sort_keys=True, ensure_ascii=False), "recorded_at": utcnow()}
            for h, m in (stage_manifests_by_hash or {}).items()
        ], stage_manifests)
        with self._write() as conn:
            conn.execute(self._upsert_artifacts, values)
            if manifest_values:
                conn.execute(self._upsert_manifests, manifest_values)

    def last_access(self, stage_hash: str) -> dt.datetime | None:
        """When the artifact was last used (naive UTC), or None without a row."""
        with self._read() as conn:
            return conn.execute(select(artifacts.c.last_access).where(artifacts.c.hash == stage_hash)).scalar()

    def touch_artifact(self, stage_hash: str) -> None:
        self.mark_used([stage_hash], [], utcnow())

    def mark_used(self, touched: list[str], evaluated: list[str], now: dt.datetime) -> None:
        """One write transaction: the artifacts read get ``now`` as last access, and the
        lineage of the stage hashes evaluated becomes the most recent of their stages."""
        now = naive_utc(now)
        with self._write() as conn:
            for chunk in in_chunks(sorted(touched)):
                conn.execute(update(artifacts).where(artifacts.c.hash.in_(chunk)).values(last_access=now))
            for chunk in in_chunks(sorted(evaluated)):
                conn.execute(update(lineage).where(lineage.c.hash.in_(chunk)).values(recorded_at=now))

    def delete_artifact(self, stage_hash: str) -> None:
        with self._write() as conn:
            conn.execute(delete(artifacts).where(artifacts.c.hash == stage_hash))

    # lineage

    def record_lineage(self, rows: Iterable[LineageRow]) -> None:
        """Record each input of each evaluated stage hash; ``recorded_at`` becomes now, so the
        newest ``recorded_at`` of a stage names its most recently evaluated hash."""
        values = _in_key_order([{**row.__dict__, "recorded_at": utcnow()} for row in rows], lineage)
        if not values:
            return
        with self._write() as conn:
            conn.execute(self._upsert_lineage, values)

    def hashes_with_lineage(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        with self._read() as conn:
            for chunk in in_chunks(hashes):
                found.update(conn.execute(select(lineage.c.hash).where(lineage.c.hash.in_(chunk)).distinct()).scalars())
        return found

    def previous_manifest(self, stage: str, current: str) -> tuple[bool, dict[str, Any] | None]:
        """(whether a result of ``current`` was stored before, the manifest to explain its
        absence against): of the stage's other hashes, the one whose artifact was used last,
        else the one computed last."""
        m = stage_manifests
        query = (
            select(m.c.manifest).select_from(m.outerjoin(artifacts, artifacts.c.hash == m.c.hash))
            .where(m.c.stage == stage, m.c.hash != current)
            .order_by(artifacts.c.last_access.is_(None), artifacts.c.last_access.desc(), m.c.recorded_at.desc())
            .limit(1)
        )
        with self._read() as conn:
            seen = conn.execute(select(m.c.hash).where(m.c.hash == current)).first() is not None
            found = conn.execute(query).scalar()
        return seen, json.loads(found) if found is not None else None

    # names and lineage

    def stage_names(self) -> set[str]:
        """Every stage name the catalog has seen (in lineage or artifacts)."""
        query = select(lineage.c.stage).union(select(artifacts.c.stage))
        with self._read() as conn:
            return set(conn.execute(query).scalars())

    def hashes_with_prefix(self, prefix: str) -> dict[str, str]:
        """{hash: stage} of every recorded stage hash starting with ``prefix``."""
        pattern = prefix.lower() + "%"
        query = select(lineage.c.hash, lineage.c.stage).where(lineage.c.hash.like(pattern)).union(
            select(artifacts.c.hash, artifacts.c.stage).where(artifacts.c.hash.like(pattern))
        )
        with self._read() as conn:
            return {h: s for h, s in conn.execute(query)}

    def latest_hash(self, stage: str) -> str | None:
        """The stage's most recently evaluated hash."""
        query = (
            select(lineage.c.hash).where(lineage.c.stage == stage)
            .order_by(lineage.c.recorded_at.desc()).limit(1)
        )
        with self._read() as conn:
            found = conn.execute(query).scalar()
            if found is None:
                query = select(artifacts.c.hash).where(artifacts.c.stage == stage).order_by(artifacts.c.created_at.desc()).limit(1)
                found = conn.execute(query).scalar()
        return found

    def inputs_of(self, stage_hashes: Iterable[str]) -> list[LineageRow]:
        """The lineage rows of these stage hashes and of all their ancestors."""
        seeds = list(stage_hashes)
        if not seeds:
            return []
        seed = select(lineage.c.hash).where(lineage.c.hash.in_(seeds)).distinct().cte("ancestry", recursive=True)
        step = select(lineage.c.input_hash).join(seed, lineage.c.hash == seed.c.hash).where(lineage.c.input_kind == "stage")
        ancestry = seed.union(step)
        query = select(lineage).where(lineage.c.hash.in_(select(ancestry.c.hash)))
        with self._read() as conn:
            return [lineage_row(row) for row in conn.execute(query).mappings()]

    def raw_inputs(self) -> list[LineageRow]:
        """Every recorded raw input of every stage hash."""
        with self._read() as conn:
            return [lineage_row(row) for row in conn.execute(select(lineage).where(lineage.c.input_kind == "raw")).mappings()]

    def descendants(self, stage_hashes: Iterable[str]) -> list[tuple[str, str, int]]:
        """(hash, stage, depth) of every stage hash derived from these, transitively (depth 1 =
        a direct consumer)."""
        seeds = list(stage_hashes)
        if not seeds:
            return []
        seed = select(lineage.c.hash, literal(0).label("depth")).where(lineage.c.hash.in_(seeds)).distinct().cte(
            "derived", recursive=True
        )
        step = select(lineage.c.hash, (seed.c.depth + 1).label("depth")).join(
            seed, (lineage.c.input_hash == seed.c.hash) & (lineage.c.input_kind == "stage")
        )
        derived = seed.union(step)
        query = (
            select(derived.c.hash, lineage.c.stage, func.min(derived.c.depth))
            .join(lineage, lineage.c.hash == derived.c.hash)
            .group_by(derived.c.hash, lineage.c.stage)
        )
        with self._read() as conn:
            return [(h, s, d) for h, s, d in conn.execute(query)]

    # raw-file digest memo

    def load_digest_memos(self, paths: list[str]) -> dict[str, DigestMemo]:
        memos: dict[str, DigestMemo] = {}
        with self._read() as conn:
            for chunk in in_chunks(paths):
                for row in conn.execute(select(raw_files).where(raw_files.c.path.in_(chunk))):
                    state = FileState(row.path, row.size, row.mtime_ns, row.ctime_ns, row.inode)
                    memos[row.path] = DigestMemo(state, row.digest, row.digested_at_ns)
        return memos

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        values = _in_key_order([
            {**memo.state._asdict(), "digest": memo.digest, "digested_at_ns": memo.digested_at_ns}
            for memo in memos
        ], raw_files)
        if not values:
            return
        with self._write() as conn:
            conn.execute(self._upsert_memos, values)


_catalogs: dict[tuple[int, Path | str], Catalog] = {}
_opening = threading.Lock()


@on_close
def _close_catalogs() -> None:
    with _opening:
        for catalog in _catalogs.values():
            catalog.engine.dispose()
        _catalogs.clear()


def open_catalog(cache_dir: Path) -> Catalog:
    """The catalog in force for ``cache_dir`` in this process (created and migrated on
    first use): the database at ``catalog_url`` when one is set, else the cache
    directory's SQLite file. One engine per process and catalog, made again after a fork.

    :raises CacheDirError: the directory or its SQLite catalog cannot be created or opened.
    :raises CatalogUnavailableError: the ``catalog_url`` database can't be reached or used.
    :raises CatalogVersionError: the catalog was made by a newer lwdp.
    :raises MissingExtraError: a PostgreSQL catalog without psycopg installed.
    """
    url = config.catalog_url()
    key = (os.getpid(), url or cache_dir)
    with _opening:  # Alembic keeps its migration context in module globals: one at a time
        catalog = _catalogs.get(key)
        if catalog is None or not catalog.is_current():
            if catalog is not None:
                catalog.engine.dispose()
            catalog = _catalogs[key] = Catalog(open_postgres(url) if url else open_sqlite(cache_dir))
    return catalog


def _upsert(insert: Callable[[Table], _Insert], table: Table, columns: list[str] | None = None) -> _Insert:
    """INSERT, or on a primary-key conflict UPDATE ``columns`` (all others by default) to
    the new row's values. Built once: building a statement costs more than running it."""
    stmt = insert(table)
    keys = [c.name for c in table.primary_key]
    columns = columns if columns is not None else [c.name for c in table.columns if c.name not in keys]
    return stmt.on_conflict_do_update(index_elements=keys, set_={name: stmt.excluded[name] for name in columns})


def _in_key_order(values: list[dict[str, Any]], table: Table) -> list[dict[str, Any]]:
    """Rows by primary key: concurrent upserts on PostgreSQL lock rows in one order, so
    they never deadlock."""
    return sorted(values, key=itemgetter(*(c.name for c in table.primary_key)))
