"""The dashboard's door to the certificate inventory (`certfleet.inventory.service`) and to discovery runs.

The Select Action menu (Configure, Download, Details, View, Ignore/Unignore, Delete), Import and private roots
all go through the inventory service, so the API and the pages act exactly as the service does. This module
only translates: form strings to the service's typed requests, and the service's errors to `InputError`
(`repo.NotFound` passes through as 404). Discovery runs are started in Prefect with `start_flow`, after the
checks that would otherwise make a red run (bot purpose and state, target and port syntax).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet import fields
from certfleet.bots.routing import NoRoute, file_scan_route
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.flows import FlowRunRef, start_flow
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.deployments.names import bot_queue
from certfleet.discovery.targets import (
    MAX_TARGET_ENTRIES,
    Target,
    TargetError,
    check_endpoint_count,
    count_endpoints,
    parse_ports,
    parse_target,
    split_entries,
)
from certfleet.input_model import InputModel
from certfleet.inventory import service
from certfleet.inventory.schemas import (
    CertificateConfiguration,
    CertificateDetails,
    CertificateText,
    ConfigurationRejected,
    ConfigureRequest,
    Deleted,
    DownloadFormat,
    DownloadRequest,
    DownloadResult,
    ImportReport,
    InventoryError,
    PrivateRootView,
    StatusChange,
    TargetInput,
    UploadedFile,
)
from certfleet.jobs.discovery import DiscoveryError, discovery_bot
from certfleet.models import repo
from certfleet.models.orm import Bot, BotPurpose, Certificate, DiscoveryRun, Server, ServerConnection
from certfleet.servers.paths import PathRefused, check_path

MAX_IMPORT_FILES = 50
MAX_UPLOAD_BYTES = service.MAX_UPLOAD_BYTES  # a bigger file is read only this far: the service refuses it


@contextmanager
def inventory_errors() -> Iterator[None]:
    """The service's refusals as the dashboard's InputError (422 JSON with every problem, or a form message)."""
    try:
        yield
    except ConfigurationRejected as exc:
        raise InputError(str(exc), field=exc.field, problems=list(exc.problems)) from None
    except InventoryError as exc:
        raise InputError(str(exc), field=exc.field) from None
    except DiscoveryError as exc:
        raise InputError(str(exc), field="bot_id") from None


def _validation_problems(exc: ValidationError, prefix: str = "") -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        name = f"{prefix}{where}" if where else None
        problems.append((name, f"{(name or 'input').replace('_', ' ')}: {error['msg']}"))
    return problems


def validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = _validation_problems(exc)
        raise InputError("; ".join(m for _, m in problems), field=problems[0][0], problems=problems) from None


# --- Configure ----------------------------------------------------------------------------------------------


def current_targets(session: Session, certificate_id: int) -> list[TargetInput]:
    cert = repo.get(session, Certificate, certificate_id)
    return [
        TargetInput(
            server_id=t.server_id,
            port=t.port,
            server_name=t.server_name,
            cert_path=t.cert_path,
            key_path=t.key_path,
            chain_path=t.chain_path,
        )
        for t in cert.targets
    ]


def configure(
    session: Session, certificate_id: int, request: ConfigureRequest, *, actor: str
) -> CertificateConfiguration:
    with inventory_errors():
        return service.configure(session, certificate_id, request, actor=actor)


def check_configuration(
    session: Session, certificate_id: int, request: ConfigureRequest
) -> list[tuple[str | None, str]]:
    return service.check_configuration(session, certificate_id, request)


def configuration(session: Session, certificate_id: int) -> CertificateConfiguration:
    return service.get_configuration(session, certificate_id)


def configure_request_from_form(session: Session, certificate_id: int, form: dict[str, str]) -> ConfigureRequest:
    """The Configure form (strings) as the service's request; the certificate keeps its targets."""
    data: dict[str, Any] = {
        "ca_connector_id": form.get("ca_connector_id") or None,
        "provisioning_bot_id": form.get("provisioning_bot_id") or None,
        "key_spec": form.get("key_spec") or "rsa2048",
        "validity_days": form.get("validity_days") or None,
        "renew_before_fraction": form.get("renew_before_fraction") or None,
        "organization": form.get("organization") or None,
        "tags": fields.split_form_tags(form.get("tags") or ""),
        "batch_name": form.get("batch_name") or None,
        "targets": [t.model_dump() for t in current_targets(session, certificate_id)],
    }
    if form.get("renew_before_days"):  # empty: the CA connector's default (else 30)
        data["renew_before_days"] = form["renew_before_days"]
    if data["ca_connector_id"] is None:
        raise InputError("choose the CA connector that issues this certificate", field="ca_connector_id")
    if data["provisioning_bot_id"] is None:
        raise InputError("choose the bot that provisions this certificate", field="provisioning_bot_id")
    request: ConfigureRequest = validated(ConfigureRequest, data)
    return request


