"""CA connector management: list, create, edit, disable/enable, delete, test connection.

Every function takes the caller's session first (the dashboard's DbSession, a CLI's session_scope) and
never commits; `check_connection` and `check_form` do network I/O and must be called outside a write transaction.
Secrets go into the encrypted `credentials` column and are never returned: reading a connector gives
`secrets_set` flags instead. Every change is audited without secrets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from certfleet.ca_admin.forms import (
    DEFAULT_RATE,
    FORMS,
    KIND_LABELS,
    LIST_COLUMNS,
    RENEWAL_FIELDS,
    ADCSForm,
    ConnectorForm,
    ConnectorFormBase,
    EmCAForm,
)
from certfleet.ca_admin.runtime import ACME_KEY, ACME_URI, REMOTE_KINDS, StoredConnector, build_remote_ca
from certfleet.connectors.ca.emca import ClientIdentity
from certfleet.connectors.errors import ConnectorError, PermanentConnectorError
from certfleet.models import repo
from certfleet.models.orm import (
    CAConnector,
    Certificate,
    ConnectorStatus,
    DirectoryProfile,
    Order,
    SmimeOrder,
    SmimeUser,
)

_FORM_ADAPTER: TypeAdapter[Any] = TypeAdapter(ConnectorForm)
# Values the connector keeps for itself (ACME account), preserved across edits.
_RUNTIME_SETTINGS = (ACME_URI,)
_RUNTIME_CREDENTIALS = (ACME_KEY,)


class ConnectorFormError(ValueError):
    """Bad input: `message` says what to fix, `field` names the form field (the dashboard's InputError shape)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class CertificateRef(BaseModel):
    id: int
    common_name: str
    status: str


class ConnectorInUse(ConnectorFormError):
    """Delete refused: certificates (or directory profiles) still depend on the connector."""

    def __init__(
        self, name: str, certificates: list[CertificateRef], profiles: list[str], smime_users: list[str] | None = None
    ) -> None:
        parts = []
        if certificates:
            listed = ", ".join(f"{c.common_name} (#{c.id})" for c in certificates[:20])
            more = f" and {len(certificates) - 20} more" if len(certificates) > 20 else ""
            parts.append(f"{len(certificates)} certificate(s): {listed}{more}")
        if profiles:
            parts.append(f"directory profile(s): {', '.join(profiles)}")
        if smime_users:  # their orders name it: a renewal orders from the connector that issued the certificate
            more = f" and {len(smime_users) - 20} more" if len(smime_users) > 20 else ""
            listed = ", ".join(smime_users[:20])
            parts.append(f"{len(smime_users)} S/MIME user(s) with its certificates: {listed}{more}")
        super().__init__(
            f"CA connector {name!r} cannot be deleted while {'; '.join(parts)} depend on it; "
            "move them to another connector or delete them first, or disable the connector instead"
        )
        self.certificates = certificates
        self.profiles = profiles


class ConnectorRow(BaseModel):
    """One line of the list page. `certificate_validity` is shown for DigiCert only (the manual's column)."""

    id: int
    kind: str
    kind_label: str
    name: str
    base_url: str | None
    status: str
    certificate_validity: str | None
    certificates: int


class ConnectorDetail(BaseModel):
    """A connector for its view/edit page: form values without secrets, plus which secrets are stored."""

    id: int
    kind: str
    kind_label: str
    name: str
    base_url: str | None
    status: str
    values: dict[str, Any]
    secrets_set: dict[str, bool]
    rate_limit_per_second: float
    rate_limit_burst: int
    certificates: int
    created_at: datetime
    created_by: str | None


class TestResult(BaseModel):
    ok: bool
    message: str


# -- reading ---------------------------------------------------------------------------------------------


def columns(kind: str) -> list[str]:
    return LIST_COLUMNS.get(kind, ["Name", "Base URL", "Status", "Actions"])


def form_schema(kind: str) -> dict[str, Any]:
    """JSON schema of a kind's form (titles are the manual's labels), for rendering."""
    return _form_class(kind).model_json_schema()


def list_connectors(session: Session, kind: str | None = None) -> list[ConnectorRow]:
    counts = dict(
        session.execute(select(Certificate.ca_connector_id, func.count()).group_by(Certificate.ca_connector_id)).all()
    )
    query = select(CAConnector).order_by(CAConnector.kind, CAConnector.name)
    if kind is not None:
        query = query.where(CAConnector.kind == kind)
    return [
        ConnectorRow(
            id=c.id,
            kind=c.kind,
            kind_label=KIND_LABELS.get(c.kind, c.kind),
            name=c.name,
            base_url=c.base_url,
            status=c.status.value,
            certificate_validity=f"{c.default_validity_days} days" if c.kind == "digicert" else None,
            certificates=int(counts.get(c.id, 0)),
        )
        for c in session.scalars(query)
    ]


def get_connector(session: Session, connector_id: int) -> ConnectorDetail:
    row = repo.get(session, CAConnector, connector_id)
    stored = StoredConnector.of(row)
    form_class = FORMS.get(row.kind)
    secret_names = form_class.secret_fields if form_class else ()
    values = {k: v for k, v in stored.settings.items() if k not in _RUNTIME_SETTINGS}
    values.update({key: getattr(row, key) for key in RENEWAL_FIELDS})
    rate, burst = rate_limit_of(row)
    count = session.scalar(select(func.count()).select_from(Certificate).where(Certificate.ca_connector_id == row.id))
    return ConnectorDetail(
        id=row.id,
        kind=row.kind,
        kind_label=KIND_LABELS.get(row.kind, row.kind),
        name=row.name,
        base_url=row.base_url,
        status=row.status.value,
        values=values,
        secrets_set={name: bool(stored.credentials.get(name)) for name in secret_names},
        rate_limit_per_second=rate,
        rate_limit_burst=burst,
        certificates=int(count or 0),
        created_at=row.created_at,
        created_by=row.created_by,
    )


def edit_form(session: Session, connector_id: int) -> ConnectorFormBase:
    """The stored values as the kind's form, secrets left empty (= keep), to prefill an edit page."""
    row = repo.get(session, CAConnector, connector_id)
    form_class = _form_class(row.kind)
    values = {k: v for k, v in (row.settings or {}).items() if k not in _RUNTIME_SETTINGS}
    renewal = {key: getattr(row, key) for key in RENEWAL_FIELDS}
    return form_class.model_validate({**values, **renewal, "name": row.name})


def rate_limit_of(row: CAConnector) -> tuple[float, int]:
    """Requests per second and burst for the connector's Prefect rate limit."""
    rate, burst = DEFAULT_RATE.get(row.kind, (20.0, 20))
    advanced = (row.settings or {}).get("advanced") or {}
    return float(advanced.get("rate_limit_per_second") or rate), int(advanced.get("rate_limit_burst") or burst)


def dependents(session: Session, connector_id: int) -> tuple[list[CertificateRef], list[str]]:
    """Certificates using the connector or holding orders from it, and directory profiles naming it."""
    ordered_from = select(Order.certificate_id).where(Order.ca_connector_id == connector_id)
    certs = session.scalars(
        select(Certificate)
        .where((Certificate.ca_connector_id == connector_id) | Certificate.id.in_(ordered_from))
        .order_by(Certificate.id)
    )
    refs = [CertificateRef(id=c.id, common_name=c.common_name, status=c.status.value) for c in certs]
    profiles = list(
        session.scalars(select(DirectoryProfile.name).where(DirectoryProfile.ca_connector_id == connector_id))
    )
    return refs, profiles


# -- validating input ------------------------------------------------------------------------------------


def parse_form(kind: str, data: Mapping[str, Any]) -> ConnectorFormBase:
    """Build a kind's form from submitted values; the first problem becomes a ConnectorFormError."""
    form_class = _form_class(kind)
    cleaned = {k: (None if v == "" else v) for k, v in data.items()}
    cleaned["kind"] = kind
    try:
        return form_class.model_validate(cleaned)
    except ValidationError as exc:
        raise _form_error(exc) from exc


def _form_error(exc: ValidationError) -> ConnectorFormError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ()) if p != "kind") or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    label = f"{field}: " if field and first.get("type") in ("missing", "extra_forbidden") else ""
    return ConnectorFormError(f"{label}{message}", field=field)


