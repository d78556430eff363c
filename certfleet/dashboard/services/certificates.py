"""Provisioning Certificates: the list with every manual column, the provisioning states the tiles count,
a new request, and quick target edits. The Select Action menu (Configure, Download, Details, View, Ignore,
Delete) is the inventory service's, reached through `certfleet.dashboard.services.inventory`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, String, case, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from certfleet import fields
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.dashboard.services import common
from certfleet.inventory.schemas import BATCH_NAME, CERTIFICATE_NAME, ORGANIZATION
from certfleet.inventory.usage import USAGE, target_problem
from certfleet.models import repo
from certfleet.models.orm import (
    Bot,
    CAConnector,
    CAType,
    Certificate,
    CertificateStatus,
    DeploymentTarget,
    DeploymentType,
    Server,
    utcnow,
)
from certfleet.pki.csr import MAX_SANS
from certfleet.pki.keys import KEY_SPEC_NAMES, key_spec_problem
from certfleet.pki.usage import Usage
from certfleet.servers.access import HANDLERS
from certfleet.servers.targets import target_problems

DiscoveryBot = aliased(Bot, name="discovery_bot")
ProvisioningBot = aliased(Bot, name="provisioning_bot")

TERMINAL = (CertificateStatus.IGNORED, CertificateStatus.REVOKED, CertificateStatus.EXPIRED)


class ProvisioningState:
    """What the dashboard's certificate tiles count (derived from the row, so it is filterable in SQL)."""

    NOT_MANAGED = "Not Managed"  # ignored, revoked, expired
    BOT_UNASSIGNED = "Bot Unassigned"
    CONFIGURATION_PENDING = "Configuration Pending"
    DEPLOYMENT_PENDING = "Deployment Pending"
    DEPLOYMENT_FAILED = "Deployment Failed"
    DEPLOYED = "Deployed"
    ALL = (NOT_MANAGED, BOT_UNASSIGNED, CONFIGURATION_PENDING, DEPLOYMENT_PENDING, DEPLOYMENT_FAILED, DEPLOYED)


def _has_targets() -> ColumnElement[bool]:
    return exists().where(DeploymentTarget.certificate_id == Certificate.id)


PROVISIONING_STATE: ColumnElement[str] = case(
    (Certificate.status.in_(TERMINAL), literal(ProvisioningState.NOT_MANAGED)),
    (Certificate.status == CertificateStatus.DEPLOYMENT_FAILED, literal(ProvisioningState.DEPLOYMENT_FAILED)),
    (Certificate.provisioning_bot_id.is_(None), literal(ProvisioningState.BOT_UNASSIGNED)),
    (
        or_(Certificate.ca_connector_id.is_(None), ~_has_targets()),
        literal(ProvisioningState.CONFIGURATION_PENDING),
    ),
    (Certificate.status == CertificateStatus.DEPLOYED, literal(ProvisioningState.DEPLOYED)),
    else_=literal(ProvisioningState.DEPLOYMENT_PENDING),
)

_location = case(
    (Certificate.location_host.is_(None), None),
    (Certificate.location_port.is_(None), Certificate.location_host),
    else_=Certificate.location_host + ":" + cast(Certificate.location_port, String),
)

