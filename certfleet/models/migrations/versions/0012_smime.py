"""S/MIME: smime_orders (one per certificate ordered for a user); directory sync: a profile's Azure endpoints and TLS bundle and its last sync's outcome; a user's key
in the directory (userPrincipalName) and whether the directory still lists them enabled; Source wide enough to
hold a profile's description.

Revision ID: 0012_smime
Revises: 0008_metrics
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_smime"
down_revision: str | None = "0008_metrics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "smime_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("ca_connector_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("csr_pem", sa.Text(), nullable=True),
        sa.Column("private_key", sa.Text(), nullable=True),
        sa.Column("serial_number", sa.String(length=80), nullable=True),
        sa.Column("pem_chain", sa.Text(), nullable=True),
        sa.Column("expires_on", sa.DateTime(), nullable=True),
        sa.Column("delivered_to", sa.String(length=1000), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ca_connector_id"], ["ca_connectors.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["smime_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_smime_orders_user_id", "smime_orders", ["user_id"])
    op.create_index("ix_smime_orders_state", "smime_orders", ["state"])
    with op.batch_alter_table("directory_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authority_host", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("graph_base", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("ca_bundle_pem", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_sync_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("last_sync_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_sync_report", sa.JSON(), nullable=True))
    with op.batch_alter_table("smime_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("directory_key", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("directory_state", sa.String(length=40), nullable=True))
        batch_op.alter_column(
            "source", existing_type=sa.String(length=40), type_=sa.String(length=120), existing_nullable=False
        )


def downgrade() -> None:
    op.drop_index("ix_smime_orders_state", table_name="smime_orders")
    op.drop_index("ix_smime_orders_user_id", table_name="smime_orders")
    op.drop_table("smime_orders")
    with op.batch_alter_table("smime_users", schema=None) as batch_op:
        batch_op.alter_column(
            "source", existing_type=sa.String(length=120), type_=sa.String(length=40), existing_nullable=False
        )
        batch_op.drop_column("directory_state")
        batch_op.drop_column("directory_key")
    with op.batch_alter_table("directory_profiles", schema=None) as batch_op:
        batch_op.drop_column("last_sync_report")
        batch_op.drop_column("last_sync_error")
        batch_op.drop_column("last_sync_status")
        batch_op.drop_column("ca_bundle_pem")
        batch_op.drop_column("graph_base")
        batch_op.drop_column("authority_host")
