"""Whether an artifact's computation was watched for undeclared inputs.

A stage's reads of files it does not declare are recorded with its hash (lineage rows of
kind "tracked" and "listing") whenever lwdp watched the computation. In
``undeclared_inputs="track"`` mode a result is trusted only if what it read is known:
``watched`` says that reading nothing was watched too, so switching to "track" keeps
results computed in "warn" mode, and recomputes those computed unwatched.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("artifacts", sa.Column("watched", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("watched")
