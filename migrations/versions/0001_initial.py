"""Initial catalog: artifacts, lineage and the raw-file digest memo.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("hash", sa.String(32), primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.String(32), nullable=False),
        sa.Column("read_options", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_access", sa.DateTime, nullable=False),
    )
    op.create_index("ix_artifacts_stage", "artifacts", ["stage"])
    op.create_table(
        "lineage",
        sa.Column("hash", sa.String(32), primary_key=True),
        sa.Column("input_name", sa.Text, primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("input_kind", sa.String(8), nullable=False),
        sa.Column("input_hash", sa.String(32), nullable=False),
        sa.Column("input_path", sa.Text),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "raw_files",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("ctime_ns", sa.BigInteger, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("digested_at_ns", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("raw_files")
    op.drop_table("lineage")
    op.drop_index("ix_artifacts_stage", table_name="artifacts")
    op.drop_table("artifacts")
