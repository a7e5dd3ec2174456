"""Artifact provenance (compute time, lwdp and pandas versions) and lookup indexes.

The indexes serve LRU eviction (oldest ``last_access`` first, with ``size`` covered so the
victim scan never touches the table) and "what was derived from this input" queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("compute_seconds", sa.Float))
        batch.add_column(sa.Column("lwdp_version", sa.String(32)))
        batch.add_column(sa.Column("pandas_version", sa.String(32)))
    op.create_index("ix_artifacts_last_access_size", "artifacts", ["last_access", "size"])
    op.create_index("ix_lineage_input_hash", "lineage", ["input_hash"])


def downgrade() -> None:
    op.drop_index("ix_lineage_input_hash", table_name="lineage")
    op.drop_index("ix_artifacts_last_access_size", table_name="artifacts")
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("pandas_version")
        batch.drop_column("lwdp_version")
        batch.drop_column("compute_seconds")
