"""Stage manifests: what went into each evaluated stage hash, to explain why a stage reruns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_manifests",
        sa.Column("hash", sa.String(32), primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_stage_manifests_stage_recorded_at", "stage_manifests", ["stage", "recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_stage_manifests_stage_recorded_at", table_name="stage_manifests")
    op.drop_table("stage_manifests")
