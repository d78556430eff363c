"""The certificate inventory's actions: the Provisioning Certificates page's Select Action menu, import, and
the private roots that make a chain "Private and known".

Every function takes the caller's session first (the dashboard's request session, or
`certfleet.models.db.session_scope()` elsewhere), never commits, audits every change, and raises:

- `repo.NotFound` when an id names no row (HTTP 404);
- `InventoryError` (its `field` names the input) for input it cannot act on (HTTP 422);
- `ConfigurationRejected` (an InventoryError) with every reason a configuration cannot work.

Messages never hold secrets (passwords, keys). The API:

    configure(session, certificate_id, ConfigureRequest, actor=) -> CertificateConfiguration
        Save CA connector, provisioning bot, targets, key parameters and renewal policy. Refuses (and saves
        nothing) when the connector is disabled, the bot cannot provision or is stopped, a server is missing,
        unreachable, mapped to another bot or has no connection certfleet supports, a file path is missing
        or relative, the key type is unknown, the validity is too long for a public CA, the renewal window
        is not shorter than the validity, or the certificate's names cannot be put in a request.
    check_configuration(session, certificate_id, ConfigureRequest) -> list[(field, message)]
        The same checks without saving (for forms that validate as the user types).
    get_configuration(session, certificate_id) -> CertificateConfiguration
    download(session, certificate_id, DownloadRequest, actor=) -> DownloadResult
        PEM (leaf + chain), DER (leaf), PKCS#7 (chain, .p7b) or PKCS#12 (key + chain, password of 8+
        characters, only when certfleet holds the private key).
    details(session, certificate_id) -> CertificateDetails
        Issuer, validity, key size, serial, SHA-1/SHA-256 thumbprints, SANs, key usage, extended key usage,
        basic constraints, AIA, CRL distribution points, the chain, every location and its status.
    view(session, certificate_id) -> CertificateText      the decoded X.509 (`openssl x509 -text` style)
    ignore(session, certificate_id, actor=, reason=None) -> StatusChange
    unignore(session, certificate_id, actor=) -> StatusChange
    delete(session, certificate_id, actor=) -> Deleted
        Removes the row, its locations, targets and order history. A certificate still served is found
        again by the next discovery run; Ignore keeps it out for good.
    import_files([UploadedFile], actor=, bot_id=None) -> ImportReport
        PEM, DER, PKCS#7, PKCS#12 (+ password), JKS and JCEKS (+ store password, optional key password; one
        outcome per entry); one outcome per file with a reason for each bad one (`ImportReport.http_status`).
        A private key in the file is stored (encrypted) when it belongs to the certificate. Runs its own
        transactions (bulk recording), so it takes no session.
    register_private_root(session, name, content, actor=) -> PrivateRootView
    list_private_roots(session) -> [PrivateRootView]
    remove_private_root(session, root_id, actor=) -> None
    hold_to_public_rules(session, root_id, apply, actor=) -> PrivateRootView
        An admin's choice: chains to this private root are held to the public CA rules (398-day limit).
    reclassify(session) -> int      re-derive CA type, trust anchor, vulnerable and usage for every certificate
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet import fields
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.inventory.aia import complete_from_aia
from certfleet.inventory.analysis import analyze, thumbprint
from certfleet.inventory.chains import store_facts
from certfleet.inventory.record import Sighting, forget_trust_store, record, trust_store
from certfleet.inventory.schemas import (
    IGNORE_REASON,
    CertificateConfiguration,
    CertificateDetails,
    CertificateText,
    ChainEntry,
    ConfigurationRejected,
    ConfigureRequest,
    Deleted,
    DownloadFormat,
    DownloadRequest,
    DownloadResult,
    ImportOutcome,
    ImportReport,
    InventoryError,
    LocationView,
    PrivateRootView,
    StatusChange,
    TargetView,
    UploadedFile,
)
from certfleet.inventory.usage import target_problem
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotPurpose,
    BotStatus,
    CAConnector,
    Certificate,
    CertificateLocation,
    CertificateStatus,
    ConnectorStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    DeploymentType,
    Order,
    OrderState,
    PrivateRoot,
    Server,
    ServerStatus,
    utcnow,
)
from certfleet.pki import bundle
from certfleet.pki.csr import build_csr
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import (
    KeySpec,
    PrivateKey,
    generate_private_key,
    key_spec_problem,
    load_private_key,
    private_key_to_pem,
)
from certfleet.pki.keystore import is_java_keystore, load_java_keystore
from certfleet.pki.parse import certificate_text, describe, load_material
from certfleet.pki.policy import policy_outcomes
from certfleet.pki.usage import classify
from certfleet.settings import get_settings

PUBLIC_CA_KINDS = frozenset({"acme", "digicert", "emsign"})  # CAs whose TLS certificates browsers trust
PUBLIC_MAX_VALIDITY_DAYS = 398
MIN_PKCS12_PASSWORD = 8
MAX_UPLOAD_BYTES = 1024 * 1024
_OPEN_ORDER_STATES = (OrderState.CREATED, OrderState.SUBMITTED, OrderState.PENDING)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


# --- Configure ----------------------------------------------------------------------------------------------


def check_configuration(
    session: Session, certificate_id: int, request: ConfigureRequest
) -> list[tuple[str | None, str]]:
    """Every reason `request` cannot work for this certificate, as (input name, message); empty when it can."""
    cert = repo.get(session, Certificate, certificate_id)
    problems: list[tuple[str | None, str]] = []
    if cert.status is CertificateStatus.IGNORED:
        problems.append((None, f"certificate {cert.id} is ignored; un-ignore it before configuring provisioning"))

    connector = session.get(CAConnector, request.ca_connector_id)
    if connector is None:
        problems.append(("ca_connector_id", f"CA connector {request.ca_connector_id} does not exist"))
    elif connector.status is not ConnectorStatus.ACTIVE:
        problems.append(
            ("ca_connector_id", f"CA connector {connector.name!r} is disabled: enable it or choose another")
        )

    bot = session.get(Bot, request.provisioning_bot_id)
    if bot is None:
        problems.append(("provisioning_bot_id", f"bot {request.provisioning_bot_id} does not exist"))
    elif bot.purpose is BotPurpose.DISCOVERY:
        problems.append(
            (
                "provisioning_bot_id",
                f"bot {bot.name!r} only discovers; choose a bot whose purpose includes Provisioning",
            )
        )
    elif bot.status in (BotStatus.STOPPED, BotStatus.INACTIVE):
        problems.append(("provisioning_bot_id", f"bot {bot.name!r} is {bot.status.value}: start it or choose another"))

    key_problem = key_spec_problem(request.key_spec)
    if key_problem is not None:
        problems.append(("key_spec", key_problem))

    validity = request.validity_days or (connector.default_validity_days if connector else None)
    if connector is not None and connector.kind in PUBLIC_CA_KINDS and (validity or 0) > PUBLIC_MAX_VALIDITY_DAYS:
        problems.append(
            (
                "validity_days",
                f"{connector.name!r} is a public CA: it issues TLS certificates for at most "
                f"{PUBLIC_MAX_VALIDITY_DAYS} days, not {validity}",
            )
        )
    renew_before = renew_before_days(request, connector)
    if validity is not None and renew_before >= validity:
        problems.append(
            (
                "renew_before_days",
                f"renewing {renew_before} days before expiry of a {validity}-day certificate would "
                f"renew it as soon as it is issued; use fewer than {validity} days",
            )
        )

    try:  # the names must fit in a request; an EC key is generated in a fraction of a millisecond
        build_csr(generate_private_key(KeySpec(algorithm="ec", size=256)), cert.common_name, cert.sans)
    except CertificateFormatError as exc:
        problems.append(("common_name", f"the certificate's names cannot be ordered: {exc}"))

    problems.extend(_target_problems(session, request, bot, cert))
    return problems


def _target_problems(
    session: Session, request: ConfigureRequest, bot: Bot | None, cert: Certificate
) -> list[tuple[str | None, str]]:
    from certfleet.servers.access import HANDLERS  # server types that find their files in the configuration
    from certfleet.servers.targets import target_problems
    from certfleet.tasks.build import build_transport  # the registry decides which connections work

    problems: list[tuple[str | None, str]] = []
    seen: set[tuple[int, int]] = set()
    for number, target in enumerate(request.targets):
        field = f"targets[{number}]"
        server = session.get(Server, target.server_id)
        if server is None:
            problems.append((f"{field}.server_id", f"server {target.server_id} does not exist; add it first"))
            continue
        where = f"{server.description} ({server.host})"
        if (server.id, target.port) in seen:
            problems.append((f"{field}.port", f"{where} port {target.port} is given twice"))
        seen.add((server.id, target.port))
        try:
            build_transport(server)
        except PermanentConnectorError as exc:
            problems.append((f"{field}.server_id", str(exc)))
        if server.status is ServerStatus.UNREACHABLE:
            reason = f": {server.status_reason}" if server.status_reason else ""
            problems.append(
                (f"{field}.server_id", f"{where} was unreachable at its last check{reason}; fix it and check again")
            )
        if bot is not None and server.bot_id is not None and server.bot_id != bot.id:
            mapped = session.get(Bot, server.bot_id)
            problems.append(
                (
                    f"{field}.server_id",
                    f"{where} is mapped to bot {mapped.name if mapped else server.bot_id!r}, which bot "
                    f"{bot.name!r} cannot stand in for; choose that bot or remap the server",
                )
            )
        unservable = target_problem(cert, server.server_type)
        if unservable is not None:
            problems.append((f"{field}.server_id", f"{where}: {unservable}"))
        if server.server_type not in HANDLERS and not (target.cert_path and target.key_path):
            problems.append(
                (
                    f"{field}.cert_path",
                    f"{where} is a {server.server_type} server: give the certificate and key file paths",
                )
            )
        # One rule for target paths and server names (certfleet.servers.targets): inside the server's roots,
        # outside system locations, a DNS name for SNI.
        problems.extend(target_problems(server, target.model_dump(), prefix=f"{field}."))
    return problems


def renew_before_days(request: ConfigureRequest, connector: CAConnector | None) -> int:
    """The days sent, else the CA connector's default for its certificates, else the request's (30)."""
    if "renew_before_days" in request.model_fields_set or connector is None or connector.renew_before_days is None:
        return request.renew_before_days
    return connector.renew_before_days


def configure(
    session: Session, certificate_id: int, request: ConfigureRequest, *, actor: str
) -> CertificateConfiguration:
    """Save the configuration, or raise ConfigurationRejected with every reason and change nothing."""
    problems = check_configuration(session, certificate_id, request)
    if problems:
        raise ConfigurationRejected(problems)
    cert = repo.get(session, Certificate, certificate_id)
    running = set(
        session.scalars(
            select(Deployment.target_id).where(
                Deployment.certificate_id == cert.id, Deployment.status == DeploymentStatus.RUNNING
            )
        )
    )
    wanted = {(t.server_id, t.port): t for t in request.targets}
    for existing in list(cert.targets):
        if (existing.server_id, existing.port) in wanted:
            continue
        if existing.id in running:
            raise ConfigurationRejected(
                [(None, f"target {existing.id} is being deployed to right now; remove it when the run ends")]
            )
        cert.targets.remove(existing)
    current = {(t.server_id, t.port): t for t in cert.targets}
    for key, target in wanted.items():
        row = current.get(key)
        if row is None:
            row = DeploymentTarget(server_id=target.server_id, port=target.port)
            cert.targets.append(row)
        row.server_name = target.server_name or None
        row.cert_path = target.cert_path or None
        row.key_path = target.key_path or None
        row.chain_path = target.chain_path or None
    cert.ca_connector_id = request.ca_connector_id
    cert.provisioning_bot_id = request.provisioning_bot_id
    cert.key_spec = request.key_spec  # one of KEY_SPEC_NAMES, as sent
    cert.validity_days = request.validity_days
    cert.renew_before_days = renew_before_days(request, session.get(CAConnector, request.ca_connector_id))
    cert.renew_before_fraction = request.renew_before_fraction
    cert.organization = request.organization  # validated by ConfigureRequest's field rules: stored as sent
    cert.tags = list(request.tags)
    cert.batch_name = request.batch_name
    cert.deployment_type = DeploymentType.AUTOMATED
    cert.status_reason = None
    session.flush()
    repo.audit(
        session,
        actor=actor,
        action="configure-certificate",
        obj=cert,
        detail=f"connector {request.ca_connector_id}, bot {request.provisioning_bot_id}, "
        f"{len(request.targets)} target(s), {cert.key_spec}",
    )
    return get_configuration(session, certificate_id)


def get_configuration(session: Session, certificate_id: int) -> CertificateConfiguration:
    cert = repo.get(session, Certificate, certificate_id)
    connector = session.get(CAConnector, cert.ca_connector_id) if cert.ca_connector_id else None
    bot = session.get(Bot, cert.provisioning_bot_id) if cert.provisioning_bot_id else None
    return CertificateConfiguration(
        certificate_id=cert.id,
        ca_connector_id=cert.ca_connector_id,
        ca_connector=connector.name if connector else None,
        provisioning_bot_id=cert.provisioning_bot_id,
        provisioning_bot=bot.name if bot else None,
        key_spec=cert.key_spec,
        validity_days=cert.validity_days,
        renew_before_days=cert.renew_before_days,
        renew_before_fraction=cert.renew_before_fraction,
        organization=cert.organization,
        tags=list(cert.tags or []),
        batch_name=cert.batch_name,
        deployment_type=cert.deployment_type,
        targets=[
            TargetView(
                id=t.id,
                server_id=t.server_id,
                server=f"{t.server.description} ({t.server.host})",
                port=t.port,
                server_name=t.server_name,
                cert_path=t.cert_path,
                key_path=t.key_path,
                chain_path=t.chain_path,
            )
            for t in cert.targets
        ],
    )


# --- Download, Details, View --------------------------------------------------------------------------------


def _chain(cert: Certificate) -> list[x509.Certificate]:
    if not cert.pem_chain:
        raise InventoryError(f"certificate {cert.id} ({cert.common_name}) has not been issued yet: it has no file")
    return load_material(cert.pem_chain.encode()).certificates


def _filename(cert: Certificate, extension: str) -> str:
    stem = _UNSAFE_FILENAME.sub("_", cert.common_name.replace("*", "wildcard")).strip("._") or f"certificate-{cert.id}"
    return f"{stem[:100]}.{extension}"


def download(session: Session, certificate_id: int, request: DownloadRequest, *, actor: str) -> DownloadResult:
    cert = repo.get(session, Certificate, certificate_id)
    chain = _chain(cert)
    if request.format is DownloadFormat.PEM:
        result = DownloadResult(
            filename=_filename(cert, "pem"),
            media_type="application/x-pem-file",
            content=bundle.chain_to_pem(chain if request.include_chain else chain[:1]),
        )
    elif request.format is DownloadFormat.DER:
        result = DownloadResult(
            filename=_filename(cert, "cer"),
            media_type="application/pkix-cert",
            content=bundle.certificate_to_der(chain[0]),
        )
    elif request.format is DownloadFormat.PKCS7:
        result = DownloadResult(
            filename=_filename(cert, "p7b"),
            media_type="application/x-pkcs7-certificates",
            content=bundle.to_pkcs7(chain, der=True),
        )
    else:
        result = _pkcs12(cert, chain, request)
    repo.audit(session, actor=actor, action="download-certificate", obj=cert, detail=request.format.value)
    return result


def _pkcs12(cert: Certificate, chain: list[x509.Certificate], request: DownloadRequest) -> DownloadResult:
    if cert.private_key is None:
        raise InventoryError(
            f"certfleet does not hold the private key of certificate {cert.id} ({cert.common_name}), so it "
            "cannot build a PKCS#12 file; download PEM, DER or PKCS#7 instead",
            field="format",
        )
    password = request.password.get_secret_value() if request.password else ""
    if len(password) < MIN_PKCS12_PASSWORD:
        raise InventoryError(
            f"a PKCS#12 file holds the private key: protect it with a password of at least "
            f"{MIN_PKCS12_PASSWORD} characters",
            field="password",
        )
    key = load_private_key(cert.private_key, trusted=True)
    try:
        content = bundle.to_pkcs12(key, chain, password.encode("utf-8"), friendly_name=cert.common_name)
    except CertificateFormatError as exc:
        raise InventoryError(f"cannot build the PKCS#12 file: {exc}", field="format") from exc
    return DownloadResult(filename=_filename(cert, "pfx"), media_type="application/x-pkcs12", content=content)


def details(session: Session, certificate_id: int) -> CertificateDetails:
    cert = repo.get(session, Certificate, certificate_id)
    chain = _chain(cert)
    info = describe(chain[0])
    bots = {b.id: b.name for b in session.scalars(select(Bot))}
    locations = session.scalars(
        select(CertificateLocation)
        .where(CertificateLocation.certificate_id == cert.id)
        .order_by(CertificateLocation.last_seen.desc(), CertificateLocation.id)
    ).all()
    verdict = trust_store(session).classify(chain)
    policy = policy_outcomes(
        chain[0], public_rules=verdict.public_rules, not_public_because=verdict.not_public_because, info=info
    )
    usage = classify(chain[0])
    entries = []
    for c in chain:
        d = describe(c)
        entries.append(
            ChainEntry(
                subject=d.subject,
                issuer=d.issuer,
                serial_number=d.serial_number,
                not_after=d.not_after,
                sha256_thumbprint=d.sha256_thumbprint,
                is_ca=d.is_ca,
            )
        )
    return CertificateDetails(
        id=cert.id,
        status=cert.status,
        status_reason=cert.status_reason,
        ca_type=cert.ca_type,
        trust_anchor=cert.trust_anchor,
        issuer_ca=cert.issuer_ca,
        expires_within_days=info.expires_within_days(),
        vulnerable=cert.vulnerable,
        vulnerability_reasons=list(cert.vulnerability_reasons or []),
        usage=usage.value,
        usage_label=usage.label,
        policy=policy,
        has_private_key=cert.private_key is not None,
        discovery_bot=bots.get(cert.discovery_bot_id) if cert.discovery_bot_id else None,
        provisioning_bot=bots.get(cert.provisioning_bot_id) if cert.provisioning_bot_id else None,
        certificate=info,
        chain=entries,
        locations=[_location_view(loc, bots) for loc in locations],
    )


def _location_view(loc: CertificateLocation, bots: dict[int, str]) -> LocationView:
    if loc.kind == "tls":
        host = f"[{loc.host}]" if loc.host and ":" in loc.host else loc.host
        where = f"{host}:{loc.port}" + (f" (SNI {loc.sni})" if loc.sni and loc.sni != loc.host else "")
    elif loc.kind == "file":
        where = f"{loc.host}:{loc.path}"
    else:
        where = f"uploaded {loc.path}"
    return LocationView(
        id=loc.id,
        kind=loc.kind,
        where=where,
        host=loc.host,
        port=loc.port,
        scan_ip=loc.scan_ip,
        scan_port=loc.scan_port,
        sni=loc.sni or None,
        server_id=loc.server_id,
        path=loc.path,
        discovery_bot=bots.get(loc.discovery_bot_id) if loc.discovery_bot_id else None,
        first_seen=loc.first_seen,
        last_seen=loc.last_seen,
        last_checked_at=loc.last_checked_at,
        status=loc.last_status,
        last_error=loc.last_error,
    )


def view(session: Session, certificate_id: int) -> CertificateText:
    cert = repo.get(session, Certificate, certificate_id)
    return CertificateText(certificate_id=cert.id, text=certificate_text(_chain(cert)[0]))


# --- Ignore, Delete -----------------------------------------------------------------------------------------


def _open_order(session: Session, certificate_id: int) -> Order | None:
    return session.scalars(
        select(Order).where(Order.certificate_id == certificate_id, Order.state.in_(_OPEN_ORDER_STATES)).limit(1)
    ).first()


def ignore(session: Session, certificate_id: int, *, actor: str, reason: str | None = None) -> StatusChange:
    """Out of every provisioning workflow (renewal, rotation), still in the inventory and still discovered."""
    cert = repo.get(session, Certificate, certificate_id)
    problem = None if reason is None else IGNORE_REASON.problem(reason)
    if problem is not None:
        raise InventoryError(f"reason: {problem}", field="reason")
    if _open_order(session, cert.id) is not None:
        raise InventoryError(f"certificate {cert.id} has an order under way at its CA; ignore it once it completes")
    if cert.status is not CertificateStatus.IGNORED:
        cert.status = CertificateStatus.IGNORED
        cert.status_reason = f"ignored by {actor}" + (f": {reason}" if reason else "")
        repo.audit(session, actor=actor, action="ignore-certificate", obj=cert, detail=reason)
    return StatusChange(certificate_id=cert.id, status=cert.status, status_reason=cert.status_reason)


def unignore(session: Session, certificate_id: int, *, actor: str) -> StatusChange:
    """Back to the state its data says it is in: Expired, Deployed, Issued or Discovered."""
    cert = repo.get(session, Certificate, certificate_id)
    if cert.status is CertificateStatus.IGNORED:
        if cert.expires_on is not None and cert.expires_on <= datetime.now(UTC):
            cert.status = CertificateStatus.EXPIRED
        elif cert.order_generation > 0:
            cert.status = CertificateStatus.DEPLOYED if cert.last_provisioned_on else CertificateStatus.ISSUED
        else:
            cert.status = CertificateStatus.DISCOVERED
        cert.status_reason = None
        repo.audit(session, actor=actor, action="unignore-certificate", obj=cert, detail=cert.status.value)
    return StatusChange(certificate_id=cert.id, status=cert.status, status_reason=cert.status_reason)


def delete(session: Session, certificate_id: int, *, actor: str) -> Deleted:
    cert = repo.get(session, Certificate, certificate_id)
    if _open_order(session, cert.id) is not None:
        raise InventoryError(f"certificate {cert.id} has an order under way at its CA; delete it once it completes")
    busy = session.scalar(
        select(func.count())
        .select_from(Deployment)
        .where(Deployment.certificate_id == cert.id, Deployment.status == DeploymentStatus.RUNNING)
    )
    if busy:
        raise InventoryError(f"certificate {cert.id} is being deployed right now; delete it when the run ends")
    locations = session.scalar(
        select(func.count()).select_from(CertificateLocation).where(CertificateLocation.certificate_id == cert.id)
    )
    name = cert.common_name
    repo.audit(session, actor=actor, action="delete-certificate", obj=cert, detail=name)
    session.execute(sql_delete(CertificateLocation).where(CertificateLocation.certificate_id == cert.id))
    session.execute(sql_delete(Order).where(Order.certificate_id == cert.id))
    session.delete(cert)
    session.flush()
    return Deleted(certificate_id=certificate_id, common_name=name, locations=int(locations or 0))


# --- Import -------------------------------------------------------------------------------------------------


def import_files(files: list[UploadedFile], *, actor: str, bot_id: int | None = None) -> ImportReport:
    """Import each file on its own: a bad file gets its reason and never stops the others. A Java keystore
    gives one outcome per entry."""
    outcomes: list[ImportOutcome] = []
    for upload in files:
        try:
            outcomes.extend(_import_one(upload, actor=actor, bot_id=bot_id))
        except InventoryError as exc:
            outcomes.append(ImportOutcome(filename=upload.filename, imported=False, reason=str(exc)))
    return ImportReport(outcomes=outcomes)


@dataclass
class _Piece:
    """One certificate chain of a file (a keystore has one per entry) with the key the file holds for it."""

    entry: str | None
    chain: list[x509.Certificate]
    key: PrivateKey | None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _import_one(upload: UploadedFile, *, actor: str, bot_id: int | None) -> list[ImportOutcome]:
    if not upload.content.strip():
        raise InventoryError("the file is empty")
    if len(upload.content) > MAX_UPLOAD_BYTES:
        raise InventoryError(f"the file is larger than {MAX_UPLOAD_BYTES // 1024} KiB; upload one certificate file")
    pieces = _keystore_pieces(upload) if is_java_keystore(upload.content) else [_file_piece(upload)]
    outcomes = []
    for piece in pieces:
        if piece.error is not None:
            outcomes.append(
                ImportOutcome(filename=upload.filename, entry=piece.entry, imported=False, reason=piece.error)
            )
            continue
        outcomes.append(_record_piece(upload, piece, actor=actor, bot_id=bot_id))
    return outcomes


def _file_piece(upload: UploadedFile) -> _Piece:
    password = upload.password.get_secret_value().encode("utf-8") if upload.password else None
    if b"PRIVATE KEY-----" in upload.content and b"CERTIFICATE-----" not in upload.content:
        raise InventoryError("the file holds only a private key; upload the certificate, or a PKCS#12 file with both")
    try:
        material = load_material(upload.content, password)
    except CertificateFormatError as exc:
        raise InventoryError(str(exc)) from None
    return _Piece(None, material.certificates, material.private_key)


def _keystore_pieces(upload: UploadedFile) -> list[_Piece]:
    store_password = upload.password.get_secret_value() if upload.password else None
    key_password = upload.key_password.get_secret_value() if upload.key_password else None
    try:
        store = load_java_keystore(upload.content, store_password, key_password)
    except CertificateFormatError as exc:
        raise InventoryError(str(exc)) from None
    if not store.entries:
        skipped = f" (secret keys only: {', '.join(store.skipped)})" if store.skipped else ""
        raise InventoryError(f"the {store.store_type} keystore holds no certificate{skipped}")
    pieces = []
    for entry in store.entries:
        notes = list(entry.notes)
        if not store.integrity_checked:
            notes.insert(
                0, f"no store password was given, so the {store.store_type} keystore's integrity was not checked"
            )
        error = f"{store.store_type} entry {entry.alias!r} ({entry.kind}): {entry.error}" if entry.error else None
        pieces.append(_Piece(entry.alias, entry.certificates, entry.private_key, notes, error))
    return pieces


def _record_piece(upload: UploadedFile, piece: _Piece, *, actor: str, bot_id: int | None) -> ImportOutcome:
    chain = piece.chain
    leaf = chain[0]
    issuers = _issuers_of(leaf, chain[1:])
    notes = list(piece.notes)
    if len(chain) > 1 + len(issuers):
        notes.append(
            f"{len(chain) - 1 - len(issuers)} certificate(s) unrelated to {describe(leaf).display_name} were left out"
        )
    settings = get_settings()
    if settings.aia_fetch:  # an admin allowed outbound requests to the URLs certificates name
        issuers, fetched_notes = _issuers_from_aia(leaf, issuers, settings.aia_timeout_s)
        notes += fetched_notes
    key_pem = None
    if piece.key is not None:
        if bundle.key_matches_certificate(piece.key, leaf):
            key_pem = private_key_to_pem(piece.key)
        else:
            notes.append("the private key in the file does not belong to the certificate and was not stored")
    ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in [leaf, *issuers])
    print_ = thumbprint(ders[0])
    where = f"{upload.filename}#{piece.entry}" if piece.entry else upload.filename
    sighting = Sighting(ders, "upload", f"upload:{where}", path=where)
    now = utcnow()
    summary = record(
        [sighting], now=now, bot_id=bot_id, extra_values={print_: {"private_key": key_pem}} if key_pem else None
    )
    if summary.unreadable:
        reason = summary.errors[0] if summary.errors else "the certificate cannot be read"
        return ImportOutcome(filename=upload.filename, entry=piece.entry, imported=False, reason=reason)
    cert_id = summary.certificate_ids[print_]
    completed = [i for i in summary.completed_chain_ids if i != cert_id]
    if completed:
        notes.append(f"completed the chain of {len(completed)} other certificate(s) in the inventory")
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        stored = cert.private_key is not None and key_pem is not None
        if key_pem is not None and cert.private_key is None:
            cert.private_key = key_pem
            stored = True
        repo.audit(s, actor=actor, action="import-certificate", obj=cert, detail=where)
        return ImportOutcome(
            filename=upload.filename,
            entry=piece.entry,
            imported=True,
            certificate_id=cert.id,
            common_name=cert.common_name,
            new=cert_id in summary.new_certificate_ids,
            private_key_stored=stored,
            reason="; ".join(notes) or None,
        )


def _issuers_from_aia(
    leaf: x509.Certificate, issuers: list[x509.Certificate], timeout: float
) -> tuple[list[x509.Certificate], list[str]]:
    """Fetch missing intermediates, only for a chain that verifies to no known root yet."""
    chain = [leaf, *issuers]
    with session_scope() as s:
        if trust_store(s).classify(chain).anchor is not None:
            return issuers, []
    longer, notes = complete_from_aia(chain, timeout=timeout)
    if len(longer) > len(chain):
        notes.append(f"{len(longer) - len(chain)} intermediate(s) fetched from the CA Issuers URL")
    return longer[1:], notes


def _issuers_of(leaf: x509.Certificate, others: list[x509.Certificate]) -> list[x509.Certificate]:
    """The leaf's issuing chain among the other certificates of the file, in order."""
    chain = [leaf]
    while chain[-1].subject != chain[-1].issuer:
        issuer = next((c for c in others if c.subject == chain[-1].issuer and c not in chain), None)
        if issuer is None:
            break
        chain.append(issuer)
    return chain[1:]


