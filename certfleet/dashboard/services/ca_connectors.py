"""CA connectors for the dashboard: a thin adapter over `certfleet.ca_admin.service`, the one place connectors
are validated, stored and tested.

This module only translates: submitted values -> `parse_form`, `ConnectorFormError` -> `InputError` (message +
field), `ConnectorInUse` -> `InputError` listing every dependent certificate, and a kind's pydantic form -> the
fields the HTML form renders. It keeps the list's `ListSpec` (filter, sort, export) because that is dashboard
machinery. Secrets never come back from here: reads go through `get_connector` / `edit_form`, which omit them.
"""

from __future__ import annotations

import base64
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet.ca_admin import service as ca
from certfleet.ca_admin.forms import FORMS, KIND_LABELS, ConnectorFormBase
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.models import repo
from certfleet.models.orm import CAConnector, ConnectorStatus

# Kinds an admin can create (each has a form in ca_admin), and the tabs of the list page (plus the built-in CA).
KINDS: tuple[str, ...] = tuple(FORMS)
# Tabs of the list page: every kind the service has a form for, plus the built-in CA (listed, not creatable).
TABS: dict[str, str] = {**{k: KIND_LABELS[k] for k in FORMS}, "local": KIND_LABELS["local"]}

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
        Column("kind", "Kind", CAConnector.kind, ColType.ENUM, default=True, choices=tuple(TABS),
               render=lambda v: TABS.get(str(v), str(v))),
        Column("validity", "Certificate Validity", CAConnector.default_validity_days, ColType.NUMBER,
               render=lambda v: f"{v} days" if v else ""),
        Column("created_at", "Created Date", CAConnector.created_at, ColType.DATE),
        Column("created_by", "Created By", CAConnector.created_by),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class FormField:
    """One input of a kind's HTML form, derived from the ca_admin pydantic form (titles are the manual's)."""

    key: str
    label: str
    kind: str  # text, number, password, select, file
    required: bool
    secret: bool
    choices: tuple[str, ...] = ()
    help: str = ""


@contextmanager
def mapped_errors() -> Iterator[None]:
    """The service's errors as the dashboard's InputError (422 JSON / message on the form)."""
    try:
        yield
    except ca.ConnectorInUse as exc:
        problems: list[tuple[str | None, str]] = [
            ("certificates", f"{c.common_name} (#{c.id}, {c.status})") for c in exc.certificates
        ]
        problems += [("directory_profiles", name) for name in exc.profiles]
        raise InputError(exc.message, field=exc.field, problems=problems) from None
    except ca.ConnectorFormError as exc:
        raise InputError(exc.message, field=exc.field) from None


def label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def creatable_kind(kind: str) -> str:
    if kind not in FORMS:
        known = ", ".join(FORMS)
        raise InputError(f"CA connector kind must be one of {known}, not {kind!r}", field="kind")
    return kind


def form_fields(kind: str) -> list[FormField]:
    form_class = FORMS[creatable_kind(kind)]
    fields: list[FormField] = []
    for key, info in form_class.model_fields.items():
        if key in ("kind", "advanced", "uploaded_file_name"):
            continue
        secret = key in form_class.secret_fields
        inner = _unwrap(info.annotation)
        choices: tuple[str, ...] = ()
        if inner is bytes:
            kind_ = "file"
        elif secret or inner is SecretStr:
            kind_ = "password"
        elif typing.get_origin(inner) is Literal:
            kind_, choices = "select", tuple(str(a) for a in typing.get_args(inner))
        elif inner in (int, float):
            kind_ = "number"
        else:
            kind_ = "text"
        fields.append(
            FormField(
                key=key,
                label=info.title or key,
                kind=kind_,
                required=info.is_required() or (secret and key not in _OPTIONAL_SECRETS),
                secret=secret,
                choices=choices,
                help=info.description or "",
            )
        )
    return fields


# Secrets the service accepts empty (ACME EAB / TSIG are optional; AD CS password only for an Enterprise CA).
_OPTIONAL_SECRETS = {"eab_hmac_key", "tsig_secret", "password"}


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def parse(kind: str, data: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> ConnectorFormBase:
    values = {k: v for k, v in data.items() if k not in ("kind", "csrf_token")}
    values.update(files or {})
    with mapped_errors():
        return ca.parse_form(creatable_kind(kind), values)


def decode_files(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """API bodies carry file fields (emCA Upload File) as base64 strings."""
    out = dict(data)
    for f in form_fields(kind):
        value = out.get(f.key)
        if f.kind == "file" and isinstance(value, str) and value:
            try:
                out[f.key] = base64.b64decode(value, validate=True)
            except ValueError:
                raise InputError(f"{f.label} must be base64 in a JSON body", field=f.key) from None
    return out


def create(
    session: Session, kind: str, data: Mapping[str, Any], actor: str, files: Mapping[str, bytes] | None = None
) -> int:
    form = parse(kind, data, files)
    with mapped_errors():
        return ca.create_connector(session, form, actor=actor)


def update(
    session: Session,
    connector_id: int,
    data: Mapping[str, Any],
    actor: str,
    files: Mapping[str, bytes] | None = None,
) -> None:
    row = repo.get(session, CAConnector, connector_id)  # NotFound -> 404
    form = parse(row.kind, data, files)
    with mapped_errors():
        ca.update_connector(session, connector_id, form, actor=actor)


def disable(session: Session, connector_id: int, actor: str) -> None:
    with mapped_errors():
        ca.disable_connector(session, connector_id, actor=actor)


def enable(session: Session, connector_id: int, actor: str) -> None:
    with mapped_errors():
        ca.enable_connector(session, connector_id, actor=actor)


def delete(session: Session, connector_id: int, actor: str) -> str:
    name = ca.get_connector(session, connector_id).name
    with mapped_errors():
        ca.delete_connector(session, connector_id, actor=actor)
    return name


def check_connection(session: Session, connector_id: int) -> ca.TestResult:
    """Authenticates against the CA with the stored settings (the connectors' own timeouts); orders nothing."""
    return ca.check_connection(session, connector_id)


def detail(session: Session, connector_id: int) -> dict[str, Any]:
    """JSON of one connector: values without secrets, `secrets_set` flags."""
    return ca.get_connector(session, connector_id).model_dump(mode="json")


def default_values(kind: str) -> dict[str, Any]:
    """What an empty Create form shows: each field's default from the service's form."""
    fields = FORMS[creatable_kind(kind)].model_fields
    return {f.key: fields[f.key].default if not fields[f.key].is_required() else None for f in form_fields(kind)}


def edit_values(session: Session, connector_id: int) -> dict[str, Any]:
    """What the edit form shows: the stored values, secrets empty."""
    form = ca.edit_form(session, connector_id)
    return form.model_dump(mode="json", exclude={"kind", "advanced", *form.secret_fields})


def counts_by_kind(session: Session) -> dict[str, int]:
    rows = session.execute(select(CAConnector.kind, func.count(CAConnector.id)).group_by(CAConnector.kind)).all()
    return {str(k): int(n) for k, n in rows}
