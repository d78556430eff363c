"""Migration 0002_inventory_truth gives the rows that exist already their usage and awaiting issuer."""

from __future__ import annotations

from alembic import command
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from certfleet.inventory.analysis import issuer_key
from certfleet.models import db
from tests.discovery.certs import Served
from tests.pki.conftest import PKI


def test_existing_rows_get_their_usage(database: str, fleet: dict[str, Served], pki: PKI) -> None:
    cfg = db.alembic_config(database)
    command.downgrade(cfg, "0001")
    leaf_alone = fleet["good"].leaf.public_bytes(serialization.Encoding.PEM)
    rows = {"leaf": leaf_alone.decode(), "ca": pki.intermediate.pem.decode() + pki.root.pem.decode()}
    engine = db.get_engine(database)
    with engine.begin() as conn:
        for name, pem in rows.items():
            conn.execute(
                text(
                    "INSERT INTO certificates (common_name, sans, status, profile, key_spec, renew_before_days, "
                    "tags, deployment_type, vulnerable, vulnerability_reasons, order_generation, pem_chain, "
                    "created_at, updated_at) VALUES (:name, '[]', 'Discovered', 'tls-server', 'rsa2048', 30, '[]', "
                    "'Manual', false, '[]', 0, :pem, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"name": name, "pem": pem},
            )
    db.migrate(database)
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT common_name, usage || '|' || COALESCE(awaiting_issuer, '') "
                                       "FROM certificates")).all())  # fmt: skip
    assert found == {"leaf": f"tls-server|{issuer_key(pki.intermediate.cert.subject)}", "ca": "ca|"}
