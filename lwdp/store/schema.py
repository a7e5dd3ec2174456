"""The catalog's tables, as SQLAlchemy Core objects.

Alembic migrations in ``migrations/`` create and change these tables; this module only
describes the current schema for queries. Times are naive UTC in the database.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, MetaData, String, Table, Text

metadata = MetaData()

artifacts = Table(
    "artifacts",
    metadata,
    Column("hash", String(32), primary_key=True),
    Column("stage", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checksum", String(32), nullable=False),
    Column("read_options", Text),
    Column("created_at", DateTime, nullable=False),
    Column("last_access", DateTime, nullable=False),
    Column("compute_seconds", Float),
    Column("lwdp_version", String(32)),
    Column("pandas_version", String(32)),
)

lineage = Table(
    "lineage",
    metadata,
    Column("hash", String(32), primary_key=True),
    Column("input_name", Text, primary_key=True),
    Column("stage", Text, nullable=False),
    Column("input_kind", String(8), nullable=False),
    Column("input_hash", String(32), nullable=False),
    Column("input_path", Text),
    Column("recorded_at", DateTime, nullable=False),
)

stage_manifests = Table(
    "stage_manifests",
    metadata,
    Column("hash", String(32), primary_key=True),
    Column("stage", Text, nullable=False),
    Column("manifest", Text, nullable=False),  # JSON, see lwdp.manifest
    Column("recorded_at", DateTime, nullable=False),
)

raw_files = Table(
    "raw_files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("ctime_ns", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("digest", String(32), nullable=False),
    Column("digested_at_ns", BigInteger, nullable=False),
)

__all__ = ["artifacts", "lineage", "metadata", "raw_files", "stage_manifests"]
