"""A new SQLite catalog, made at the head schema with the standard library.

Migrating an empty file to the head revision imports SQLAlchemy and Alembic and runs
every migration: ~250 ms, more than a whole first run of a small pipeline. A new catalog
is common (a fresh clone, CI, a test's temporary directory), so it is made instead from
the SQL that SQLite keeps for a catalog the migrations made (``sqlite_master``), and
stamped with the head revision, so Alembic upgrades it later like any other. The
migrations stay the owners of the schema: `HEAD_SCHEMA` is generated from them
(``python -m lwdp.store.head_schema`` prints it anew), and a test checks that it makes
exactly what they make.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .catalog_file import BUSY_TIMEOUT_MS, CATALOG_FILE, HEAD_REVISION, cache_dir_error, enable_wal, is_corruption

HEAD_SCHEMA = (
    """CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
)""",
    """CREATE TABLE artifacts (
	hash VARCHAR(32) NOT NULL, 
	stage TEXT NOT NULL, 
	format VARCHAR(16) NOT NULL, 
	size BIGINT NOT NULL, 
	checksum VARCHAR(32) NOT NULL, 
	read_options TEXT, 
	created_at DATETIME NOT NULL, 
	last_access DATETIME NOT NULL, compute_seconds FLOAT, lwdp_version VARCHAR(32), pandas_version VARCHAR(32), input_key VARCHAR(32), watched BOOLEAN DEFAULT 0 NOT NULL, hits INTEGER DEFAULT '0' NOT NULL, 
	PRIMARY KEY (hash)
)""",
    """CREATE INDEX ix_artifacts_stage ON artifacts (stage)""",
    """CREATE TABLE lineage (
	hash VARCHAR(32) NOT NULL, 
	input_name TEXT NOT NULL, 
	stage TEXT NOT NULL, 
	input_kind VARCHAR(8) NOT NULL, 
	input_hash VARCHAR(32) NOT NULL, 
	input_path TEXT, 
	recorded_at DATETIME NOT NULL, 
	PRIMARY KEY (hash, input_name)
)""",
    """CREATE TABLE raw_files (
	path TEXT NOT NULL, 
	size BIGINT NOT NULL, 
	mtime_ns BIGINT NOT NULL, 
	ctime_ns BIGINT NOT NULL, 
	inode BIGINT NOT NULL, 
	digest VARCHAR(32) NOT NULL, 
	digested_at_ns BIGINT NOT NULL, 
	PRIMARY KEY (path)
)""",
    """CREATE INDEX ix_lineage_input_hash ON lineage (input_hash)""",
    """CREATE VIEW lineage_closure AS
        WITH RECURSIVE closure(hash, stage, ancestor_kind, ancestor_hash, ancestor_name, ancestor_path, depth) AS (
            SELECT hash, stage, input_kind, input_hash, input_name, input_path, 1 FROM lineage
            UNION
            SELECT c.hash, c.stage, l.input_kind, l.input_hash, l.input_name, l.input_path, c.depth + 1
            FROM closure AS c JOIN lineage AS l ON l.hash = c.ancestor_hash
            WHERE c.ancestor_kind = 'stage'
        )
        SELECT hash, stage, ancestor_kind, ancestor_hash, ancestor_name, ancestor_path, depth FROM closure""",
    """CREATE VIEW raw_descendants AS
        WITH RECURSIVE derived(raw_path, raw_digest, hash, depth) AS (
            SELECT input_path, input_hash, hash, 1 FROM lineage WHERE input_kind = 'raw'
            UNION
            SELECT d.raw_path, d.raw_digest, l.hash, d.depth + 1
            FROM derived AS d JOIN lineage AS l ON l.input_hash = d.hash AND l.input_kind = 'stage'
        )
        SELECT DISTINCT d.raw_path, d.raw_digest, d.hash, l.stage, d.depth
        FROM derived AS d JOIN (SELECT DISTINCT hash, stage FROM lineage) AS l ON l.hash = d.hash""",
    """CREATE TABLE stage_manifests (
	hash VARCHAR(32) NOT NULL, 
	stage TEXT NOT NULL, 
	manifest TEXT NOT NULL, 
	recorded_at DATETIME NOT NULL, 
	PRIMARY KEY (hash)
)""",
    """CREATE INDEX ix_stage_manifests_stage_recorded_at ON stage_manifests (stage, recorded_at)""",
    """CREATE INDEX ix_artifacts_recency ON artifacts (last_access, size, hash, format, stage)""",
    """CREATE INDEX ix_artifacts_stage_input_key ON artifacts (stage, input_key)""",
    """CREATE TABLE runs (
	id VARCHAR(32) NOT NULL, 
	target TEXT NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME NOT NULL, 
	outcome VARCHAR(16) NOT NULL, 
	error TEXT, 
	host TEXT, 
	user_name TEXT, 
	lwdp_version VARCHAR(32), 
	PRIMARY KEY (id)
)""",
    """CREATE INDEX ix_runs_started_at ON runs (started_at)""",
    """CREATE TABLE run_stages (
	run_id VARCHAR(32) NOT NULL, 
	position INTEGER NOT NULL, 
	stage TEXT NOT NULL, 
	hash VARCHAR(32) NOT NULL, 
	outcome VARCHAR(24) NOT NULL, 
	seconds FLOAT, 
	bytes BIGINT, 
	reason TEXT, 
	PRIMARY KEY (run_id, stage)
)""",
    """CREATE INDEX ix_run_stages_stage ON run_stages (stage)""",
)


def create_catalog_file(cache_dir: Path) -> None:
    """Make ``cache_dir`` and its catalog file at the head schema, in WAL mode, unless
    another process made it first.

    :raises CacheDirError: the directory or the file cannot be made or written.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(cache_dir / CATALOG_FILE, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise cache_dir_error(cache_dir, getattr(exc, "strerror", None) or exc, getattr(exc, "errno", None)) from exc
    try:
        enable_wal(conn.execute)
        create_head_schema(conn)
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return  # made meanwhile and damaged since: opening it moves it aside
        raise cache_dir_error(cache_dir, exc, None) from exc
    finally:
        conn.close()


def create_head_schema(conn: sqlite3.Connection) -> bool:
    """Make the head schema in the empty database ``conn`` (autocommit mode) and stamp it,
    in one transaction that excludes other writers: of processes creating one catalog at
    once, the first makes it and the others find it made. Return whether this call made it.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone() is not None:
            conn.execute("ROLLBACK")
            return False
        for statement in HEAD_SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return True


def migrated_schema() -> tuple[str, ...]:
    """The schema SQL of a catalog made by the migrations, in the order SQLite keeps it."""
    import tempfile

    from .migrate import migrate_sqlite

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.sqlite"
        migrate_sqlite(path)
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").fetchall()
        conn.close()
    return tuple(sql for (sql,) in rows)


if __name__ == "__main__":
    print("HEAD_SCHEMA = (")
    for sql in migrated_schema():
        print(f'    """{sql}""",')
    print(")")
