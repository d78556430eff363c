"""Inventory truth: what each certificate is for (usage), chains waiting for their issuer, and private roots
held to the public CA rules.

Existing rows get their usage and awaiting issuer from their stored chain here, so the list is right at once.

Revision ID: 0002_inventory_truth
Revises: 0001
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography import x509

revision: str = "0002_inventory_truth"
down_revision: str | None = "0002_server_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usage", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("awaiting_issuer", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_certificates_usage"), ["usage"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_awaiting_issuer"), ["awaiting_issuer"], unique=False)
    with op.batch_alter_table("private_roots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("apply_public_rules", sa.Boolean(), nullable=False, server_default=sa.false()))
    _fill_existing_rows()


def _fill_existing_rows() -> None:
    from certfleet.pki.usage import classify  # the same rules as new rows

    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, pem_chain FROM certificates WHERE pem_chain IS NOT NULL")).all()
    for ident, pem in rows:
        try:
            chain = x509.load_pem_x509_certificates(pem.encode("ascii"))
            usage = str(classify(chain[0]))
        except ValueError:
            continue  # an unreadable chain keeps no usage; the row shows its profile
        top = chain[-1]
        awaiting = None if top.issuer == top.subject else hashlib.sha256(top.issuer.public_bytes()).hexdigest()
        conn.execute(
            sa.text("UPDATE certificates SET usage = :usage, awaiting_issuer = :awaiting WHERE id = :id"),
            {"usage": usage, "awaiting": awaiting, "id": ident},
        )


def downgrade() -> None:
    with op.batch_alter_table("private_roots", schema=None) as batch_op:
        batch_op.drop_column("apply_public_rules")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_awaiting_issuer"))
        batch_op.drop_index(batch_op.f("ix_certificates_usage"))
        batch_op.drop_column("awaiting_issuer")
        batch_op.drop_column("usage")
