"""rotation_items: what each rotate-batch run did to each of its certificates, so a re-run continues.

Revision ID: 0010_batches
Revises: 0014_served_serial
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_batches"
down_revision: str | None = "0014_served_serial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rotation_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_key", sa.String(length=120), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=True),
        sa.Column("server_label", sa.String(length=300), nullable=False),
        sa.Column("server_type", sa.String(length=20), nullable=False),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("issued_serial", sa.String(length=80), nullable=True),
        sa.Column("deployment_ids", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("batch_key", "certificate_id"),
    )
    op.create_index("ix_rotation_items_batch_key", "rotation_items", ["batch_key"])


def downgrade() -> None:
    op.drop_index("ix_rotation_items_batch_key", table_name="rotation_items")
    op.drop_table("rotation_items")
