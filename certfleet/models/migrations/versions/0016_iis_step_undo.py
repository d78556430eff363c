"""deployment_steps.undo: a journal step that is no file replacement carries its own undo data (IIS bindings).

Revision ID: 0016_iis_step_undo
Revises: 0015_rule_server_group
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_iis_step_undo"
down_revision: str | None = "0015_rule_server_group"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("undo", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_steps", schema=None) as batch_op:
        batch_op.drop_column("undo")
