"""certificates.served_serial_number / served_sha256_thumbprint: the certificate the servers serve until a newer
one is proven there (a failed renewal deployment no longer loses track of it).

Revision ID: 0014_served_serial
Revises: 0012_smime
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_served_serial"
down_revision: str | None = "0012_smime"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("served_serial_number", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("served_sha256_thumbprint", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_certificates_served_sha256_thumbprint"), ["served_sha256_thumbprint"], unique=False
        )
    # What was deployed and proven before this revision is what is served.
    op.execute(
        "UPDATE certificates SET served_serial_number = serial_number, served_sha256_thumbprint = sha256_thumbprint "
        "WHERE last_provisioned_on IS NOT NULL AND status = 'Deployed'"
    )


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_served_sha256_thumbprint"))
        batch_op.drop_column("served_sha256_thumbprint")
        batch_op.drop_column("served_serial_number")