CERTIFICATES = ListSpec(
    name="certificates",
    title="Provisioning Certificates",
    base=lambda: (
        select(Certificate.id)
        .outerjoin(DiscoveryBot, DiscoveryBot.id == Certificate.discovery_bot_id)
        .outerjoin(ProvisioningBot, ProvisioningBot.id == Certificate.provisioning_bot_id)
    ),
    pk=Certificate.id,
    count_base=lambda: select(Certificate.id),
    default_sort="-id",
    columns=(
        Column("common_name", "CN / SAN Name", Certificate.common_name, default=True, width=30),
        Column("discovery_bot", "Discovery Bot", DiscoveryBot.name, default=True),
        Column(
            "provisioning_bot",
            "Provisioning Bot",
            ProvisioningBot.name,
            default=True,
            render=lambda v: v or "Not Mapped",
        ),
        Column("issuer_ca", "Issuer CA", Certificate.issuer_ca, default=True, width=24),
        Column("ca_type", "CA Type", Certificate.ca_type, ColType.ENUM, default=True, choices=tuple(CAType), width=10),
        Column("location", "Certificate Location", _location, default=True, width=26),
        Column("signature_algorithm", "Signature Algorithm", Certificate.signature_algorithm, default=True),
        Column("expires_on", "Expires On", Certificate.expires_on, ColType.DATE, default=True),
        Column("expires_within", "Expires Within", Certificate.expires_on, ColType.DAYS_LEFT, default=True, width=12),
        Column("order_id", "Order ID", Certificate.ca_order_id, default=True, width=14),
        Column("organization", "Organization", Certificate.organization, default=True),
        Column("tags", "Tags", Certificate.tags, ColType.TAGS, default=True),
        Column(
            "status",
            "Status",
            Certificate.status,
            ColType.ENUM,
            default=True,
            choices=tuple(CertificateStatus),
            width=16,
        ),
        Column("batch_name", "Batch Name", Certificate.batch_name, default=True),
        Column("scan_ip", "Scan IP Address", Certificate.scan_ip, width=16),
        Column("scan_port", "Scan Port", Certificate.scan_port, ColType.NUMBER, width=10),
        Column("issued_on", "Issued On", Certificate.issued_on, ColType.DATE),
        Column("last_provisioned_on", "Last Provisioned On", Certificate.last_provisioned_on, ColType.DATE),
        Column("validation_status", "Validation Status", Certificate.validation_status),
        Column("dcv_status", "DCV Status", Certificate.dcv_status),
        Column(
            "deployment_type",
            "Deployment Type",
            Certificate.deployment_type,
            ColType.ENUM,
            choices=tuple(DeploymentType),
        ),
        Column("serial_number", "Serial Number", Certificate.serial_number, width=34),
        Column("vulnerable", "Vulnerable", Certificate.vulnerable, ColType.BOOL, width=10),
        # What it is for (certfleet.pki.usage); before the first issue, the profile it will be ordered with.
        Column(
            "usage",
            "Usage",
            USAGE,
            ColType.ENUM,
            default=True,
            choices=tuple(u.value for u in Usage),
            render=lambda v: Usage(v).label if v in Usage.__members__.values() else (v or ""),
            width=12,
        ),
        Column(
            "provisioning_state",
            "Provisioning State",
            PROVISIONING_STATE,
            ColType.ENUM,
            choices=ProvisioningState.ALL,
            width=20,
        ),
    ),
    hidden=(Column("raw_status", "", Certificate.status),),  # Ignore or Unignore in the row's menu
)


def state_of(status: CertificateStatus, has_bot: bool, has_ca: bool, has_targets: bool) -> str:
    """The same rules as PROVISIONING_STATE, in Python (the tiles count groups, the list filters rows)."""
    if status in TERMINAL:
        return ProvisioningState.NOT_MANAGED
    if status is CertificateStatus.DEPLOYMENT_FAILED:
        return ProvisioningState.DEPLOYMENT_FAILED
    if not has_bot:
        return ProvisioningState.BOT_UNASSIGNED
    if not (has_ca and has_targets):
        return ProvisioningState.CONFIGURATION_PENDING
    if status is CertificateStatus.DEPLOYED:
        return ProvisioningState.DEPLOYED
    return ProvisioningState.DEPLOYMENT_PENDING


def tile_counts(session: Session) -> dict[str, int]:
    """The certificate tiles from one GROUP BY that the ix_certificates_tiles index covers."""
    targeted = select(DeploymentTarget.certificate_id).distinct().subquery()
    keys = (
        Certificate.status,
        Certificate.provisioning_bot_id.is_not(None),
        Certificate.ca_connector_id.is_not(None),
        targeted.c.certificate_id.is_not(None),
    )
    groups = session.execute(
        select(*keys, func.count()).outerjoin(targeted, targeted.c.certificate_id == Certificate.id).group_by(*keys)
    ).all()
    by_state: dict[str, int] = {}
    for status, has_bot, has_ca, has_targets, n in groups:
        state = state_of(CertificateStatus(status), bool(has_bot), bool(has_ca), bool(has_targets))
        by_state[state] = by_state.get(state, 0) + int(n)
    return {
        "total": sum(by_state.values()),
        "bot_unassigned": by_state.get(ProvisioningState.BOT_UNASSIGNED, 0),
        "configuration_pending": by_state.get(ProvisioningState.CONFIGURATION_PENDING, 0),
        "deployment_pending": by_state.get(ProvisioningState.DEPLOYMENT_PENDING, 0),
        "deployment_failed": by_state.get(ProvisioningState.DEPLOYMENT_FAILED, 0),
    }


