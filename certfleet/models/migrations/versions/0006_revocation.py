"""certificates.revocation_reason and revoked_at: what the revoke-certificate flow records.

Revision ID: 0006_revocation
Revises: 0002_web_hardening
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_revocation"
down_revision: str | None = "0002_web_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revocation_reason", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("revocation_reason")
