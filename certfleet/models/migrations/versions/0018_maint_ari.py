"""Maintenance windows per server (cron, duration, time zone), a target's deploy waiting for one, and ACME
Renewal Information (RFC 9773) per certificate.

Revision ID: 0018_maint_ari
Revises: 0017_iis_step_undo
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_maint_ari"
down_revision: str | None = "0017_iis_step_undo"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("maintenance_cron", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("maintenance_duration_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("maintenance_timezone", sa.String(length=64), nullable=False, server_default="UTC")
        )
    with op.batch_alter_table("deployment_targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deploy_waits_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ari_renew_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("ari_serial_number", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("ari_explanation_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ari_next_poll_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("ari_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        for column in ("ari_error", "ari_next_poll_at", "ari_explanation_url", "ari_serial_number", "ari_renew_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("deployment_targets", schema=None) as batch_op:
        batch_op.drop_column("deploy_waits_until")
    with op.batch_alter_table("servers", schema=None) as batch_op:
        for column in ("maintenance_timezone", "maintenance_duration_minutes", "maintenance_cron"):
            batch_op.drop_column(column)
