"""servers.smb_port, smb_share, smb_share_folder, smb_encrypt: Windows servers reached over SMB.

Revision ID: 0011_windows
Revises: 0009_notifications
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_windows"
down_revision: str | None = "0009_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("smb_port", sa.Integer(), server_default="445", nullable=False))
        batch_op.add_column(sa.Column("smb_share", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("smb_share_folder", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("smb_encrypt", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("smb_encrypt")
        batch_op.drop_column("smb_share_folder")
        batch_op.drop_column("smb_share")
        batch_op.drop_column("smb_port")
