"""notification_rules.server_group: a rule may match only events about servers of one bot group.

Revision ID: 0015_rule_server_group
Revises: 0011_windows
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_rule_server_group"
down_revision: str | None = "0011_windows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("server_group", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.drop_column("server_group")
