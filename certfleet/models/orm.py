"""The tables. Values of status columns are the labels the manual uses, so filters speak the user's words."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from certfleet.models.encryption import EncryptedBytes, EncryptedText


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite drops time zones, PostgreSQL would convert them."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _label_enum(cls: type[enum.Enum]) -> Enum:
    # Stored as VARCHAR without a CHECK so a new state is a code change, not a table rebuild on SQLite.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=40,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    pass


class BotStatus(enum.StrEnum):
    PENDING_ACTIVATION = "Pending Activation"
    PENDING = "Pending"
    ACTIVE = "Active"
    STOPPED = "Stopped"
    INACTIVE = "Inactive"


class BotPurpose(enum.StrEnum):
    PROVISIONING = "Provisioning"
    DISCOVERY = "Discovery"
    BOTH = "Discovery and Provisioning"


class CertificateStatus(enum.StrEnum):
    DISCOVERED = "Discovered"
    INITIATED = "Initiated"
    ORDER_PENDING = "Order Pending"
    ISSUED = "Issued"
    DEPLOYED = "Deployed"
    ROLLED_BACK = "Rolled Back"
    DEPLOYMENT_FAILED = "Deployment Failed"
    IGNORED = "Ignored"
    REVOKED = "Revoked"
    EXPIRED = "Expired"


class CAType(enum.StrEnum):
    PUBLIC = "Public"
    PRIVATE = "Private"


class DeploymentType(enum.StrEnum):
    AUTOMATED = "Automated"
    MANUAL = "Manual"


class OrderState(enum.StrEnum):
    CREATED = "Created"  # row written, CA not called yet
    SUBMITTED = "Submitted"  # CA call under way or its answer not recorded yet
    PENDING = "Pending"  # CA accepted the order and will issue later (poll it)
    ISSUED = "Issued"
    FAILED = "Failed"


class ConnectorStatus(enum.StrEnum):
    ACTIVE = "Active"
    DISABLED = "Disabled"


class ServerConnection(enum.StrEnum):
    LOCAL = "local"  # the bot's own file system
    SSH = "ssh"
    SMB = "smb"


class ServerStatus(enum.StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    UNREACHABLE = "Unreachable"


class DeploymentStatus(enum.StrEnum):
    RUNNING = "Running"
    DEPLOYED = "Deployed"
    ROLLED_BACK = "Rolled Back"
    FAILED = "Deployment Failed"


class StepState(enum.StrEnum):
    PLANNED = "planned"  # journalled, side effect may or may not have happened
    DONE = "done"
    FAILED = "failed"
    RESTORED = "restored"


class SmimeStatus(enum.StrEnum):
    AWAITING_ORDER = "Awaiting Order"
    CSR_PENDING = "CSR Pending"
    CERTIFICATE_ISSUED = "Certificate Issued"
    CERTIFICATE_INSTALLED = "Certificate Installed"
    IGNORED = "Ignored"
    REVOKED = "Revoked"


class Bot(Base):
    __tablename__ = "bots"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[BotStatus] = mapped_column(_label_enum(BotStatus), default=BotStatus.PENDING_ACTIVATION)
    last_update: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[str | None] = mapped_column(String(40))
    purpose: Mapped[BotPurpose] = mapped_column(_label_enum(BotPurpose), default=BotPurpose.PROVISIONING)
    group_name: Mapped[str | None] = mapped_column(String(120))
    os: Mapped[str | None] = mapped_column(String(80))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str | None] = mapped_column(String(128))
    token_prefix: Mapped[str | None] = mapped_column(String(16))  # shown and filtered on; not a secret
    work_queue: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))


class CAConnector(Base):
    __tablename__ = "ca_connectors"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(120), unique=True)
    base_url: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[ConnectorStatus] = mapped_column(_label_enum(ConnectorStatus), default=ConnectorStatus.ACTIVE)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials: Mapped[str | None] = mapped_column(EncryptedText)  # JSON object, sealed
    default_validity_days: Mapped[int] = mapped_column(Integer, default=90)
    # Renewal policy defaults for its certificates (certfleet.renewal.policy); None: the built-in ones.
    renew_before_days: Mapped[int | None] = mapped_column(Integer)
    renew_before_fraction: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))


class Server(Base):
    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(255))
    ports: Mapped[list[int]] = mapped_column(JSON, default=list)
    connection: Mapped[ServerConnection] = mapped_column(_label_enum(ServerConnection))
    username: Mapped[str | None] = mapped_column(String(120))
    password: Mapped[str | None] = mapped_column(EncryptedText)
    ssh_private_key: Mapped[str | None] = mapped_column(EncryptedText)
    ssh_key_passphrase: Mapped[str | None] = mapped_column(EncryptedText)
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_host_key: Mapped[str | None] = mapped_column(Text)
    use_sudo: Mapped[bool] = mapped_column(Boolean, default=False)
    server_type: Mapped[str] = mapped_column(String(20))
    app_path: Mapped[str | None] = mapped_column(String(500))  # Nginx Path, Tomcat Path, ...
    keystore_folder: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[str | None] = mapped_column(String(40))
    service_name: Mapped[str | None] = mapped_column(String(120))
    config_test_command: Mapped[str | None] = mapped_column(Text)
    reload_command: Mapped[str | None] = mapped_column(Text)
    # Folders deployment targets may use besides the type's path and key store folder (certfleet.servers.paths).
    allowed_paths: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id"))
    # Windows servers (connection SMB): the port, the share certfleet opens (`C$` or a named share), the
    # Windows folder a named share exposes (`C$` is `C:\`), and whether SMB 3 encryption is asked for.
    smb_port: Mapped[int] = mapped_column(Integer, default=445, server_default="445")
    smb_share: Mapped[str | None] = mapped_column(String(80))
    smb_share_folder: Mapped[str | None] = mapped_column(String(500))
    smb_encrypt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # SMB timeouts in seconds: logging in, each file operation (read, write, list), each service-manager call
    smb_connect_timeout: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    smb_io_timeout: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    smb_rpc_timeout: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    # Optional maintenance window (certfleet.servers.maintenance): deployments wait for the next opening.
    maintenance_cron: Mapped[str | None] = mapped_column(String(120))
    maintenance_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    maintenance_timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    status: Mapped[ServerStatus] = mapped_column(_label_enum(ServerStatus), default=ServerStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))

    bot: Mapped[Bot | None] = relationship()


class Certificate(Base):
    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    common_name: Mapped[str] = mapped_column(String(255))
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[CertificateStatus] = mapped_column(
        _label_enum(CertificateStatus), default=CertificateStatus.INITIATED, index=True
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    discovery_bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id"))
    provisioning_bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id"))
    ca_connector_id: Mapped[int | None] = mapped_column(ForeignKey("ca_connectors.id"))
    # What certfleet asks for when it (re)orders this certificate.
    profile: Mapped[str] = mapped_column(String(20), default="tls-server")  # or "smime"
    key_spec: Mapped[str] = mapped_column(String(20), default="rsa2048")
    validity_days: Mapped[int | None] = mapped_column(Integer)
    renew_before_days: Mapped[int] = mapped_column(Integer, default=30)
    # None: the CA connector's default, else one third (certfleet.renewal.policy).
    renew_before_fraction: Mapped[float | None] = mapped_column(Float)
    # Renewals started since the last issuance; the next may start only after renewal_next_attempt_at (backoff).
    renewal_attempts: Mapped[int] = mapped_column(Integer, default=0)
    renewal_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    organization: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    batch_name: Mapped[str | None] = mapped_column(String(120))
    deployment_type: Mapped[DeploymentType] = mapped_column(
        _label_enum(DeploymentType), default=DeploymentType.AUTOMATED
    )
    # Where discovery saw it.
    location_host: Mapped[str | None] = mapped_column(String(255))
    location_port: Mapped[int | None] = mapped_column(Integer)
    scan_ip: Mapped[str | None] = mapped_column(String(64))
    scan_port: Mapped[int | None] = mapped_column(Integer)
    # Filled from the current certificate itself.
    issuer_ca: Mapped[str | None] = mapped_column(String(255))
    ca_type: Mapped[CAType | None] = mapped_column(_label_enum(CAType))
    signature_algorithm: Mapped[str | None] = mapped_column(String(40))
    serial_number: Mapped[str | None] = mapped_column(String(80), index=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_on: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    key_type: Mapped[str | None] = mapped_column(String(20))
    key_size: Mapped[int | None] = mapped_column(Integer)
    sha1_thumbprint: Mapped[str | None] = mapped_column(String(40))
    sha256_thumbprint: Mapped[str | None] = mapped_column(String(64), index=True)
    vulnerable: Mapped[bool] = mapped_column(Boolean, default=False)
    vulnerability_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The root the served chain verifies to: a system root (public) or a registered private root.
    trust_anchor: Mapped[str | None] = mapped_column(String(255))
    # What the certificate is for (certfleet.pki.usage.Usage): tls-server, tls-client, smime, code-signing, ca,
    # other; None until it is issued (the profile says what it will be).
    usage: Mapped[str | None] = mapped_column(String(20), index=True)
    # The chain verifies to no known root and stops below its root: SHA-256 (hex) of the DER issuer name of its
    # top certificate, so a CA certificate imported later finds the chains it completes.
    awaiting_issuer: Mapped[str | None] = mapped_column(String(64), index=True)
    pem_chain: Mapped[str | None] = mapped_column(Text)
    private_key: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    # Order and provisioning trail.
    ca_order_id: Mapped[str | None] = mapped_column(String(120))
    order_generation: Mapped[int] = mapped_column(Integer, default=0)
    issued_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_provisioned_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the servers serve until a newer one is proven there: set when a deployment is proven, kept when a
    # renewal issues a newer one, so the certificate still served stays this row's (discovery matches it here)
    # instead of coming back as an unmanaged row while the new one waits for its deployment.
    served_serial_number: Mapped[str | None] = mapped_column(String(80))
    served_sha256_thumbprint: Mapped[str | None] = mapped_column(String(64), index=True)
    validation_status: Mapped[str | None] = mapped_column(String(40))
    dcv_status: Mapped[str | None] = mapped_column(String(40))
    # ACME Renewal Information (RFC 9773) for the current serial: the chosen renewal time inside the CA's
    # suggested window, the CA's explanation, and when to ask again (Retry-After). None: no ARI (window rule).
    ari_renew_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ari_serial_number: Mapped[str | None] = mapped_column(String(80))
    ari_explanation_url: Mapped[str | None] = mapped_column(Text)
    ari_next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ari_error: Mapped[str | None] = mapped_column(Text)
    # Set by the revoke-certificate flow once the CA has revoked the current serial: the RFC 5280 reason name.
    revocation_reason: Mapped[str | None] = mapped_column(String(40))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    ca_connector: Mapped[CAConnector | None] = relationship()
    targets: Mapped[list[DeploymentTarget]] = relationship(
        back_populates="certificate", cascade="all, delete-orphan", order_by="DeploymentTarget.id"
    )


class DeploymentTarget(Base):
    """Where one certificate goes: a server, the port that serves it, and the files it lives in."""

    __tablename__ = "deployment_targets"
    __table_args__ = (UniqueConstraint("certificate_id", "server_id", "port"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"))
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id"))
    port: Mapped[int] = mapped_column(Integer)
    server_name: Mapped[str | None] = mapped_column(String(255))  # SNI; the certificate's CN when empty
    cert_path: Mapped[str | None] = mapped_column(String(500))
    key_path: Mapped[str | None] = mapped_column(String(500))
    chain_path: Mapped[str | None] = mapped_column(String(500))
    # A deploy-certificate run is scheduled for the server's next maintenance window at this time.
    deploy_waits_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    certificate: Mapped[Certificate] = relationship(back_populates="targets")
    server: Mapped[Server] = relationship()


class Order(Base):
    """One CA order. Written before the CA is called, so a retried or crashed flow never orders twice."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"), index=True)
    ca_connector_id: Mapped[int] = mapped_column(ForeignKey("ca_connectors.id"))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    state: Mapped[OrderState] = mapped_column(_label_enum(OrderState), default=OrderState.CREATED)
    ca_order_id: Mapped[str | None] = mapped_column(String(120))
    # What the connector wrote just before calling the CA (emSign: "txn:<id>"), for reconciling after a crash.
    ca_request_ref: Mapped[str | None] = mapped_column(String(120))
    csr_pem: Mapped[str] = mapped_column(Text)
    private_key: Mapped[bytes | None] = mapped_column(EncryptedBytes)  # until the certificate takes it
    serial_number: Mapped[str | None] = mapped_column(String(80))
    pem_chain: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    history: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    flow_run_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    certificate: Mapped[Certificate] = relationship()
    ca_connector: Mapped[CAConnector] = relationship()


