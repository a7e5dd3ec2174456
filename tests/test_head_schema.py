"""A new catalog is made from the head schema's SQL with the standard library: it must be
exactly what the Alembic migrations make (tables, columns, types, indexes, views, the
stamped revision), and a first run must import neither SQLAlchemy nor Alembic."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from lwdp.store import catalog
from lwdp.store.catalog_file import HEAD_REVISION
from lwdp.store.head_schema import HEAD_SCHEMA, create_head_schema, migrated_schema
from lwdp.store.migrate import ensure_schema
from lwdp.store.records import ARTIFACT_COLUMNS, LINEAGE_COLUMNS


def _structure(path: Path) -> dict:
    """Everything SQLite says about a database's schema."""
    with sqlite3.connect(path) as conn:
        objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        tables = [name for kind, name, _, _ in objects if kind == "table"]
        indexes = [name for kind, name, _, _ in objects if kind == "index"]
        found = {
            "objects": [(kind, name, table, " ".join((sql or "").split())) for kind, name, table, sql in objects],
            "columns": {t: conn.execute(f"PRAGMA table_xinfo('{t}')").fetchall() for t in tables},
            "index_lists": {t: conn.execute(f"PRAGMA index_list('{t}')").fetchall() for t in tables},
            "index_columns": {i: conn.execute(f"PRAGMA index_xinfo('{i}')").fetchall() for i in indexes},
            "revision": conn.execute("SELECT version_num FROM alembic_version").fetchall(),
        }
    conn.close()
    return found


def test_the_head_schema_is_what_the_migrations_make(tmp_path):
    migrated = tmp_path / "migrated.sqlite"
    engine = create_engine(f"sqlite:///{migrated}", connect_args={"isolation_level": None})
    ensure_schema(engine, str(migrated))
    engine.dispose()
    made = tmp_path / "made.sqlite"
    conn = sqlite3.connect(made, isolation_level=None)
    assert create_head_schema(conn) is True
    assert create_head_schema(conn) is False  # a second creator finds it made
    conn.close()
    assert _structure(made) == _structure(migrated)
    assert _structure(made)["revision"] == [(HEAD_REVISION,)]
    # The generator reproduces the constant: regenerate it after adding a migration.
    assert migrated_schema() == HEAD_SCHEMA


def test_a_first_run_in_a_new_cache_directory_imports_neither_sqlalchemy_nor_alembic(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", """
        import sys
        import pandas as pd
        from lwdp import stage

        @stage(src="raw/in.csv", cache=True)
        def stg_read(src):
            return pd.read_csv(src)

        @stage(raw=stg_read, cache=True)
        def stg_double(raw):
            return raw * 2

        print("RESULT", stg_double()["v"].tolist())
        print("IMPORTED", sorted(m for m in ("sqlalchemy", "alembic") if m in sys.modules))
    """)
    first = project.run()
    assert "RESULT [2, 4]" in first.stdout and "IMPORTED []" in first.stdout, first.stdout + first.stderr
    assert first.ran() == {"stg_read", "stg_double"}
    assert project.sql("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert len(project.sql("SELECT hash FROM artifacts")) == 2
    second = project.run()
    assert second.ran() == set() and "IMPORTED []" in second.stdout


def test_the_catalogs_statements_name_the_schemas_columns(tmp_path):
    """The statements' column lists (`lwdp.store.records`, the memo's) are the tables' own, in
    full: a migration that adds a column must be met by the statements that write rows."""
    made = tmp_path / "made.sqlite"
    conn = sqlite3.connect(made, isolation_level=None)
    create_head_schema(conn)
    columns = {t: {row[1] for row in conn.execute(f"PRAGMA table_info('{t}')")} for t in ("artifacts", "lineage", "raw_files")}
    conn.close()
    assert columns["artifacts"] == set(ARTIFACT_COLUMNS)
    assert columns["lineage"] == {*LINEAGE_COLUMNS, "recorded_at"}
    assert columns["raw_files"] == set(catalog._MEMO_COLUMNS)
