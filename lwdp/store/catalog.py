"""The SQLite catalog: engine, pragmas, transactions, and every SQL statement lwdp runs.

One engine per (process, catalog file), made again after a fork. Writes begin with
``BEGIN IMMEDIATE`` (a deferred BEGIN that reads then writes fails at once with
"database is locked" under concurrency) and stay short; no transaction is open while a
stage computes or a file is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, literal, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..digest import DigestMemo, FileState
from ..errors import CacheDirError, CatalogDamagedError, CatalogUnavailableError
from .migrate import ensure_schema
from .schema import artifacts, lineage, raw_files, stage_manifests

logger = logging.getLogger("lwdp")

CATALOG_FILE = "catalog.sqlite"
BUSY_TIMEOUT_MS = 60_000
_IN_CHUNK = 500  # stay far below SQLite's bound-parameter limit


def utcnow() -> dt.datetime:
    """Naive UTC, as stored; aware values are made on the way out."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """As stored: a naive value is taken to be UTC already (never local time)."""
    return value if value.tzinfo is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class ArtifactRecord:
    """One catalog row of ``artifacts``."""

    hash: str
    stage: str
    format: str
    size: int
    checksum: str
    read_options: dict[str, Any]
    created_at: dt.datetime
    last_access: dt.datetime
    compute_seconds: float | None = None
    lwdp_version: str | None = None
    pandas_version: str | None = None


@dataclass(frozen=True)
class UsageRow:
    """What gc needs to know about an artifact."""

    hash: str
    stage: str
    format: str
    size: int
    expired: bool


@dataclass(frozen=True)
class LineageRow:
    """One input of one evaluated stage."""

    hash: str
    stage: str
    input_name: str
    input_kind: str  # "stage" | "raw" | "param"
    input_hash: str
    input_path: str | None


def _lineage_row(row: Any) -> LineageRow:
    return LineageRow(row["hash"], row["stage"], row["input_name"], row["input_kind"], row["input_hash"], row["input_path"])


def _record_from_row(row: Any) -> ArtifactRecord:
    values = dict(row)
    values["read_options"] = json.loads(values["read_options"] or "{}")
    values["created_at"] = _aware(values["created_at"])
    values["last_access"] = _aware(values["last_access"])
    return ArtifactRecord(**values)


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


class Catalog:
    """The artifacts, lineage and digest memo of one cache directory."""

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
    def _write(self) -> Iterator[Connection]:
        with self._errors_explained(), self.engine.connect() as conn:
            conn = conn.execution_options(lwdp_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors_explained(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _errors_explained(self) -> Iterator[None]:
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

    # artifacts

    def lookup_artifact(self, stage_hash: str) -> ArtifactRecord | None:
        with self._read() as conn:
            row = conn.execute(select(artifacts).where(artifacts.c.hash == stage_hash)).mappings().first()
        return None if row is None else _record_from_row(row)

    def all_artifacts(self, stage: str | None = None) -> list[ArtifactRecord]:
        """Every artifact row (of one stage), newest first."""
        query = select(artifacts).order_by(artifacts.c.created_at.desc())
        if stage is not None:
            query = query.where(artifacts.c.stage == stage)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_record_from_row(row) for row in rows]

    def usage_by_recency(self, expired_before: dt.datetime | None) -> list[UsageRow]:
        """Every artifact, most recently used first (a walk of the (last_access, size)
        index), marked expired if last used before ``expired_before``: for gc. The database
        compares the times, so no timestamp is parsed per row."""
        expired = artifacts.c.last_access < _naive_utc(expired_before) if expired_before is not None else literal(False)
        columns = [artifacts.c.hash, artifacts.c.stage, artifacts.c.format, artifacts.c.size, expired]
        with self._read() as conn:
            rows = conn.execute(select(*columns).order_by(artifacts.c.last_access.desc())).all()
        return [UsageRow(h, s, f, size, bool(old)) for h, s, f, size, old in rows]

    def record_artifact(self, record: ArtifactRecord, stage_manifest: dict[str, Any] | None = None) -> None:
        """Insert or replace an artifact's row and, when given, its stage hash's manifest
        (`lwdp.manifest`), in one transaction."""
        self.record_artifacts([record], {record.hash: stage_manifest} if stage_manifest else None)

    def record_artifacts(self, records: Iterable[ArtifactRecord], stage_manifests_by_hash: dict[str, dict[str, Any]] | None = None) -> None:
        """Insert or replace artifact rows and stage manifests, in one transaction."""
        values = [
            {
                **record.__dict__,
                "read_options": json.dumps(record.read_options),
                "created_at": _naive_utc(record.created_at),
                "last_access": _naive_utc(record.last_access),
            }
            for record in records
        ]
        if not values:
            return
        stages = {row["hash"]: row["stage"] for row in values}
        manifest_values = [
            {"hash": h, "stage": stages[h], "manifest": json.dumps(m, sort_keys=True, ensure_ascii=False), "recorded_at": utcnow()}
            for h, m in (stage_manifests_by_hash or {}).items()
        ]
        stmt = sqlite_insert(artifacts)
        stmt = stmt.on_conflict_do_update(index_elements=["hash"], set_={k: stmt.excluded[k] for k in values[0] if k != "hash"})
        with self._write() as conn:
            conn.execute(stmt, values)
            if manifest_values:
                upsert = sqlite_insert(stage_manifests)
                conn.execute(upsert.on_conflict_do_update(index_elements=["hash"], set_={
                    "manifest": upsert.excluded.manifest, "recorded_at": upsert.excluded.recorded_at,
                }), manifest_values)

    def last_access(self, stage_hash: str) -> dt.datetime | None:
        """When the artifact was last used (naive UTC), or None without a row."""
        with self._read() as conn:
            return conn.execute(select(artifacts.c.last_access).where(artifacts.c.hash == stage_hash)).scalar()

    def touch_artifact(self, stage_hash: str) -> None:
        with self._write() as conn:
            conn.execute(update(artifacts).where(artifacts.c.hash == stage_hash).values(last_access=utcnow()))

    def delete_artifact(self, stage_hash: str) -> None:
        with self._write() as conn:
            conn.execute(delete(artifacts).where(artifacts.c.hash == stage_hash))

    # lineage

    def record_lineage(self, rows: Iterable[LineageRow]) -> None:
        """Record each input of each evaluated stage hash; ``recorded_at`` becomes now, so the
        newest ``recorded_at`` of a stage names its most recently evaluated hash."""
        values = [{**row.__dict__, "recorded_at": utcnow()} for row in rows]
        if not values:
            return
        stmt = sqlite_insert(lineage)
        stmt = stmt.on_conflict_do_update(index_elements=["hash", "input_name"], set_={"recorded_at": stmt.excluded.recorded_at})
        with self._write() as conn:
            conn.execute(stmt, values)

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
            return [_lineage_row(row) for row in conn.execute(query).mappings()]

    def raw_inputs(self) -> list[LineageRow]:
        """Every recorded raw input of every stage hash."""
        with self._read() as conn:
            return [_lineage_row(row) for row in conn.execute(select(lineage).where(lineage.c.input_kind == "raw")).mappings()]

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
            for start in range(0, len(paths), _IN_CHUNK):
                chunk = paths[start : start + _IN_CHUNK]
                for row in conn.execute(select(raw_files).where(raw_files.c.path.in_(chunk))):
                    state = FileState(row.path, row.size, row.mtime_ns, row.ctime_ns, row.inode)
                    memos[row.path] = DigestMemo(state, row.digest, row.digested_at_ns)
        return memos

    def save_digest_memos(self, memos: list[DigestMemo]) -> None:
        values = [
            {**memo.state.__dict__, "digest": memo.digest, "digested_at_ns": memo.digested_at_ns}
            for memo in memos
        ]
        stmt = sqlite_insert(raw_files)
        stmt = stmt.on_conflict_do_update(
            index_elements=["path"], set_={k: stmt.excluded[k] for k in values[0] if k != "path"}
        )
        with self._write() as conn:
            conn.execute(stmt, values)


_catalogs: dict[tuple[int, Path], Catalog] = {}


def open_catalog(cache_dir: Path) -> Catalog:
    """The catalog of ``cache_dir`` for this process (created and migrated on first use).

    A catalog file that is not a database is moved aside and a new one made: artifacts
    are adopted again from their manifests as they are asked for.

    :raises CacheDirError: the directory or its catalog cannot be created or opened.
    """
    key = (os.getpid(), cache_dir)
    catalog = _catalogs.get(key)
    if catalog is None or not catalog.is_current():
        if catalog is not None:
            catalog.engine.dispose()
        catalog = _catalogs[key] = _open_or_rebuild(cache_dir)
    return catalog


def _open_or_rebuild(cache_dir: Path) -> Catalog:
    path = cache_dir / CATALOG_FILE
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            return Catalog(path)
        except sqlalchemy.exc.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            _move_aside(path, exc.orig)
        return Catalog(path)
    except (OSError, sqlalchemy.exc.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc.orig
        raise CacheDirError(
            f"cannot use cache directory {cache_dir} ({reason}); fix its permissions or choose "
            "another with lwdp.configure(cache_dir=...) or LWDP_CACHE_DIR",
            getattr(exc, "errno", None),
        ) from exc


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