# --- Download, Details, View --------------------------------------------------------------------------------


def download_format(value: str) -> DownloadFormat:
    aliases = {"p7b": DownloadFormat.PKCS7, "p12": DownloadFormat.PKCS12, "pfx": DownloadFormat.PKCS12}
    try:
        return aliases.get(value.strip().lower()) or DownloadFormat(value.strip().lower())
    except ValueError:
        raise InputError(
            f"download format {value!r} is not one of pem, der, pkcs7 (p7b), pkcs12 (pfx)", field="format"
        ) from None


def download(
    session: Session,
    certificate_id: int,
    fmt: str,
    *,
    actor: str,
    include_chain: bool = True,
    password: str | None = None,
) -> DownloadResult:
    request = DownloadRequest(
        format=download_format(fmt),
        include_chain=include_chain,
        password=SecretStr(password) if password else None,
    )
    with inventory_errors():
        return service.download(session, certificate_id, request, actor=actor)


def details(session: Session, certificate_id: int) -> CertificateDetails:
    with inventory_errors():
        return service.details(session, certificate_id)


def details_or_none(session: Session, certificate_id: int) -> CertificateDetails | None:
    """None before issuance (no file yet): the detail page says so instead of failing."""
    cert = repo.get(session, Certificate, certificate_id)
    return details(session, certificate_id) if cert.pem_chain else None


def view(session: Session, certificate_id: int) -> CertificateText:
    with inventory_errors():
        return service.view(session, certificate_id)


# --- Ignore, Unignore, Delete -------------------------------------------------------------------------------


def ignore(session: Session, certificate_id: int, *, actor: str, reason: str | None = None) -> StatusChange:
    with inventory_errors():
        return service.ignore(session, certificate_id, actor=actor, reason=reason)


def unignore(session: Session, certificate_id: int, *, actor: str) -> StatusChange:
    with inventory_errors():
        return service.unignore(session, certificate_id, actor=actor)


def delete(session: Session, certificate_id: int, *, actor: str) -> Deleted:
    with inventory_errors():
        return service.delete(session, certificate_id, actor=actor)


# --- Import -------------------------------------------------------------------------------------------------


def import_files(
    files: Sequence[tuple[str, bytes]],
    *,
    actor: str,
    password: str | None = None,
    bot_id: int | None = None,
    key_password: str | None = None,
) -> ImportReport:
    """Each (file name, content) on its own; one password serves every PKCS#12 file and every Java keystore
    (store password) of the upload, one key password every keystore's key entries (the store password when
    not given)."""
    if not files:
        raise InputError("choose at least one certificate file to import", field="files")
    if len(files) > MAX_IMPORT_FILES:
        raise InputError(f"import at most {MAX_IMPORT_FILES} files at a time", field="files")
    secret = SecretStr(password) if password else None
    key_secret = SecretStr(key_password) if key_password else None
    uploads = [
        UploadedFile(filename=name or "upload", content=content, password=secret, key_password=key_secret)
        for name, content in files
    ]
    return service.import_files(uploads, actor=actor, bot_id=bot_id)


