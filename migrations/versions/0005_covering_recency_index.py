"""gc's eviction index covers every column it reads.

``(last_access, size)`` served the size budget's SUM, but each victim then cost a lookup
in the table for its hash, format and stage: 0.24 s for 90,000 victims of a million rows,
0.07 s when the index holds them too. The new index starts with the same two columns, so
it replaces the old one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_artifacts_recency", "artifacts", ["last_access", "size", "hash", "format", "stage"])
    op.drop_index("ix_artifacts_last_access_size", table_name="artifacts")


def downgrade() -> None:
    op.create_index("ix_artifacts_last_access_size", "artifacts", ["last_access", "size"])
    op.drop_index("ix_artifacts_recency", table_name="artifacts")