def _form_class(kind: str) -> type[ConnectorFormBase]:
    form_class = FORMS.get(kind)
    if form_class is None:
        known = ", ".join(KIND_LABELS[k] for k in FORMS)
        raise ConnectorFormError(f"unknown CA connector kind {kind!r}; choose one of {known}", field="kind")
    return form_class


def _check_name(session: Session, name: str, connector_id: int | None = None) -> None:
    clash = session.scalar(
        select(CAConnector.id).where(or_(CAConnector.name == name, func.lower(CAConnector.name) == name.lower()))
    )
    if clash is not None and clash != connector_id:
        raise ConnectorFormError(f"a CA connector named {name!r} already exists; choose another name", field="name")


def _merge_secrets(
    form: ConnectorFormBase, stored: dict[str, Any], stored_settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The secrets to use: the form's, else the stored ones, unless where they are sent has changed."""
    if stored_settings is not None:
        _require_secrets_again(form, stored, stored_settings)
    secrets = dict(stored)
    for name, value in form.secret_values().items():
        secrets[name] = value
    optional = {"eab_hmac_key", "tsig_secret"}
    if isinstance(form, ADCSForm) and form.ca_setup_type == "Standalone CA" and not form.username:
        optional.add("password")
    missing = [n for n in form.secret_fields if n not in optional and not secrets.get(n)]
    if missing:
        field = missing[0]
        title = type(form).model_fields[field].title or field
        raise ConnectorFormError(f"{title} is required", field=field)
    if isinstance(form, EmCAForm):
        _check_emca_file(secrets)
    return secrets


def _require_secrets_again(form: ConnectorFormBase, stored: dict[str, Any], settings: Mapping[str, Any]) -> None:
    """A stored secret is never sent to an endpoint other than the one it was given for."""
    given = form.secret_values()
    new_settings = form.public_values()
    fields = type(form).model_fields
    for secret, destinations in form.secret_destinations().items():
        if not stored.get(secret) or secret in given:
            continue
        moved = [d for d in destinations if new_settings.get(d) != settings.get(d)]
        if moved:
            title = fields[secret].title or secret
            what = fields[moved[0]].title or moved[0]
            raise ConnectorFormError(f"give the {title} again: the {what} changed", field=secret)


def _check_emca_file(secrets: dict[str, Any]) -> None:
    try:
        ClientIdentity.load(base64.b64decode(secrets["uploaded_file"]), secrets.get("password"))
    except PermanentConnectorError as exc:
        raise ConnectorFormError(str(exc), field="uploaded_file") from exc


# -- changing --------------------------------------------------------------------------------------------


def create_connector(session: Session, form: ConnectorFormBase, *, actor: str) -> int:
    _check_name(session, form.name)
    secrets = _merge_secrets(form, {})
    row = CAConnector(
        kind=str(getattr(form, "kind")),  # noqa: B009 - every concrete form has a kind literal
        name=form.name,
        base_url=form.url(),
        status=ConnectorStatus.ACTIVE,
        settings=form.public_values(),
        credentials=json.dumps(secrets),
        default_validity_days=_validity(form),
        renew_before_days=form.renew_before_days,
        renew_before_fraction=form.renew_before_fraction,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    repo.audit(session, actor=actor, action="create-ca-connector", obj=row, detail=f"{row.kind} {row.name!r}")
    return row.id


def update_connector(session: Session, connector_id: int, form: ConnectorFormBase, *, actor: str) -> None:
    row = repo.get(session, CAConnector, connector_id)
    if row.kind != getattr(form, "kind"):  # noqa: B009
        raise ConnectorFormError(
            f"connector {row.name!r} is a {KIND_LABELS.get(row.kind, row.kind)} connector; its kind cannot change",
            field="kind",
        )
    _check_name(session, form.name, connector_id)
    stored = StoredConnector.of(row)
    secrets = _merge_secrets(form, stored.credentials, stored.settings)
    settings = form.public_values()
    if _account_identity(stored.settings) != _account_identity(settings):
        # A new ACME directory or EAB means a new account there.
        for key in _RUNTIME_CREDENTIALS:
            secrets.pop(key, None)
    else:
        settings.update({k: stored.settings[k] for k in _RUNTIME_SETTINGS if k in stored.settings})
    changed = sorted(k for k in set(settings) | set(stored.settings) if settings.get(k) != stored.settings.get(k))
    row.name = form.name
    row.base_url = form.url()
    row.settings = settings
    row.credentials = json.dumps(secrets)
    row.default_validity_days = _validity(form, row.default_validity_days)
    for key in RENEWAL_FIELDS:
        if getattr(row, key) != getattr(form, key):
            changed.append(key)
            setattr(row, key, getattr(form, key))
    secrets_changed = sorted(form.secret_values())
    detail = f"changed: {', '.join(changed) or 'nothing'}" + (
        f"; new secrets: {', '.join(secrets_changed)}" if secrets_changed else ""
    )
    repo.audit(session, actor=actor, action="edit-ca-connector", obj=row, detail=detail)


def _account_identity(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    return (settings.get("directory_url"), settings.get("eab_key_id"))


def _validity(form: ConnectorFormBase, current: int = 90) -> int:
    if hasattr(form, "certificate_validity"):
        return int(form.certificate_validity)
    return current


def set_status(session: Session, connector_id: int, status: ConnectorStatus, *, actor: str) -> None:
    """Disable: existing certificates keep working, no new orders are placed. Enable undoes it."""
    row = repo.get(session, CAConnector, connector_id)
    if row.status is status:
        return
    row.status = status
    action = "disable-ca-connector" if status is ConnectorStatus.DISABLED else "enable-ca-connector"
    repo.audit(session, actor=actor, action=action, obj=row, detail=row.name)


def disable_connector(session: Session, connector_id: int, *, actor: str) -> None:
    set_status(session, connector_id, ConnectorStatus.DISABLED, actor=actor)


def enable_connector(session: Session, connector_id: int, *, actor: str) -> None:
    set_status(session, connector_id, ConnectorStatus.ACTIVE, actor=actor)


def delete_connector(session: Session, connector_id: int, *, actor: str) -> None:
    row = repo.get(session, CAConnector, connector_id)
    if row.kind == "local":
        raise ConnectorFormError("the built-in CA cannot be deleted (its keys would be lost); disable it instead")
    certificates, profiles = dependents(session, connector_id)
    smime_users = list(
        session.scalars(
            select(SmimeUser.email)
            .where(SmimeUser.id.in_(select(SmimeOrder.user_id).where(SmimeOrder.ca_connector_id == connector_id)))
            .order_by(SmimeUser.email)
        )
    )
    if certificates or profiles or smime_users:
        raise ConnectorInUse(row.name, certificates, profiles, smime_users)
    repo.audit(session, actor=actor, action="delete-ca-connector", obj=row, detail=f"{row.kind} {row.name!r}")
    session.delete(row)
    session.flush()


# -- test connection: authenticate against the CA, order nothing ----------------------------------------


def check_connection(session: Session, connector_id: int) -> TestResult:
    """Authenticate against the CA with the stored settings, without ordering anything."""
    row = repo.get(session, CAConnector, connector_id)
    if row.kind not in REMOTE_KINDS:
        return TestResult(ok=True, message=f"{row.name} is the built-in CA; it needs no connection")
    return _try(StoredConnector.of(row))


def check_form(form: ConnectorFormBase, session: Session | None = None, connector_id: int | None = None) -> TestResult:
    """Test values before saving them; with `connector_id`, secrets left empty come from the stored connector."""
    stored_secrets: dict[str, Any] = {}
    stored_settings: dict[str, Any] | None = None
    if session is not None and connector_id is not None:
        current = StoredConnector.of(repo.get(session, CAConnector, connector_id))
        stored_secrets = {k: v for k, v in current.credentials.items() if k not in _RUNTIME_CREDENTIALS}
        stored_settings = dict(current.settings)
    try:
        secrets = _merge_secrets(form, stored_secrets, stored_settings)
    except ConnectorFormError as exc:
        return TestResult(ok=False, message=exc.message)
    stored = StoredConnector(
        id=None,
        kind=str(getattr(form, "kind")),  # noqa: B009
        name=form.name,
        base_url=form.url(),
        settings=form.public_values(),
        credentials=secrets,
        default_validity_days=_validity(form),
    )
    return _try(stored)


def _try(stored: StoredConnector) -> TestResult:
    try:
        ca = build_remote_ca(stored)
        return TestResult(ok=True, message=ca.check_credentials())
    except ConnectorError as exc:
        return TestResult(ok=False, message=str(exc))
