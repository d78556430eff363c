"""S/MIME directory sync: a profile's Azure endpoints and TLS bundle and its last sync's outcome; a user's key
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
