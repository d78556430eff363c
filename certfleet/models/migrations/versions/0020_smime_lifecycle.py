"""S/MIME lifecycle: a user's renewal retry state and revocation; an order's not-before and revocation.

Revision ID: 0020_smime_lifecycle
Revises: 0019_smime_cas_order_ids
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_smime_lifecycle"
down_revision: str | None = "0019_smime_cas_order_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("smime_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renewal_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("renewal_next_attempt_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revocation_reason", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revocation_reason", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.drop_column("revocation_reason")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("not_before")
    with op.batch_alter_table("smime_users", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("revocation_reason")
        batch_op.drop_column("renewal_next_attempt_at")
        batch_op.drop_column("renewal_attempts")
