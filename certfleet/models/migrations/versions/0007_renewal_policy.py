"""Renewal policy: per-certificate fraction, per-CA-connector defaults, and the retry state of failed renewals.

Revision ID: 0007_renewal_policy
Revises: 0006_revocation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_renewal_policy"
down_revision: str | None = "0006_revocation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renew_before_fraction", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("renewal_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("renewal_next_attempt_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("ca_connectors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renew_before_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("renew_before_fraction", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ca_connectors", schema=None) as batch_op:
        batch_op.drop_column("renew_before_fraction")
        batch_op.drop_column("renew_before_days")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_column("renewal_next_attempt_at")
        batch_op.drop_column("renewal_attempts")
        batch_op.drop_column("renew_before_fraction")
