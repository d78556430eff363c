"""S/MIME delivery: the delivery setting (folder, SMB share or e-mail) and, on each order, the sealed PKCS#12 and
its password kept until delivered, and when its first delivery mail went out.

Revision ID: 0016_smime_delivery_settings
Revises: 0015_rule_server_group
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_smime_delivery_settings"
down_revision: str | None = "0015_rule_server_group"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "smime_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pkcs12", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pkcs12_password", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pkcs12_mailed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.drop_column("pkcs12_mailed_at")
        batch_op.drop_column("pkcs12_password")
        batch_op.drop_column("pkcs12")
    op.drop_table("smime_delivery")
