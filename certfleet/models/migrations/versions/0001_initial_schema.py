"""Initial schema: bots, servers, CA connectors, certificates, orders, deployment journal, audit.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("object_type", sa.String(length=40), nullable=False),
        sa.Column("object_id", sa.String(length=80), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)

    op.create_table(
        "bots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("last_update", sa.DateTime(), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("group_name", sa.String(length=120), nullable=True),
        sa.Column("os", sa.String(length=80), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=True),
        sa.Column("token_prefix", sa.String(length=16), nullable=True),
        sa.Column("work_queue", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "ca_connectors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("default_validity_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "private_roots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("sha256_thumbprint", sa.String(length=64), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("sha256_thumbprint"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("preferences", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("common_name", sa.String(length=255), nullable=False),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("discovery_bot_id", sa.Integer(), nullable=True),
        sa.Column("provisioning_bot_id", sa.Integer(), nullable=True),
        sa.Column("ca_connector_id", sa.Integer(), nullable=True),
        sa.Column("profile", sa.String(length=20), nullable=False),
        sa.Column("key_spec", sa.String(length=20), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=True),
        sa.Column("renew_before_days", sa.Integer(), nullable=False),
        sa.Column("organization", sa.String(length=200), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("batch_name", sa.String(length=120), nullable=True),
        sa.Column("deployment_type", sa.String(length=40), nullable=False),
        sa.Column("location_host", sa.String(length=255), nullable=True),
        sa.Column("location_port", sa.Integer(), nullable=True),
        sa.Column("scan_ip", sa.String(length=64), nullable=True),
        sa.Column("scan_port", sa.Integer(), nullable=True),
        sa.Column("issuer_ca", sa.String(length=255), nullable=True),
        sa.Column("ca_type", sa.String(length=40), nullable=True),
        sa.Column("signature_algorithm", sa.String(length=40), nullable=True),
        sa.Column("serial_number", sa.String(length=80), nullable=True),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("expires_on", sa.DateTime(), nullable=True),
        sa.Column("key_type", sa.String(length=20), nullable=True),
        sa.Column("key_size", sa.Integer(), nullable=True),
        sa.Column("sha1_thumbprint", sa.String(length=40), nullable=True),
        sa.Column("sha256_thumbprint", sa.String(length=64), nullable=True),
        sa.Column("vulnerable", sa.Boolean(), nullable=False),
        sa.Column("vulnerability_reasons", sa.JSON(), nullable=False),
        sa.Column("trust_anchor", sa.String(length=255), nullable=True),
        sa.Column("pem_chain", sa.Text(), nullable=True),
        sa.Column("private_key", sa.Text(), nullable=True),
        sa.Column("ca_order_id", sa.String(length=120), nullable=True),
        sa.Column("order_generation", sa.Integer(), nullable=False),
        sa.Column("issued_on", sa.DateTime(), nullable=True),
        sa.Column("last_provisioned_on", sa.DateTime(), nullable=True),
        sa.Column("validation_status", sa.String(length=40), nullable=True),
        sa.Column("dcv_status", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_connector_id"],
            ["ca_connectors.id"],
        ),
        sa.ForeignKeyConstraint(
            ["discovery_bot_id"],
            ["bots.id"],
        ),
        sa.ForeignKeyConstraint(
            ["provisioning_bot_id"],
            ["bots.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index("ix_certificates_common_name", ["common_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_expires_on"), ["expires_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_serial_number"), ["serial_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_sha256_thumbprint"), ["sha256_thumbprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_certificates_tiles", ["status", "provisioning_bot_id", "ca_connector_id"], unique=False
        )

    op.create_table(
        "directory_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("tenant_id", sa.String(length=80), nullable=False),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("ca_connector_id", sa.Integer(), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_connector_id"],
            ["ca_connectors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "discovery_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("bot_id", sa.Integer(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=40), nullable=True),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("endpoints_total", sa.Integer(), nullable=False),
        sa.Column("endpoints_scanned", sa.Integer(), nullable=False),
        sa.Column("endpoints_answered", sa.Integer(), nullable=False),
        sa.Column("certificates_found", sa.Integer(), nullable=False),
        sa.Column("certificates_new", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca_connector_id", sa.Integer(), nullable=False),
        sa.Column("serial_number", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_connector_id"],
            ["ca_connectors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ca_connector_id", "serial_number"),
    )
    op.create_table(
        "servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("ports", sa.JSON(), nullable=False),
        sa.Column("connection", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("ssh_private_key", sa.Text(), nullable=True),
        sa.Column("ssh_key_passphrase", sa.Text(), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("ssh_host_key", sa.Text(), nullable=True),
        sa.Column("use_sudo", sa.Boolean(), nullable=False),
        sa.Column("server_type", sa.String(length=20), nullable=False),
        sa.Column("app_path", sa.String(length=500), nullable=True),
        sa.Column("keystore_folder", sa.String(length=500), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("service_name", sa.String(length=120), nullable=True),
        sa.Column("config_test_command", sa.Text(), nullable=True),
        sa.Column("reload_command", sa.Text(), nullable=True),
        sa.Column("bot_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "certificate_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("locator", sa.String(length=700), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("scan_ip", sa.String(length=64), nullable=True),
        sa.Column("scan_port", sa.Integer(), nullable=True),
        sa.Column("sni", sa.String(length=255), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.Column("discovery_bot_id", sa.Integer(), nullable=True),
        sa.Column("discovery_run_id", sa.Integer(), nullable=True),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(), nullable=False),
        sa.Column("last_status", sa.String(length=40), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["discovery_bot_id"], ["bots.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["discovery_run_id"], ["discovery_runs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("certificate_id", "locator"),
    )
    with op.batch_alter_table("certificate_locations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificate_locations_locator"), ["locator"], unique=False)

    op.create_table(
        "deployment_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("server_name", sa.String(length=255), nullable=True),
        sa.Column("cert_path", sa.String(length=500), nullable=True),
        sa.Column("key_path", sa.String(length=500), nullable=True),
        sa.Column("chain_path", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("certificate_id", "server_id", "port"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("ca_connector_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("ca_order_id", sa.String(length=120), nullable=True),
        sa.Column("csr_pem", sa.Text(), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=True),
        sa.Column("serial_number", sa.String(length=80), nullable=True),
        sa.Column("pem_chain", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_connector_id"],
            ["ca_connectors.id"],
        ),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_certificate_id"), ["certificate_id"], unique=False)

    op.create_table(
        "smime_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("designation", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=True),
        sa.Column("expires_on", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["directory_profiles.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("serial_number", sa.String(length=80), nullable=False),
        sa.Column("previous_serial", sa.String(length=80), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=40), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["deployment_targets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployments_certificate_id"), ["certificate_id"], unique=False)

    op.create_table(
        "deployment_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.Column("backup_path", sa.String(length=500), nullable=True),
        sa.Column("existed_before", sa.Boolean(), nullable=True),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deployment_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("deployment_steps")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_certificate_id"))

    op.drop_table("deployments")
    op.drop_table("smime_users")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_certificate_id"))

    op.drop_table("orders")
    op.drop_table("deployment_targets")
    with op.batch_alter_table("certificate_locations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_locations_locator"))

    op.drop_table("certificate_locations")
    op.drop_table("servers")
    op.drop_table("revocations")
    op.drop_table("discovery_runs")
    op.drop_table("directory_profiles")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_certificates_tiles")
        batch_op.drop_index(batch_op.f("ix_certificates_status"))
        batch_op.drop_index(batch_op.f("ix_certificates_sha256_thumbprint"))
        batch_op.drop_index(batch_op.f("ix_certificates_serial_number"))
        batch_op.drop_index(batch_op.f("ix_certificates_expires_on"))
        batch_op.drop_index("ix_certificates_common_name")

    op.drop_table("certificates")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("private_roots")
    op.drop_table("ca_connectors")
    op.drop_table("bots")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))

    op.drop_table("audit_events")
