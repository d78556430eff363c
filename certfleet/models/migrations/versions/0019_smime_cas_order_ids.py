"""smime_orders: the CA's order id, what was sent before the CA call, and how often it was submitted, so an
S/MIME order from DigiCert or emSign is polled while pending and never placed twice.

Revision ID: 0019_smime_cas_order_ids
Revises: 0018_maint_ari
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_smime_cas_order_ids"
down_revision: str | None = "0018_maint_ari"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ca_order_id", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("ca_request_ref", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("ca_submits", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.drop_column("ca_submits")
        batch_op.drop_column("ca_request_ref")
        batch_op.drop_column("ca_order_id")