# --- Private roots ------------------------------------------------------------------------------------------


def _root_view(root: PrivateRoot) -> PrivateRootView:
    return PrivateRootView(
        id=root.id,
        name=root.name,
        subject=root.subject,
        sha256_thumbprint=root.sha256_thumbprint,
        not_after=root.not_after,
        apply_public_rules=root.apply_public_rules,
        created_at=root.created_at,
        created_by=root.created_by,
    )


def register_private_root(session: Session, name: str, content: bytes, *, actor: str) -> PrivateRootView:
    """Trust a private root (PEM or DER): chains that verify to it show it as their anchor."""
    if not name:
        raise InventoryError("give the root a name", field="name")
    problem = fields.Name(120).problem(name)  # stored as sent or refused: never trimmed
    if problem is not None:
        raise InventoryError(f"name: {problem}", field="name")
    try:
        cert = load_material(content).leaf
    except CertificateFormatError as exc:
        raise InventoryError(str(exc), field="content") from None
    info = describe(cert)
    if not (info.is_ca or info.self_signed):
        raise InventoryError(
            f"{info.subject} is not a CA certificate; register the root that issued it", field="content"
        )
    if session.scalar(select(PrivateRoot.id).where(PrivateRoot.name == name)) is not None:
        raise InventoryError(f"a private root named {name!r} exists already", field="name")
    if session.scalar(select(PrivateRoot.id).where(PrivateRoot.sha256_thumbprint == info.sha256_thumbprint)):
        raise InventoryError(f"{info.subject} is registered already", field="content")
    root = PrivateRoot(
        name=name[:120],
        subject=info.subject[:500],
        sha256_thumbprint=info.sha256_thumbprint,
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        not_after=info.not_after,
        created_by=actor,
    )
    session.add(root)
    session.flush()
    repo.audit(session, actor=actor, action="register-private-root", obj=root, detail=info.subject)
    forget_trust_store()
    reclassify(session)
    return _root_view(root)