class Revocation(Base):
    """Serials a built-in CA has revoked; its CRL is built from these rows."""

    __tablename__ = "revocations"
    __table_args__ = (UniqueConstraint("ca_connector_id", "serial_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ca_connector_id: Mapped[int] = mapped_column(ForeignKey("ca_connectors.id"))
    serial_number: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"), index=True)
    # Indexed: every deployment looks up its target's running and older deployments.
    target_id: Mapped[int] = mapped_column(ForeignKey("deployment_targets.id", ondelete="CASCADE"), index=True)
    status: Mapped[DeploymentStatus] = mapped_column(_label_enum(DeploymentStatus), default=DeploymentStatus.RUNNING)
    serial_number: Mapped[str] = mapped_column(String(80))
    previous_serial: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    certificate: Mapped[Certificate] = relationship()
    target: Mapped[DeploymentTarget] = relationship()
    steps: Mapped[list[DeploymentStep]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", order_by="DeploymentStep.seq"
    )


class DeploymentStep(Base):
    """The journal: written before each change on a server, read by rollback."""

    __tablename__ = "deployment_steps"
    __table_args__ = (UniqueConstraint("deployment_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(40))  # replace-file, config-test, reload, iis-binding, ...
    path: Mapped[str | None] = mapped_column(String(500))
    backup_path: Mapped[str | None] = mapped_column(String(500))
    existed_before: Mapped[bool | None] = mapped_column(Boolean)
    state: Mapped[StepState] = mapped_column(_label_enum(StepState), default=StepState.PLANNED)
    detail: Mapped[str | None] = mapped_column(Text)
    # A step that is no file replacement (an IIS certificate-store import and binding) carries its own undo
    # data, measured and journalled before the change runs: what rollback puts back (previous thumbprints).
    undo: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    deployment: Mapped[Deployment] = relationship(back_populates="steps")


class DirectoryProfile(Base):
    """An Azure AD tenant that S/MIME users are synchronised from."""

    __tablename__ = "directory_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(80))
    client_id: Mapped[str] = mapped_column(String(80))
    client_secret: Mapped[str | None] = mapped_column(EncryptedText)
    ca_connector_id: Mapped[int | None] = mapped_column(ForeignKey("ca_connectors.id"))
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None: the public cloud (login.microsoftonline.com, graph.microsoft.com); a sovereign cloud or a test emulator
    authority_host: Mapped[str | None] = mapped_column(String(500))
    graph_base: Mapped[str | None] = mapped_column(String(500))
    ca_bundle_pem: Mapped[str | None] = mapped_column(Text)  # None: the system trust store
    last_sync_status: Mapped[str | None] = mapped_column(String(20))  # Running, Succeeded, Failed
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    last_sync_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # counts and reported users
    # Where smime-rollout delivers this profile's users (as SmimeDelivery: folder, smb or email; the SMB or SMTP
    # password sealed). None: the installation's S/MIME delivery setting.
    delivery_method: Mapped[str | None] = mapped_column(String(20))
    delivery_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    delivery_secret: Mapped[str | None] = mapped_column(EncryptedText)


class SmimeUser(Base):
    __tablename__ = "smime_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    designation: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(120))  # the profile's description, or "Manual Import"
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("directory_profiles.id"))
    directory_key: Mapped[str | None] = mapped_column(String(320))  # userPrincipalName in the profile's tenant
    # None while the directory lists the user enabled; else "Disabled in directory" or "Not in directory"
    directory_state: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[SmimeStatus] = mapped_column(_label_enum(SmimeStatus), default=SmimeStatus.AWAITING_ORDER)
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id", ondelete="SET NULL"))
    expires_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Renewals started since the last delivery; the next may start only after renewal_next_attempt_at (backoff).
    renewal_attempts: Mapped[int] = mapped_column(Integer, default=0)
    renewal_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the user's current certificate was revoked (status Revoked): RFC 5280 reason name and time.
    revocation_reason: Mapped[str | None] = mapped_column(String(40))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who did what to which object, when, with what outcome. Never holds secrets."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(80))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)


# The dashboard's certificate tiles group by these three; sorting the list by name uses the second.
Index("ix_certificates_tiles", Certificate.status, Certificate.provisioning_bot_id, Certificate.ca_connector_id)
Index("ix_certificates_common_name", Certificate.common_name)
# A directory sync looks each page's users up by these two (certfleet.smime.directory_sync.apply_page).
Index("ix_smime_users_profile_key", SmimeUser.profile_id, SmimeUser.directory_key)
Index("ix_smime_users_email_lower", func.lower(SmimeUser.email))


class UserRole(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class User(Base):
    """A person who logs in to the dashboard or calls the API. Passwords and API tokens are stored hashed."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[UserRole] = mapped_column(_label_enum(UserRole), default=UserRole.VIEWER)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. chosen columns per list
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every dashboard session carries the number it was made with; logout and a password change raise it,
    # which ends all of the user's sessions (each request compares them).
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A user's API token: only its sha256 is kept; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    # "all": whatever the user's role may do; "metrics": only GET /metrics (a Prometheus scrape token).
    scope: Mapped[str] = mapped_column(String(20), default="all", server_default="all")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class LocationStatus(enum.StrEnum):
    ACTIVE = "Active"  # served there (or the file was there) at the last check
    NOT_RESPONDING = "Not Responding"  # the endpoint did not complete a handshake at the last check
    REPLACED = "Replaced"  # the endpoint now serves another certificate
    MISSING = "Missing"  # the file is gone or no longer holds this certificate


class CertificateLocation(Base):
    """Where discovery found a certificate: a TLS endpoint, a file on a server, or an upload.

    `locator` is the identity of the place ("tls:<scan ip>:<scan port>:<sni>", "file:<server id>:<path>",
    "upload:<file name>"), so the same certificate seen at many places is one certificate with many rows;
    a place that stops answering is marked, never deleted.
    """

    __tablename__ = "certificate_locations"
    __table_args__ = (UniqueConstraint("certificate_id", "locator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # tls, file, upload
    locator: Mapped[str] = mapped_column(String(700), index=True)
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    scan_ip: Mapped[str | None] = mapped_column(String(64))
    scan_port: Mapped[int | None] = mapped_column(Integer)
    sni: Mapped[str] = mapped_column(String(255), default="")  # "" when none was sent
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id", ondelete="SET NULL"))
    path: Mapped[str | None] = mapped_column(String(500))
    discovery_bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id", ondelete="SET NULL"))
    discovery_run_id: Mapped[int | None] = mapped_column(ForeignKey("discovery_runs.id", ondelete="SET NULL"))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[LocationStatus] = mapped_column(_label_enum(LocationStatus), default=LocationStatus.ACTIVE)
    last_error: Mapped[str | None] = mapped_column(Text)


class DiscoveryRun(Base):
    """One discovery run (network scan or server file scan), its scope and what it found."""

    __tablename__ = "discovery_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # tls, files
    bot_id: Mapped[int | None] = mapped_column(ForeignKey("bots.id", ondelete="SET NULL"))
    flow_run_id: Mapped[str | None] = mapped_column(String(40))
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # targets, ports, options
    status: Mapped[str] = mapped_column(String(20), default="Running")  # Running, Completed, Failed
    endpoints_total: Mapped[int] = mapped_column(Integer, default=0)
    endpoints_scanned: Mapped[int] = mapped_column(Integer, default=0)
    endpoints_answered: Mapped[int] = mapped_column(Integer, default=0)
    certificates_found: Mapped[int] = mapped_column(Integer, default=0)  # distinct, per batch
    certificates_new: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)  # unresolved names, unreadable files
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PrivateRoot(Base):
    """A private root CA the organisation trusts: chains that verify to it are Private and known."""

    __tablename__ = "private_roots"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    sha256_thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    pem: Mapped[str] = mapped_column(Text)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    # An admin's choice: hold chains to this root to the public CA rules (the 398-day limit) too.
    apply_public_rules: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))


class CompletedRun(Base):
    """When a scheduled flow last ran to its end (one row per flow): the dead man's switch and /metrics read it,
    so a schedule that stopped is seen without asking Prefect (whose worker may be the thing that stopped)."""

    __tablename__ = "completed_runs"

    flow_name: Mapped[str] = mapped_column(String(120), primary_key=True)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SmimeOrder(Base):
    """One S/MIME certificate order for a user. Written before the key, the CSR and the CA call, so a retried or
    re-run smime-rollout never orders twice; its state follows the user's status (CSR Pending -> Certificate
    Issued -> Certificate Installed) or Failed with the error; "Revoked" once the CA revoked its serial, "Cancelled"
    when the user was revoked before it was issued."""

    __tablename__ = "smime_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("smime_users.id", ondelete="CASCADE"), index=True)
    ca_connector_id: Mapped[int] = mapped_column(ForeignKey("ca_connectors.id"))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    state: Mapped[str] = mapped_column(String(40), index=True)  # SmimeStatus values, or "Failed"
    csr_pem: Mapped[str | None] = mapped_column(Text)
    private_key: Mapped[bytes | None] = mapped_column(EncryptedBytes)  # until the PKCS#12 is delivered
    # A remote CA's order id, recorded the moment the CA answers; what was written just before the call; and how
    # many times the order was sent (more than one with no id: an earlier outcome is unknown, look before ordering).
    ca_order_id: Mapped[str | None] = mapped_column(String(120))
    ca_request_ref: Mapped[str | None] = mapped_column(String(200))
    ca_submits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    serial_number: Mapped[str | None] = mapped_column(String(80))
    pem_chain: Mapped[str | None] = mapped_column(Text)
    expires_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # with expires_on: the lifetime renewal uses
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # state "Revoked": the CA revoked the serial
    revocation_reason: Mapped[str | None] = mapped_column(String(40))
    delivered_to: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(Text)
    # Why the order went to another CA connector than the one that issued the certificate it renews (disabled).
    connector_note: Mapped[str | None] = mapped_column(Text)
    # The PKCS#12 (leaf, chain, key) and its generated password, built once and sealed, so a retried delivery
    # sends the same file and password; both are dropped once delivered (with the key, which the file replaces).
    pkcs12: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    pkcs12_password: Mapped[str | None] = mapped_column(EncryptedText)
    pkcs12_mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # e-mail: the first of the two mails went
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SmimeDelivery(Base):
    """Where smime-rollout delivers each user's PKCS#12 (one row; none: the data directory's smime-delivery
    folder). `method`: folder (a local or NFS path), smb (a share, a per-user folder under it) or email (two mails
    to the user). `settings` holds what may be shown; `secret` the SMB or SMTP password, sealed."""

    __tablename__ = "smime_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    method: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(120))


class RotationItem(Base):
    """One certificate of a `rotate-batch` run, keyed by the batch's key: what the batch did to it so far.

    A re-run with the same key reads these rows, so it continues where the batch stopped: a certificate the batch
    already issued (`issued_serial`, or its order, written before the CA was called) is never issued again.
    States: Not Started, Issued, Deployed, Rolled Back, Failed, Skipped.
    """

    __tablename__ = "rotation_items"
    __table_args__ = (UniqueConstraint("batch_key", "certificate_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_key: Mapped[str] = mapped_column(String(120), index=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"))
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id", ondelete="SET NULL"))
    server_label: Mapped[str] = mapped_column(String(300), default="")
    server_type: Mapped[str] = mapped_column(String(20), default="")
    canary: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), default="Not Started")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    issued_serial: Mapped[str | None] = mapped_column(String(80))
    deployment_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class NotificationChannel(Base):
    """Where notifications go: an SMTP mailbox, a Slack or Teams incoming webhook, or a signed JSON webhook.

    `settings` holds what may be shown (SMTP host, port, security, sender, recipients; the generic webhook's
    URL); `secret` holds what may not (the SMTP password, the Slack/Teams webhook URL, the HMAC key), sealed.
    """

    __tablename__ = "notification_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # email, slack, teams, webhook
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))


class NotificationRule(Base):
    """Which events (one kind, optionally only a CA connector's or a tag's) go to which channels."""

    __tablename__ = "notification_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_kind: Mapped[str] = mapped_column(String(40), index=True)
    ca_connector_id: Mapped[int | None] = mapped_column(ForeignKey("ca_connectors.id", ondelete="CASCADE"))
    tag: Mapped[str | None] = mapped_column(String(100))
    # Only events about servers whose bot is in this group (the bot's Group), or about a bot of this group.
    server_group: Mapped[str | None] = mapped_column(String(120))
    channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120))


class NotificationState(enum.StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENDING = "sending"  # claimed by one sender until lease_until
    SENT = "sent"
    FAILED = "failed"  # gave up after its attempts; last_error says why


class Notification(Base):
    """The outbox: one row per (event, channel). The unique key is what makes a notification go out once,
    however many checks (flow runs, dashboard timers) see the same event."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("event_key", "channel_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(300))
    event_kind: Mapped[str] = mapped_column(String(40))
    channel_id: Mapped[int] = mapped_column(ForeignKey("notification_channels.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[NotificationState] = mapped_column(
        _label_enum(NotificationState), default=NotificationState.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)  # the server's answer to the last attempt
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    channel: Mapped[NotificationChannel] = relationship()
