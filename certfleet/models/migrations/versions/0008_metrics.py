"""completed_runs: when a scheduled flow (renew-expiring) last ran to its end, for /metrics and alerts;
api_tokens.scope: "all", or "metrics" for a token that may only scrape /metrics.

Revision ID: 0008_metrics
Revises: 0007_renewal_policy
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_metrics"
down_revision: str | None = "0007_renewal_policy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "completed_runs",
        sa.Column("flow_name", sa.String(length=120), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("flow_name"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=20), server_default="all", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("scope")
    op.drop_table("completed_runs")