KEY_SPECS = KEY_SPEC_NAMES


@dataclass(frozen=True)
class CertificateFields:
    """Configure: CA mapping, provisioning bot, key and lifecycle parameters, labels. Labels obey the same
    `certfleet.fields` rules as Configure's (`ConfigureRequest`); None is "no value"."""

    ca_connector_id: str | int | None = None
    provisioning_bot_id: str | int | None = None
    key_spec: str = "rsa2048"
    validity_days: str | int | None = None
    renew_before_days: str | int | None = None  # None: the CA connector's default, else 30
    organization: str | None = None
    tags: str | list[str] | None = None
    batch_name: str | None = None
    deployment_type: str = DeploymentType.AUTOMATED.value
    renew_before_fraction: str | float | None = None


@dataclass(frozen=True)
class NewCertificate:
    common_name: str
    sans: str | list[str] | None = None
    profile: str = "tls-server"
    fields: CertificateFields = field(default_factory=CertificateFields)


def _optional_id(
    session: Session, model: type[Bot] | type[CAConnector], value: str | int | None, name: str
) -> int | None:
    if value is None or value == "" or value == "none":
        return None
    try:
        ident = int(value)
    except ValueError:
        raise InputError(f"{name.replace('_', ' ')} must be an id", field=name) from None
    if session.get(model, ident) is None:
        raise InputError(f"{name.replace('_', ' ')} {ident} does not exist", field=name)
    return ident


def _apply(session: Session, cert: Certificate, f: CertificateFields) -> None:
    cert.ca_connector_id = _optional_id(session, CAConnector, f.ca_connector_id, "ca_connector_id")
    cert.provisioning_bot_id = _optional_id(session, Bot, f.provisioning_bot_id, "provisioning_bot_id")
    key_problem = key_spec_problem(f.key_spec)
    if key_problem is not None:
        raise InputError(key_problem, field="key_spec")
    cert.key_spec = f.key_spec  # one of KEY_SPEC_NAMES, as sent
    cert.validity_days = (
        None if f.validity_days in (None, "") else common.integer(f.validity_days, "validity_days", low=1, high=3650)
    )
    connector = session.get(CAConnector, cert.ca_connector_id) if cert.ca_connector_id else None
    default_days = connector.renew_before_days if connector and connector.renew_before_days else 30
    cert.renew_before_days = common.integer(
        f.renew_before_days, "renew_before_days", low=1, high=365, default=default_days
    )
    cert.renew_before_fraction = fields.fraction(f.renew_before_fraction, "renew_before_fraction")
    cert.organization = ORGANIZATION.check_optional(f.organization, "organization")
    cert.tags = common.tags(f.tags)
    cert.batch_name = BATCH_NAME.check_optional(f.batch_name, "batch_name")
    cert.deployment_type = common.label(DeploymentType, f.deployment_type, "deployment_type")


def _names(value: str | list[str] | None) -> list[str]:
    items = value if isinstance(value, list) else [s for s in (value or "").replace(",", " ").split() if s]
    out: dict[str, str] = {}  # lower-cased name -> the name as given: keeps the order, finds duplicates in O(1)
    for name in items:
        if len(out) == MAX_SANS:
            raise InputError(f"give at most {MAX_SANS} subject alternative names per certificate", field="sans")
        CERTIFICATE_NAME.check(name, "sans")
        if name.lower() in out:  # DNS names ignore case: the same name twice is a mistake, not two names
            raise InputError(f"sans: {name} is given twice (as {out[name.lower()]} before)", field="sans")
        out[name.lower()] = name
    return list(out.values())


