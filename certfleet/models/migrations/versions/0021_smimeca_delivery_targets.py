"""S/MIME: a directory profile's own delivery target; why a renewal went to another CA connector.

Revision ID: 0021_smimeca_delivery_targets
Revises: 0020_smime_lifecycle
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_smimeca_delivery_targets"
down_revision: str | None = "0020_smime_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("directory_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_method", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("delivery_settings", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("delivery_secret", sa.Text(), nullable=True))
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connector_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smime_orders", schema=None) as batch_op:
        batch_op.drop_column("connector_note")
    with op.batch_alter_table("directory_profiles", schema=None) as batch_op:
        batch_op.drop_column("delivery_secret")
        batch_op.drop_column("delivery_settings")
        batch_op.drop_column("delivery_method")
