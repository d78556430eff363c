"""What a rotation takes: a selection (certificate ids), a Batch Name or a filter, checked with the field rules.

The API, the dashboard and the CLI validate a request here before they start `rotate-batch`; the flow resolves
the same request into certificates, so every entry point accepts and refuses the same values.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, load_only, selectinload

from certfleet import fields
from certfleet.fields import InputError
from certfleet.input_model import InputModel
from certfleet.inventory.schemas import BATCH_NAME
from certfleet.models.orm import (
    AuditEvent,
    Certificate,
    CertificateStatus,
    DeploymentTarget,
    RotationItem,
    Server,
    utcnow,
)

KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
# Item states, as the summary and the API show them.
NOT_STARTED, ISSUED, DEPLOYED, ROLLED_BACK, FAILED, SKIPPED, WAITING = (
    "Not Started",
    "Issued",
    "Deployed",
    "Rolled Back",
    "Failed",
    "Skipped",
    "Waiting For Window",  # issued; deployment scheduled in Prefect for its servers' maintenance window
)


_MAX_ROW_ID = 2**63 - 1


class RotationRequest(InputModel):
    """Exactly one way of choosing: `certificate_ids`, `batch_name`, or a filter (any of `ca_connector_id`,
    `tag`, `status`, `expiring_within_days`, all of which must match). The rest tunes the run."""

    model_config = ConfigDict(extra="forbid")

    # Row ids are signed 64-bit in the database: a larger number is a 422 here, not an overflow (500) there.
    certificate_ids: list[Annotated[int, Field(ge=1, le=_MAX_ROW_ID)]] | None = Field(
        default=None, min_length=1, max_length=100_000
    )
    batch_name: Annotated[str, BATCH_NAME] | None = None
    ca_connector_id: Annotated[int, Field(ge=1, le=_MAX_ROW_ID)] | None = None
    tag: Annotated[str, fields.Tag()] | None = None
    status: CertificateStatus | None = None
    expiring_within_days: Annotated[int, Field(ge=0, le=36_500)] | None = None
    canary_per_server_type: Annotated[int, Field(ge=0, le=1000)] = 1
    failure_budget: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    ca_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    server_concurrency: Annotated[int, Field(ge=1, le=100)] = 1
    bot_start_timeout: Annotated[int, Field(ge=5, le=86_400)] = 300
    # Deploy now even to servers outside their maintenance window (audited); otherwise those wait for it.
    ignore_maintenance_windows: bool = False
    batch_key: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> RotationRequest:
        if self.batch_key is not None and not KEY.fullmatch(self.batch_key):
            raise ValueError(
                "batch_key: lowercase letters, digits and dashes, at most 80, starting with a letter or digit"
            )
        filters = [self.ca_connector_id, self.tag, self.status, self.expiring_within_days]
        ways = [self.certificate_ids is not None, self.batch_name is not None, any(f is not None for f in filters)]
        if sum(ways) == 0 and self.batch_key is not None:
            return self  # continue the batch with that key: its certificates are already chosen
        if sum(ways) != 1:
            raise ValueError(
                "choose the certificates one way: certificate_ids, batch_name, or a filter "
                "(ca_connector_id, tag, status, expiring_within_days); or give only the batch_key of a batch "
                "to continue"
            )
        return self

    @property
    def chooses(self) -> bool:
        """False for a request that only names a batch to continue."""
        filters = [self.ca_connector_id, self.tag, self.status, self.expiring_within_days]
        return self.certificate_ids is not None or self.batch_name is not None or any(f is not None for f in filters)

    def flow_parameters(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _filtered(request: RotationRequest) -> Select[int, list[str]]:
    query = select(Certificate.id, Certificate.tags).order_by(Certificate.id)
    if request.certificate_ids is not None:
        return query.where(Certificate.id.in_(request.certificate_ids))
    if request.batch_name is not None:
        return query.where(Certificate.batch_name == request.batch_name)
    if request.ca_connector_id is not None:
        query = query.where(Certificate.ca_connector_id == request.ca_connector_id)
    if request.status is not None:
        query = query.where(Certificate.status == request.status)
    if request.expiring_within_days is not None:
        query = query.where(
            Certificate.expires_on.is_not(None),
            Certificate.expires_on <= utcnow() + timedelta(days=request.expiring_within_days),
        )
    return query


def selected_ids(s: Session, request: RotationRequest) -> list[int]:
    """The ids of the certificates the request names, in id order (plain ids: a batch can be large)."""
    if not request.chooses:
        return []  # never "everything": a request without a choice only continues a batch
    rows = s.execute(_filtered(request))
    return [cid for cid, tags in rows if request.tag is None or request.tag in (tags or [])]


# The certificate's columns `skip_reason` and the plan read: the rest (its key, decrypted on load, and chain) is not
# loaded for a batch of thousands.
_PLANNED_COLUMNS = (Certificate.id, Certificate.status, Certificate.serial_number, Certificate.ca_connector_id)


def load_certificates(s: Session, ids: list[int]) -> list[Certificate]:
    """Those certificates with their targets, servers and bots in four queries (skip_reason reads them all)."""
    loads = selectinload(Certificate.targets).selectinload(DeploymentTarget.server).selectinload(Server.bot)
    query = select(Certificate).options(load_only(*_PLANNED_COLUMNS), loads)
    return list(s.scalars(query.where(Certificate.id.in_(ids)).order_by(Certificate.id)))


def select_certificates(s: Session, request: RotationRequest) -> list[Certificate]:
    """The certificates the request names, in id order (ids that do not exist are refused by the caller)."""
    return load_certificates(s, selected_ids(s, request))


def missing_ids(s: Session, request: RotationRequest) -> list[int]:
    if request.certificate_ids is None:
        return []
    found = set(s.scalars(select(Certificate.id).where(Certificate.id.in_(request.certificate_ids))))
    return sorted(set(request.certificate_ids) - found)


def skip_reason(cert: Certificate) -> str | None:
    """Why a certificate cannot be rotated at all (then the batch lists it as Skipped and moves on)."""
    if cert.status is CertificateStatus.IGNORED:
        return "the certificate is Ignored"
    if cert.status is CertificateStatus.REVOKED and cert.serial_number is None:
        return "the certificate is Revoked"
    if cert.ca_connector_id is None:
        return "no CA connector is set: choose one first"
    if not cert.targets:
        return "no deployment targets: add one first"
    bots: dict[int, str] = {}
    for target in cert.targets:
        server = target.server
        if server.bot is None:
            return f"server {server.description} ({server.host}) is mapped to no bot: map it to a bot first"
        bots[server.bot.id] = server.bot.name
    if len(bots) > 1:
        return (
            f"its targets are on servers of several bots ({', '.join(sorted(bots.values()))}): rotate-batch deploys "
            "a certificate from one bot; give each bot's servers their own certificate"
        )
    return None


def items_of(s: Session, batch_key: str) -> list[RotationItem]:
    return list(
        s.scalars(select(RotationItem).where(RotationItem.batch_key == batch_key).order_by(RotationItem.position))
    )


def summary_of(s: Session, batch_key: str) -> dict[str, Any]:
    """Per state and per server: what the API and the CLI show about a batch."""
    items = items_of(s, batch_key)
    states: dict[str, int] = {}
    servers: dict[str, dict[str, int]] = {}
    for item in items:
        states[item.state] = states.get(item.state, 0) + 1
        per = servers.setdefault(item.server_label or "(no server)", {})
        per[item.state] = per.get(item.state, 0) + 1
    return {
        "batch_key": batch_key,
        "certificates": len(items),
        "states": states,
        "servers": servers,
        "items": [
            {
                "certificate_id": i.certificate_id,
                "server": i.server_label,
                "canary": i.canary,
                "state": i.state,
                "serial_number": i.issued_serial,
                "reason": i.reason,
            }
            for i in items
        ],
    }


FLOW = "rotate-batch"


def prepare(s: Session, request: RotationRequest) -> tuple[RotationRequest, int]:
    """Before a run is started (API, dashboard, CLI): refuse what the flow would refuse, with the field, and give
    the batch a key (a new one unless the request continues a batch). Returns the request to start and how many
    certificates it takes."""
    if request.batch_key is not None and items_of(s, request.batch_key):
        return request, len(items_of(s, request.batch_key))  # a re-run continues with the batch's own items
    if not request.chooses:
        raise InputError(f"no batch {request.batch_key} to continue", field="batch_key")
    missing = missing_ids(s, request)
    if missing:
        raise InputError(f"no certificate {', '.join(map(str, missing))}", field="certificate_ids")
    certs = select_certificates(s, request)
    if not certs:
        raise InputError("no certificate matches the selection")
    if all(skip_reason(c) for c in certs):
        raise InputError(f"none of the {len(certs)} certificate(s) can be rotated: {skip_reason(certs[0])}")
    key = request.batch_key or f"rot-{uuid.uuid4().hex[:12]}"
    return request.model_copy(update={"batch_key": key}), len(certs)


def parse_request(data: dict[str, Any]) -> RotationRequest:
    """A request from a form or the CLI: pydantic's refusal as an InputError naming the field."""
    from pydantic import ValidationError

    try:
        return RotationRequest.model_validate(data)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]) or None, e["msg"]) for e in exc.errors()]
        field, message = problems[0]
        raise InputError(f"{field}: {message}" if field else message, field=field, problems=problems) from None


def audit_start(
    s: Session, batch_key: str, count: int, actor: str, run_name: str, *, ignore_windows: bool = False
) -> None:
    """One audit event for the batch (its items are written by the run): object RotationBatch, id its key; and
    one more when it deploys ignoring the servers' maintenance windows."""
    s.add(
        AuditEvent(
            actor=actor,
            action="start-rotate-batch",
            object_type="RotationBatch",
            object_id=batch_key,
            outcome="success",
            detail=f"{count} certificate(s), run {run_name}",
        )
    )
    if ignore_windows:
        audit_ignoring_windows(s, batch_key, actor, f"run {run_name}")


IGNORING_WINDOWS = "rotate-batch-ignoring-maintenance-windows"


def audit_ignoring_windows(s: Session, batch_key: str, actor: str, detail: str) -> None:
    s.add(
        AuditEvent(
            actor=actor,
            action=IGNORING_WINDOWS,
            object_type="RotationBatch",
            object_id=batch_key,
            outcome="success",
            detail=f"deploy now, whatever the servers' maintenance windows say; {detail}",
        )
    )
