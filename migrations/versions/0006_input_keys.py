"""Input keys: what an artifact was computed from, its upstreams counted by content.

A stage's hash covers its upstreams' stage hashes, so a stage whose upstream reran is
looked up under a new hash. ``input_key`` hashes the same code, raw files and parameters
with each upstream's result instead (its artifact's checksum): a stage that misses
finds, by (stage, input_key), a result computed from the very same inputs, and reuses it
(early cutoff). Rows written before have none, and are never reused that way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("artifacts", sa.Column("input_key", sa.String(32), nullable=True))
    op.create_index("ix_artifacts_stage_input_key", "artifacts", ["stage", "input_key"])


def downgrade() -> None:
    op.drop_index("ix_artifacts_stage_input_key", table_name="artifacts")
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("input_key")
