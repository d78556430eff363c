"""Certificate requests from a spreadsheet: one New Certificate (and its targets) per row, with a per-row report.

Header row, any order, names matched exactly; only Common Name is required:

| column | what it holds (the New Certificate form's rules) |
| --- | --- |
| Common Name | the certificate's common name |
| SANs | subject alternative names, separated by spaces or commas |
| Key Type | rsa2048, rsa3072, rsa4096, ec-p256, ec-p384 (default rsa2048) |
| CA Connector | a CA connector's name |
| Servers | targets separated by `;`: `SERVER:PORT` or `SERVER:PORT@SNI`; SERVER: a Description or address |
| Batch Name | the batch the certificate belongs to (rotate-batch takes it) |
| Renew Before Days, Renew Before Fraction, Validity Days | the renewal policy and validity |
| Tags, Organization | labels (tags comma separated, as the form takes them) |

Each row goes through the same services as the form (`create_certificate`, `add_target`) in a savepoint of its
own. Nothing is stored from a file with a failing row unless the caller accepts the good rows (`accept_good`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet import tabular
from certfleet.dashboard.services.certificates import (
    CertificateFields,
    NewCertificate,
    TargetFields,
    add_target,
    create_certificate,
)
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import CAConnector, Certificate, Server

MAX_ROWS = 10_000
MAX_TARGETS_PER_ROW = 100
# Column -> the form field it fills (for the report: a problem names the column the user wrote).
COLUMNS = {
    "Common Name": "common_name",
    "SANs": "sans",
    "Key Type": "key_spec",
    "CA Connector": "ca_connector_id",
    "Servers": "server_id",
    "Batch Name": "batch_name",
    "Renew Before Days": "renew_before_days",
    "Renew Before Fraction": "renew_before_fraction",
    "Validity Days": "validity_days",
    "Tags": "tags",
    "Organization": "organization",
}
_COLUMN_OF = {form_field: column for column, form_field in COLUMNS.items()} | {
    "port": "Servers",
    "server_name": "Servers",
}


@dataclass
class RowResult:
    row: int  # as a spreadsheet numbers it: the header is row 1
    common_name: str
    problems: list[str] = field(default_factory=list)
    certificate_id: int | None = None


@dataclass
class RequestReport:
    rows: list[RowResult]
    stored: int = 0

    @property
    def bad(self) -> list[RowResult]:
        return [r for r in self.rows if r.problems]

    def as_json(self) -> dict[str, object]:
        return {
            "rows": len(self.rows),
            "good": len(self.rows) - len(self.bad),
            "failed": len(self.bad),
            "stored": self.stored,
            "certificate_ids": [r.certificate_id for r in self.rows if r.certificate_id is not None],
            "problems": [{"row": r.row, "common_name": r.common_name, "problems": r.problems} for r in self.bad],
        }


@dataclass(frozen=True)
class _Target:
    server_id: int
    port: str
    server_name: str | None


class _Resolver:
    """Names in the file -> ids: CA connectors by name, servers by Description or address (read once)."""

    def __init__(self, session: Session) -> None:
        self.connectors = {name: ident for ident, name in session.execute(select(CAConnector.id, CAConnector.name))}
        self.servers: dict[str, set[int]] = {}
        for ident, description, host in session.execute(select(Server.id, Server.description, Server.host)):
            self.servers.setdefault(description, set()).add(ident)
            self.servers.setdefault(host, set()).add(ident)

    def connector(self, name: str) -> int | None:
        if name == "":
            return None
        if name not in self.connectors:
            known = ", ".join(sorted(self.connectors)) or "none yet"
            raise InputError(f"CA Connector: no CA connector is named {name!r} (known: {known})", field="CA Connector")
        return self.connectors[name]

    def targets(self, cell: str) -> list[_Target]:
        entries = [e for e in cell.split(";") if e != ""]
        if len(entries) > MAX_TARGETS_PER_ROW:
            raise InputError(f"Servers: at most {MAX_TARGETS_PER_ROW} targets per row", field="Servers")
        return [self._target(entry) for entry in entries]

    def _target(self, entry: str) -> _Target:
        where, at, sni = entry.rpartition("@") if "@" in entry else (entry, "", "")
        server, colon, port = where.rpartition(":")
        if not colon or not server:
            raise InputError(
                f"Servers: {entry!r} is not SERVER:PORT or SERVER:PORT@SNI-NAME (entries separated by ';')",
                field="Servers",
            )
        ids = self.servers.get(server, set())
        if not ids:
            raise InputError(f"Servers: no server has the description or address {server!r}", field="Servers")
        if len(ids) > 1:
            listed = ", ".join(str(i) for i in sorted(ids))
            raise InputError(
                f"Servers: {server!r} names {len(ids)} servers (ids {listed}): use the address", field="Servers"
            )
        return _Target(next(iter(ids)), port, sni if at else None)


def _value(record: dict[str, str], column: str) -> str | None:
    value = record.get(column, "")
    return None if value == "" else value


def _request(record: dict[str, str], resolver: _Resolver) -> tuple[NewCertificate, list[_Target]]:
    fields = CertificateFields(
        ca_connector_id=resolver.connector(record.get("CA Connector", "")),
        key_spec=record.get("Key Type") or "rsa2048",
        validity_days=_value(record, "Validity Days"),
        renew_before_days=_value(record, "Renew Before Days"),
        renew_before_fraction=_value(record, "Renew Before Fraction"),
        organization=_value(record, "Organization"),
        tags=_value(record, "Tags"),
        batch_name=_value(record, "Batch Name"),
    )
    new = NewCertificate(common_name=record.get("Common Name", ""), sans=_value(record, "SANs"), fields=fields)
    return new, resolver.targets(record.get("Servers", ""))


def _problems(exc: InputError) -> list[str]:
    found = exc.problems or [(exc.field, exc.message)]
    out = []
    for form_field, message in found:
        column = _COLUMN_OF.get(form_field or "", form_field)
        out.append(message if column is None or message.startswith(f"{column}:") else f"{column}: {message}")
    return out


def read_requests(data: bytes, filename: str) -> tabular.Table:
    table = tabular.read_table(data, filename, max_rows=MAX_ROWS)
    unknown = [c for c in table.columns if c not in COLUMNS]
    if unknown:
        raise InputError(
            f"file: unknown column {', '.join(repr(c) for c in unknown)} (columns: {', '.join(COLUMNS)})",
            field="file",
        )
    if "Common Name" not in table.columns:
        raise InputError("file: no column 'Common Name' in the header row", field="file")
    return table


def import_requests(session: Session, data: bytes, filename: str, *, accept_good: bool, actor: str) -> RequestReport:
    """Create a certificate per good row; all of them, or (with `accept_good`) the good ones, or nothing."""
    table = read_requests(data, filename)
    resolver = _Resolver(session)
    report = RequestReport([])
    whole_file = session.begin_nested()  # each row is tried for real (same services as the form), then kept or not
    seen: dict[tuple[str, ...], int] = {}
    for number, record in table.rows:
        result = RowResult(number, record.get("Common Name", ""))
        report.rows.append(result)
        same = tuple(record.get(c, "") for c in COLUMNS)
        if same in seen:
            result.problems.append(f"the same request as row {seen[same]}")
            continue
        seen[same] = number
        savepoint = session.begin_nested()
        try:
            new, targets = _request(record, resolver)
            cert = create_certificate(session, new, actor)
            for target in targets:
                add_target(session, cert.id, TargetFields(target.server_id, target.port, target.server_name), actor)
        except InputError as exc:
            savepoint.rollback()
            result.problems.extend(_problems(exc))
            continue
        savepoint.commit()
        result.certificate_id = cert.id
    if report.bad and not accept_good:
        whole_file.rollback()
        for result in report.rows:
            result.certificate_id = None
        return report
    whole_file.commit()
    report.stored = sum(1 for r in report.rows if r.certificate_id is not None)
    if report.stored:
        first = next(r.certificate_id for r in report.rows if r.certificate_id is not None)
        detail = f"{filename}: {report.stored} certificates requested, {len(report.bad)} rows refused"
        repo.audit(
            session,
            actor=actor,
            action="import-certificate-requests",
            obj=repo.get(session, Certificate, first),
            detail=detail,
        )
    return report
