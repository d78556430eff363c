"""deployment_steps.undo: a journal step that is no file replacement carries its own undo data (IIS bindings);
servers.smb_*_timeout: per-operation SMB timeouts of a Windows server.

Revision ID: 0017_iis_step_undo
Revises: 0016_smime_delivery_settings
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_iis_step_undo"
down_revision: str | None = "0016_smime_delivery_settings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_TIMEOUTS = (("smb_connect_timeout", "15"), ("smb_io_timeout", "60"), ("smb_rpc_timeout", "60"))


def upgrade() -> None:
    with op.batch_alter_table("deployment_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("undo", sa.JSON(), nullable=True))
    with op.batch_alter_table("servers", schema=None) as batch_op:
        for name, default in _TIMEOUTS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default=default))


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        for name, _ in _TIMEOUTS:
            batch_op.drop_column(name)
    with op.batch_alter_table("deployment_steps", schema=None) as batch_op:
        batch_op.drop_column("undo")