# --- Private roots ------------------------------------------------------------------------------------------


def register_private_root(session: Session, name: str, content: bytes, *, actor: str) -> PrivateRootView:
    with inventory_errors():
        return service.register_private_root(session, name, content, actor=actor)


def list_private_roots(session: Session) -> list[PrivateRootView]:
    return service.list_private_roots(session)


def remove_private_root(session: Session, root_id: int, *, actor: str) -> None:
    service.remove_private_root(session, root_id, actor=actor)


def hold_to_public_rules(session: Session, root_id: int, apply: bool, *, actor: str) -> PrivateRootView:
    return service.hold_to_public_rules(session, root_id, apply, actor=actor)


# --- Discovery runs -----------------------------------------------------------------------------------------


class DiscoverRequest(InputModel):
    """The Discover form: what to scan, as whom, and how hard (limits as the scanner's ScanOptions)."""

    targets: list[str] = Field(
        default_factory=list,
        description="hosts, IPs, CIDR ranges, address ranges, host:port, name@ip; the registered servers when empty",
    )
    ports: str = Field(default="443", description='e.g. "443,8443,9000-9010"')
    sni_names: list[str] = Field(
        default_factory=list, description="names to send as SNI to each address or range target (virtual hosts)"
    )
    bot_id: int | None = Field(default=None, description="a bot whose purpose includes Discovery; the local bot")
    concurrency: int = Field(default=256, ge=1, le=20000)
    connect_timeout: float = Field(default=3.0, gt=0, le=120)
    handshake_timeout: float = Field(default=5.0, gt=0, le=120)

    @field_validator("targets", "sni_names", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_entries([value])
        return value


def discovery_targets(request: DiscoverRequest) -> list[str]:
    """The flow's target list: each SNI name is sent to every address target (host names send their own)."""
    entries = split_entries(request.targets)
    names = split_entries(request.sni_names)
    try:
        parsed = [parse_target(entry) for entry in entries]  # syntax only: names resolve in the run
    except TargetError as exc:
        raise InputError(str(exc), field="targets") from None
    for name in names:
        try:
            named = parse_target(name)
        except TargetError:
            named = None
        if named is None or named.addresses is not None or named.first is not None or named.port is not None:
            raise InputError(f"SNI name {name!r} must be a host name such as www.example.com", field="sni_names")
    if names and not entries:
        raise InputError("SNI names are sent to address targets: give the addresses to scan too", field="sni_names")
    _check_size(request, parsed, len(names))
    out: list[str] = []
    for entry, target in zip(entries, parsed, strict=True):
        by_address = target.addresses is not None or target.first is not None
        if names and by_address and "@" not in entry:
            out += [f"{name}@{entry}" for name in names]
        else:
            out.append(entry)
    return out


def _check_size(request: DiscoverRequest, parsed: list[Target], sni_names: int) -> None:
    """Bound the request by what it expands to, computed before SNI names are multiplied out."""
    field = "sni_names" if sni_names else "targets"
    by_address = [t.name is None and (t.addresses is not None or t.first is not None) for t in parsed]
    entries = sum(sni_names if sni_names and multiplied else 1 for multiplied in by_address)
    if entries > MAX_TARGET_ENTRIES:
        how = f" (each address target once per SNI name: {sni_names:,})" if sni_names else ""
        raise InputError(
            f"the request makes {entries:,} scan entries{how}, more than the limit of {MAX_TARGET_ENTRIES:,}; "
            "give fewer targets or SNI names, or an address range instead of single addresses",
            field=field,
        )
    try:
        port_count = len(parse_ports(request.ports))
    except TargetError as exc:
        raise InputError(str(exc), field="ports") from None
    try:
        check_endpoint_count(count_endpoints(parsed, port_count, sni_names=sni_names))
    except TargetError as exc:
        raise InputError(str(exc), field=field) from None


def start_discovery(session: Session, request: DiscoverRequest, *, actor: str) -> FlowRunRef:
    try:
        parse_ports(request.ports)
    except TargetError as exc:
        raise InputError(str(exc), field="ports") from None
    with inventory_errors():
        bot = discovery_bot(session, request.bot_id)
    targets = discovery_targets(request)
    parameters: dict[str, Any] = {
        "targets": targets or None,
        "ports": request.ports,
        "bot_id": bot.id,
        "concurrency": request.concurrency,
        "connect_timeout": request.connect_timeout,
        "handshake_timeout": request.handshake_timeout,
    }
    run = start_flow("discover-endpoints", parameters, queue=bot_queue(bot.id))  # it runs on the chosen bot
    scope = f"{len(targets)} target(s)" if targets else "the registered servers"
    repo.audit(session, actor=actor, action="start-discover-endpoints", obj=bot, detail=f"{scope}; {run.name}")
    return run


def start_file_scan(
    session: Session, server_id: int, *, actor: str, bot_id: int | None = None, extra_paths: Sequence[str] = ()
) -> FlowRunRef:
    """Scan server files: its key store folder, installation path and target folders (plus `extra_paths`)."""
    server = repo.get(session, Server, server_id)
    for path in extra_paths:  # the one path rule (certfleet.servers.paths); never a system location
        try:
            check_path(path, "folder", directory=True, windows=server.connection is ServerConnection.SMB)
        except PathRefused as exc:
            raise InputError(str(exc), field="extra_paths") from None
    try:
        route = file_scan_route(session, server.id, bot_id)
    except NoRoute as exc:
        raise InputError(str(exc), field="bot_id") from None
    parameters: dict[str, Any] = {
        "server_ids": [server.id],
        "bot_id": route.bot_id,
        "extra_paths": list(extra_paths) or None,
    }
    run = start_flow("discover-server-files", parameters, queue=route.queue)
    repo.audit(session, actor=actor, action="start-discover-server-files", obj=server, detail=run.name)
    return run


def discovery_bots(session: Session) -> list[tuple[int, str]]:
    """Bots that may discover, for the Discover form."""
    rows = session.execute(
        select(Bot.id, Bot.name).where(Bot.purpose != BotPurpose.PROVISIONING).order_by(Bot.name)
    ).all()
    return [(i, n) for i, n in rows]


DISCOVERY_RUNS = ListSpec(
    name="discovery_runs",
    title="Discovery Runs",
    base=lambda: select(DiscoveryRun.id).outerjoin(Bot, Bot.id == DiscoveryRun.bot_id),
    pk=DiscoveryRun.id,
    count_base=lambda: select(DiscoveryRun.id),
    default_sort="-id",
    columns=(
        Column("id", "Run", DiscoveryRun.id, ColType.NUMBER, default=True, width=8),
        Column("kind", "Kind", DiscoveryRun.kind, ColType.ENUM, default=True, choices=("tls", "files"), width=8),
        Column("bot", "Bot", Bot.name, default=True),
        Column(
            "status",
            "Status",
            DiscoveryRun.status,
            ColType.ENUM,
            default=True,
            choices=("Running", "Completed", "Failed"),
            width=12,
        ),
        Column("endpoints_total", "Endpoints", DiscoveryRun.endpoints_total, ColType.NUMBER, default=True, width=10),
        Column("endpoints_answered", "Answered", DiscoveryRun.endpoints_answered, ColType.NUMBER, default=True),
        Column("certificates_found", "Certificates", DiscoveryRun.certificates_found, ColType.NUMBER, default=True),
        Column("certificates_new", "New", DiscoveryRun.certificates_new, ColType.NUMBER, default=True, width=8),
        Column("started_at", "Started", DiscoveryRun.started_at, ColType.DATE, default=True),
        Column("finished_at", "Finished", DiscoveryRun.finished_at, ColType.DATE, default=True),
        Column("flow_run_id", "Prefect Run", DiscoveryRun.flow_run_id, width=38),
    ),
)
