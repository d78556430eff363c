"""orders.ca_request_ref: what a CA connector wrote just before calling the CA (emSign: the transaction id of
the order call), so a retry after a crash between "CA accepted" and "recorded" reconciles instead of ordering twice.

Revision ID: 0013_faults
Revises: 0010_batches
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_faults"
down_revision: str | None = "0010_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ca_request_ref", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("ca_request_ref")
