"""Views that make lineage questions one-liners.

``lineage_closure``: every (hash, ancestor) pair, transitively, with the path from the
artifact's input; ``raw_descendants``: every stage hash derived from each raw input path.
Both are recursive views: convenient, but computed in full per query; on a very large
catalog prefer the parametrized recipes in the README.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW lineage_closure AS
        WITH RECURSIVE closure(hash, stage, ancestor_kind, ancestor_hash, ancestor_name, ancestor_path, depth) AS (
            SELECT hash, stage, input_kind, input_hash, input_name, input_path, 1 FROM lineage
            UNION
            SELECT c.hash, c.stage, l.input_kind, l.input_hash, l.input_name, l.input_path, c.depth + 1
            FROM closure AS c JOIN lineage AS l ON l.hash = c.ancestor_hash
            WHERE c.ancestor_kind = 'stage'
        )
        SELECT hash, stage, ancestor_kind, ancestor_hash, ancestor_name, ancestor_path, depth FROM closure
        """
    )
    op.execute(
        """
        CREATE VIEW raw_descendants AS
        WITH RECURSIVE derived(raw_path, raw_digest, hash, depth) AS (
            SELECT input_path, input_hash, hash, 1 FROM lineage WHERE input_kind = 'raw'
            UNION
            SELECT d.raw_path, d.raw_digest, l.hash, d.depth + 1
            FROM derived AS d JOIN lineage AS l ON l.input_hash = d.hash AND l.input_kind = 'stage'
        )
        SELECT DISTINCT d.raw_path, d.raw_digest, d.hash, l.stage, d.depth
        FROM derived AS d JOIN (SELECT DISTINCT hash, stage FROM lineage) AS l ON l.hash = d.hash
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW raw_descendants")
    op.execute("DROP VIEW lineage_closure")
