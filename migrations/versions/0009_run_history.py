"""Run history: one row per run of a pipeline and one per stage it loaded or computed, for
``lwdp history`` (what ran, how long each stage took, when one got slower or larger).

Written in the same batched write that moves ``last_access`` at the end of a run.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("host", sa.Text),
        sa.Column("user_name", sa.Text),
        sa.Column("lwdp_version", sa.String(32)),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "run_stages",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),  # the order the run logged its stages in
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("hash", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("seconds", sa.Float),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("reason", sa.Text),
        sa.PrimaryKeyConstraint("run_id", "stage"),
    )
    op.create_index("ix_run_stages_stage", "run_stages", ["stage"])


def downgrade() -> None:
    op.drop_index("ix_run_stages_stage", table_name="run_stages")
    op.drop_table("run_stages")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.drop_table("runs")