def create_certificate(session: Session, new: NewCertificate, actor: str) -> Certificate:
    cn = common.text(new.common_name, "common_name", required=True, max_len=255)
    assert cn is not None
    if new.profile not in ("tls-server", "smime"):
        raise InputError("profile must be tls-server or smime", field="profile")
    if new.profile == "tls-server":
        CERTIFICATE_NAME.check(cn, "common_name")
    sans = _names(new.sans)
    cert = Certificate(
        common_name=cn,
        sans=sans or ([cn] if new.profile == "tls-server" else []),
        profile=new.profile,
        status=CertificateStatus.INITIATED,
        created_at=utcnow(),
    )
    _apply(session, cert, new.fields)
    session.add(cert)
    session.flush()
    repo.audit(session, actor=actor, action="create-certificate", obj=cert, detail=cn)
    return cert


@dataclass(frozen=True)
class TargetFields:
    server_id: str | int
    port: str | int
    server_name: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    chain_path: str | None = None


def add_target(session: Session, cert_id: int, f: TargetFields, actor: str) -> DeploymentTarget:
    cert = repo.get(session, Certificate, cert_id)
    try:
        server = repo.get(session, Server, int(f.server_id))
    except (ValueError, repo.NotFound):
        raise InputError("choose a server (add it under Servers first)", field="server_id") from None
    port = common.integer(f.port, "port", low=1, high=65535)
    # nginx, Apache, Tomcat, ... find the files in their configuration; a plain PEM-files server must be told.
    files_needed = server.server_type not in HANDLERS
    for name, value in (("cert_path", f.cert_path), ("key_path", f.key_path)):
        if files_needed and not value:
            raise InputError(
                f"give the {name.replace('_', ' ')}: a {server.server_type} server has no configuration that "
                "certfleet reads to find it",
                field=name,
            )
    cert_path = common.text(f.cert_path, "cert_path", max_len=500)
    key_path = common.text(f.key_path, "key_path", max_len=500)
    chain_path = common.text(f.chain_path, "chain_path", max_len=500)
    server_name = common.text(f.server_name, "server_name", max_len=255)
    values: dict[str, str | int | None] = {
        "port": port,
        "cert_path": cert_path,
        "key_path": key_path,
        "chain_path": chain_path,
        "server_name": server_name,
    }
    problems = target_problems(server, values)
    if problems:
        raise InputError(problems[0][1], field=problems[0][0], problems=problems)
    unservable = target_problem(cert, server.server_type)
    if unservable is not None:  # an S/MIME or CA certificate cannot be served: refuse before anything is saved
        raise InputError(f"{server.description}: {unservable}", field="server_id")
    if any(t.server_id == server.id and t.port == port for t in cert.targets):
        raise InputError(f"{server.description} port {port} is already a target of this certificate", field="port")
    target = DeploymentTarget(
        server_id=server.id,
        port=port,
        server_name=server_name,
        cert_path=cert_path,
        key_path=key_path,
        chain_path=chain_path,
    )
    cert.targets.append(target)
    session.flush()
    repo.audit(session, actor=actor, action="add-target", obj=cert, detail=f"{server.host}:{port}")
    return target


def remove_target(session: Session, cert_id: int, target_id: int, actor: str) -> None:
    cert = repo.get(session, Certificate, cert_id)
    target = next((t for t in cert.targets if t.id == target_id), None)
    if target is None:
        raise repo.NotFound(f"target {target_id} is not a target of certificate {cert_id}")
    cert.targets.remove(target)
    repo.audit(session, actor=actor, action="remove-target", obj=cert, detail=f"target {target_id}")


def needs_configuration(cert: Certificate) -> list[str]:
    """What is missing before the certificate can be provisioned, in words."""
    missing = []
    if cert.ca_connector_id is None:
        missing.append("a CA connector")
    if cert.provisioning_bot_id is None:
        missing.append("a provisioning bot")
    if not cert.targets:
        missing.append("at least one deployment target")
    return missing