def list_private_roots(session: Session) -> list[PrivateRootView]:
    return [_root_view(r) for r in session.scalars(select(PrivateRoot).order_by(PrivateRoot.name))]


def remove_private_root(session: Session, root_id: int, *, actor: str) -> None:
    root = repo.get(session, PrivateRoot, root_id)
    repo.audit(session, actor=actor, action="remove-private-root", obj=root, detail=root.subject)
    session.delete(root)
    session.flush()
    forget_trust_store()
    reclassify(session)


def hold_to_public_rules(session: Session, root_id: int, apply: bool, *, actor: str) -> PrivateRootView:
    """Hold the chains of a private root to the public CA rules (the 398-day limit), or stop; re-derives
    every certificate's Vulnerable at once."""
    root = repo.get(session, PrivateRoot, root_id)
    if root.apply_public_rules != apply:
        root.apply_public_rules = apply
        session.flush()
        repo.audit(
            session,
            actor=actor,
            action="apply-public-rules" if apply else "stop-public-rules",
            obj=root,
            detail=root.subject,
        )
        forget_trust_store()
        reclassify(session)
    return _root_view(root)


def reclassify(session: Session) -> int:
    """Re-derive CA type, trust anchor, vulnerability and usage of every certificate with a chain; returns
    how many rows changed."""
    trust = trust_store(session)
    now = utcnow()
    changed = 0
    for cert in session.scalars(select(Certificate).where(Certificate.pem_chain.is_not(None))):
        assert cert.pem_chain is not None
        try:
            facts = analyze(load_material(cert.pem_chain.encode()).certificates, trust, now)
        except CertificateFormatError:
            continue
        before = _verdicts(cert)
        updated_at = cert.updated_at
        store_facts(cert, facts, now)
        if _verdicts(cert) != before:
            changed += 1
        else:
            cert.updated_at = updated_at
    session.flush()
    return changed


def _verdicts(cert: Certificate) -> tuple[object, ...]:
    return (
        cert.ca_type,
        cert.trust_anchor,
        cert.vulnerable,
        list(cert.vulnerability_reasons or []),
        cert.usage,
        cert.awaiting_issuer,
    )


__all__ = [
    "check_configuration",
    "configure",
    "delete",
    "details",
    "download",
    "get_configuration",
    "hold_to_public_rules",
    "ignore",
    "import_files",
    "list_private_roots",
    "reclassify",
    "register_private_root",
    "remove_private_root",
    "unignore",
    "view",
]
