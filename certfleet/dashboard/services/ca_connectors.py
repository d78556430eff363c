"""CA connectors: a list and a form per kind (emSign, emCA, AD CS, DigiCert, ACME, the built-in CA).

The form fields of each kind are declared in KINDS; values go to `CAConnector.settings` (plain) or to the encrypted
`credentials` (secret=True). Keys follow the connectors' settings (certfleet/connectors/ca/*), so the registry in
certfleet/tasks/build.py can read them directly.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet.dashboard.errors import InputError
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.dashboard.services import common
from certfleet.models import repo
from certfleet.models.orm import CAConnector, Certificate, ConnectorStatus, DirectoryProfile, Order, utcnow


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    kind: str = "text"  # text, int, email, url, password, select, file
    required: bool = False
    secret: bool = False  # stored encrypted in credentials; never shown again
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    required_when: tuple[str, str] | None = None  # (other key, value): required only then


@dataclass(frozen=True)
class ConnectorKind:
    key: str
    label: str
    ca_type: str  # Public / Private
    base_url_label: str | None
    fields: tuple[FormField, ...] = field(default_factory=tuple)
    validity_column: bool = False


KINDS: dict[str, ConnectorKind] = {
    k.key: k
    for k in (
        ConnectorKind(
            "emsign", "emSign", "Public", "emSign API Base URL",
            (
                FormField("account_number", "emSign Account Number", required=True),
                FormField("access_key", "emSign AccessKey", "password", required=True, secret=True),
                FormField("full_name", "Full Name", required=True),
                FormField("email", "Email", "email", required=True),
            ),
        ),
        ConnectorKind(
            "emca", "emCA", "Private", "Base URL",
            (
                FormField("version", "emCA Version", required=True, help="e.g. 5.0"),
                FormField("username", "Username", required=True),
                FormField("issuing_ca", "Issuing CA", required=True),
                FormField("subscriber_id", "Subscriber ID", required=True),
                FormField("password", "Password", "password", required=True, secret=True),
                FormField("upload_file", "Upload File", "file", required=True, secret=True,
                          help="the client certificate file (PKCS#12 or PEM) from the emCA portal"),
            ),
        ),
        ConnectorKind(
            "adcs", "AD CS", "Private", "Base URL",
            (
                FormField("setup", "CA Setup Type", "select", required=True,
                          choices=(("enterprise", "Enterprise CA"), ("standalone", "Standalone CA"))),
                FormField("username", "Username", required_when=("setup", "enterprise"),
                          help="a domain service account; required for an Enterprise CA"),
                FormField("password", "Password", "password", secret=True),
                FormField("template", "Certificate template", help="e.g. WebServer (Enterprise CA)"),
            ),
        ),
        ConnectorKind(
            "digicert", "DigiCert", "Public", "DigiCert API Base URL",
            (
                FormField("api_key", "DigiCert API Key", "password", required=True, secret=True),
                FormField("server_platform_id", "Server Platform ID", "int"),
                FormField("organization_id", "Organization ID", "int", required=True),
                FormField("container_id", "Container ID", "int"),
                FormField("payment_method", "Payment Type", "select", required=True,
                          choices=(("balance", "Balance"), ("profile", "Profile"))),
            ),
            validity_column=True,
        ),
        ConnectorKind(
            "acme", "ACME", "Public", "ACME directory URL",
            (
                FormField("contact_email", "Contact email", "email"),
                FormField("eab_kid", "External account key ID"),
                FormField("eab_hmac_key", "External account HMAC key", "password", secret=True),
            ),
        ),
        ConnectorKind("local", "Built-in CA", "Private", None, ()),
    )
}  # fmt: skip

CA_CONNECTORS = ListSpec(
    name="ca_connectors",
    title="CA Connectors",
    base=lambda: select(CAConnector.id),
    pk=CAConnector.id,
    default_sort="name",
    columns=(
        Column("name", "Name", CAConnector.name, default=True, width=24),
        Column("base_url", "Base URL", CAConnector.base_url, default=True, width=36),
        Column("status", "Status", CAConnector.status, ColType.ENUM, default=True, choices=tuple(ConnectorStatus)),
        Column("kind", "Kind", CAConnector.kind, ColType.ENUM, default=True, choices=tuple(KINDS),
               render=lambda v: KINDS[v].label if v in KINDS else str(v)),
        Column("validity", "Certificate Validity", CAConnector.default_validity_days, ColType.NUMBER,
               render=lambda v: f"{v} days" if v else ""),
        Column("created_at", "Created Date", CAConnector.created_at, ColType.DATE),
        Column("created_by", "Created By", CAConnector.created_by),
    ),
)  # fmt: skip


def kind_of(key: str) -> ConnectorKind:
    try:
        return KINDS[key]
    except KeyError:
        raise InputError(f"CA connector kind must be one of {', '.join(KINDS)}, not {key!r}", field="kind") from None


def save(
    session: Session,
    kind_key: str,
    values: dict[str, Any],
    actor: str,
    connector_id: int | None = None,
    files: dict[str, bytes] | None = None,
) -> CAConnector:
    """Create or update a connector. Empty secret fields on update keep the stored secret."""
    kind = kind_of(kind_key)
    connector = repo.get(session, CAConnector, connector_id) if connector_id else None
    if connector is not None and connector.kind != kind.key:
        raise InputError("a connector's kind cannot change; create a new connector instead", field="kind")
    name = common.text(str(values.get("name") or ""), "name", required=True, max_len=120) or ""
    clash = session.scalar(
        select(CAConnector.id).where(
            func.lower(CAConnector.name) == name.lower(), CAConnector.id != (connector_id or -1)
        )
    )
    if clash is not None:
        raise InputError(f"a CA connector named {name!r} already exists; choose another name", field="name")
    base_url = None
    if kind.base_url_label:
        base_url = common.text(str(values.get("base_url") or ""), "base_url", required=True, max_len=500)
        if not base_url or not base_url.startswith(("https://", "http://")):
            raise InputError(f"{kind.base_url_label} must be an http(s):// URL", field="base_url")
    validity = common.integer(values.get("validity_days"), "validity_days", low=1, high=3650, default=90)
    settings: dict[str, Any] = dict(connector.settings) if connector else {}
    secrets: dict[str, Any] = repo.connector_credentials(connector) if connector else {}
    for f in kind.fields:
        raw = values.get(f.key)
        if f.kind == "file":
            data = (files or {}).get(f.key)
            if data:
                secrets[f.key] = base64.b64encode(data).decode()
            elif f.required and f.key not in secrets:
                raise InputError(f"{f.label} is required", field=f.key)
            continue
        text = str(raw).strip() if raw is not None else ""
        needed = f.required or (
            f.required_when is not None and str(values.get(f.required_when[0]) or "") == f.required_when[1]
        )
        if f.secret:
            if text:
                secrets[f.key] = text
            elif needed and f.key not in secrets:
                raise InputError(f"{f.label} is required", field=f.key)
            continue
        if not text:
            if needed:
                raise InputError(f"{f.label} is required", field=f.key)
            settings.pop(f.key, None)
            continue
        if f.kind == "int":
            settings[f.key] = common.integer(text, f.key, low=0, high=2**31 - 1)
        elif f.kind == "select":
            allowed = [c[0] for c in f.choices]
            if text not in allowed:
                raise InputError(f"{f.label} must be one of {', '.join(c[1] for c in f.choices)}", field=f.key)
            settings[f.key] = text
        elif f.kind == "email" and "@" not in text:
            raise InputError(f"{f.label} must be an email address", field=f.key)
        else:
            settings[f.key] = text[:500]
    settings["validity_days"] = validity
    if kind.key == "acme":
        settings["directory_url"] = base_url
    if connector is None:
        connector = CAConnector(kind=kind.key, created_by=actor, created_at=utcnow(), status=ConnectorStatus.ACTIVE)
        session.add(connector)
    connector.name = name
    connector.base_url = base_url
    connector.default_validity_days = validity
    connector.settings = settings
    if secrets:
        repo.set_connector_credentials(connector, secrets)
    session.flush()
    repo.audit(session, actor=actor, action="save-ca-connector", obj=connector, detail=f"{kind.label} {name}")
    return connector


def set_enabled(session: Session, connector_id: int, enabled: bool, actor: str) -> CAConnector:
    connector = repo.get(session, CAConnector, connector_id)
    connector.status = ConnectorStatus.ACTIVE if enabled else ConnectorStatus.DISABLED
    action = "enable-ca-connector" if enabled else "disable-ca-connector"
    repo.audit(session, actor=actor, action=action, obj=connector, detail=connector.name)
    return connector


def delete(session: Session, connector_id: int, actor: str) -> str:
    connector = repo.get(session, CAConnector, connector_id)
    certs = session.scalar(select(func.count(Certificate.id)).where(Certificate.ca_connector_id == connector.id))
    orders = session.scalar(select(func.count(Order.id)).where(Order.ca_connector_id == connector.id))
    profiles = session.scalar(
        select(func.count(DirectoryProfile.id)).where(DirectoryProfile.ca_connector_id == connector.id)
    )
    if certs or orders or profiles:
        raise InputError(
            f"{connector.name} is used by {certs} certificates, {orders} orders and {profiles} S/MIME profiles: "
            "disable it instead, or move them to another connector first"
        )
    repo.audit(session, actor=actor, action="delete-ca-connector", obj=connector, detail=connector.name)
    session.delete(connector)
    return connector.name


def form_values(connector: CAConnector | None) -> dict[str, Any]:
    """What the edit form shows: plain settings, never secrets (those show as 'stored')."""
    if connector is None:
        return {"validity_days": 90}
    values: dict[str, Any] = {
        "name": connector.name,
        "base_url": connector.base_url or "",
        "validity_days": connector.default_validity_days,
    }
    values.update({k: v for k, v in connector.settings.items() if isinstance(v, str | int)})
    return values


def stored_secrets(connector: CAConnector | None) -> set[str]:
    return set(repo.connector_credentials(connector)) if connector else set()


def counts_by_kind(session: Session) -> dict[str, int]:
    rows = session.execute(select(CAConnector.kind, func.count(CAConnector.id)).group_by(CAConnector.kind)).all()
    return {str(k): int(n) for k, n in rows}
