"""Deployments by target, indexed.

Each deployment looks up its target's running deployment and, when it is proven, the backups of the target's older
deployments; without this index both scanned every deployment, once per certificate (quadratic in a fleet's
deployments over time).

Revision ID: 0023_deployments_by_target
Revises: 0022_smimeperf_sync_indexes
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_deployments_by_target"
down_revision: str | None = "0022_smimeperf_sync_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deployments_target_id", "deployments", ["target_id"])


def downgrade() -> None:
    op.drop_index("ix_deployments_target_id", table_name="deployments")
