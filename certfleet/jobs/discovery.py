"""What a discovery run on a bot reads and records: the run row, a server's folders, what the scan saw.

Discovery runs on the bot that reaches the network or the server (its Prefect queue), so names resolve and
handshakes happen inside that network. Like deployments, the run never touches the database on a bot: it
goes through a `DiscoveryStore`: `DbDiscoveryStore` on the central host (and behind the bot API's routes,
scoped to the calling bot), `ApiDiscoveryStore` (certfleet.jobs.api_store) on a remote bot.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence
from typing import Protocol

from pydantic import Base64Bytes, BaseModel, Field
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from certfleet.discovery.scanner import ScanOptions
from certfleet.inventory.record import Miss, RecordSummary, Sighting, record
from certfleet.jobs.db_store import NotYourServer, server_access
from certfleet.jobs.models import ServerAccess
from certfleet.jobs.store import AGENT_TOKEN_ENV, AGENT_URL_ENV
from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotPurpose,
    BotStatus,
    CertificateLocation,
    DeploymentTarget,
    DiscoveryRun,
    LocationStatus,
    Server,
    ServerConnection,
    utcnow,
)
from certfleet.servers.paths import PathRefused, check_path

MAX_ERRORS_KEPT = 50


class DiscoveryError(ValueError):
    """The run cannot start: unknown or unsuitable bot, bad targets. The message says what to fix."""


class OpenedRun(BaseModel):
    run_id: int
    bot_id: int
    targets: list[str] = []  # endpoint runs: what to expand and scan
    known_names: list[tuple[str, int, str]] = []  # endpoint runs: (ip, port, SNI) this bot recorded before
    server_ids: list[int] = []  # file runs: the servers to scan


class FileScanJob(BaseModel):
    server: ServerAccess
    folders: list[str]
    known_files: list[str]  # locators of the files found there before and still Active


class RunCounts(BaseModel):
    scanned: int = 0
    answered: int = 0
    certificates: int = 0
    new_certificates: int = 0


class SightingWire(BaseModel):
    """A `Sighting` as JSON: the DER chain in base64."""

    chain: list[Base64Bytes] = Field(max_length=64)
    kind: str = Field(pattern="^(tls|file)$")
    locator: str = Field(max_length=2048)
    host: str | None = None
    port: int | None = None
    scan_ip: str | None = None
    scan_port: int | None = None
    sni: str = ""
    server_id: int | None = None
    path: str | None = None
    chain_is_ordered: bool = True

    @classmethod
    def of(cls, s: Sighting) -> SightingWire:
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
        return cls.model_validate({**fields, "chain": [base64.b64encode(der) for der in s.chain]})

    def sighting(self) -> Sighting:
        return Sighting(**{**self.model_dump(), "chain": tuple(self.chain)})


class MissWire(BaseModel):
    locator: str = Field(max_length=2048)
    error: str = Field(max_length=2048)
    status: LocationStatus = LocationStatus.NOT_RESPONDING

    @classmethod
    def of(cls, m: Miss) -> MissWire:
        return cls(locator=m.locator, error=m.error, status=m.status)

    def miss(self) -> Miss:
        return Miss(self.locator, self.error, self.status)


class DiscoveryStore(Protocol):
    def open_endpoint_run(
        self, bot_id: int | None, targets: list[str] | None, ports: str | list[int], options: ScanOptions,
        flow_run_id: str | None,
    ) -> OpenedRun: ...  # fmt: skip

    def set_plan(self, run_id: int, endpoints_total: int, notes: list[str]) -> None:
        """After the bot expanded the targets: how many endpoints, and the names it could not resolve."""
        ...

    def open_files_run(
        self, bot_id: int | None, server_ids: list[int] | None, extra_paths: list[str], flow_run_id: str | None
    ) -> OpenedRun: ...

    def file_scan_job(self, run_id: int, server_id: int, extra_paths: list[str]) -> FileScanJob: ...

    def record(self, run_id: int, sightings: Sequence[Sighting], misses: Sequence[Miss]) -> RecordSummary: ...

    def add_counts(self, run_id: int, counts: RunCounts) -> None: ...

    def finish(self, run_id: int, status: str, errors: Sequence[str] = ()) -> None: ...


def _known_names(session: Session, bot_id: int) -> list[tuple[str, int, str]]:
    """The SNI places this bot found that still count (not Replaced): a scan of their address asks them again."""
    rows = session.execute(
        select(CertificateLocation.scan_ip, CertificateLocation.scan_port, CertificateLocation.sni)
        .where(
            CertificateLocation.kind == "tls",
            CertificateLocation.discovery_bot_id == bot_id,
            CertificateLocation.sni != "",
            CertificateLocation.scan_ip.is_not(None),
            CertificateLocation.scan_port.is_not(None),
            CertificateLocation.last_status != LocationStatus.REPLACED,
        )
        .distinct()
    )
    return [(ip, port, sni) for ip, port, sni in rows if ip is not None and port is not None]


def current_discovery_store() -> DiscoveryStore:
    """The API inside a bot's worker (it was given URL and token), else the database."""
    url, token = os.environ.get(AGENT_URL_ENV), os.environ.get(AGENT_TOKEN_ENV)
    if url and token:
        from certfleet.jobs.api_store import ApiDiscoveryStore, ApiJobStore

        return ApiDiscoveryStore(ApiJobStore.shared(url, token))
    return DbDiscoveryStore()


# --- the database side --------------------------------------------------------------------------------------


def discovery_bot(session: Session, bot_id: int | None, *, scans_networks: bool = True) -> Bot:
    """The bot that runs the scan: the one named, else the local bot. A network scan (`scans_networks`) needs a
    bot whose purpose includes Discovery; re-scanning the servers mapped to a bot is part of managing them."""
    if bot_id is None:
        bot = session.scalar(select(Bot).where(Bot.name == LOCAL_BOT_NAME))
        if bot is None:
            raise DiscoveryError("no bot given and the local bot does not exist; run `certfleet up` once or name a bot")
    else:
        found = session.get(Bot, bot_id)
        if found is None:
            raise DiscoveryError(f"bot {bot_id} does not exist")
        bot = found
    if scans_networks and bot.purpose is BotPurpose.PROVISIONING:
        raise DiscoveryError(
            f"bot {bot.name!r} only provisions; set its purpose to Discovery (or Discovery and Provisioning) "
            "or run discovery with another bot"
        )
    if bot.status in (BotStatus.STOPPED, BotStatus.INACTIVE):
        raise DiscoveryError(f"bot {bot.name!r} is {bot.status.value}; start it before discovering with it")
    return bot


def servers_of(bot: Bot) -> object:
    """The servers a bot scans when none are named: its own, and for the local bot those mapped to no bot."""
    mine = Server.bot_id == bot.id
    return or_(mine, Server.bot_id.is_(None)) if bot.name == LOCAL_BOT_NAME else mine


def registered_endpoints(session: Session, bot: Bot) -> list[str]:
    """Without explicit targets, a run scans the bot's servers on their ports."""
    entries = []
    for server in session.scalars(select(Server).where(servers_of(bot)).order_by(Server.id)):  # type: ignore[arg-type]
        host = f"[{server.host}]" if ":" in server.host else server.host
        entries += [f"{host}:{port}" for port in server.ports or []]
    return entries


def server_folders(server: Server, extra_paths: Sequence[str]) -> list[str]:
    """Key store folder, installation path, the folders of its deployment targets' files, and extra paths."""
    folders = [server.keystore_folder, server.app_path, *extra_paths]
    for folder in extra_paths:  # flow parameters may come straight from the Prefect UI: the same path rule
        try:
            check_path(folder, "folder", directory=True, windows=server.connection is ServerConnection.SMB)
        except PathRefused as exc:
            raise DiscoveryError(str(exc)) from None
    return list(dict.fromkeys(f.rstrip("/") or "/" for f in folders if f))


class DbDiscoveryStore:
    """`bot_id` set (the bot API): the caller is that bot; it opens runs only as itself, scans only its own
    servers and records only into its own runs (`NotYourServer`, a 403)."""

    def __init__(self, bot_id: int | None = None) -> None:
        self.bot_id = bot_id

    def _bot(self, s: Session, bot_id: int | None, *, scans_networks: bool) -> Bot:
        if self.bot_id is not None:
            if bot_id is not None and bot_id != self.bot_id:
                raise NotYourServer(f"this bot cannot run a discovery as bot {bot_id}")
            bot_id = self.bot_id
        return discovery_bot(s, bot_id, scans_networks=scans_networks)

    def _run(self, s: Session, run_id: int) -> DiscoveryRun:
        run = repo.get(s, DiscoveryRun, run_id)
        if self.bot_id is not None and run.bot_id != self.bot_id:
            raise NotYourServer(f"discovery run {run_id} is not this bot's")
        return run

    def _server(self, s: Session, server_id: int) -> Server:
        server = repo.get(s, Server, server_id)
        if self.bot_id is not None and server.bot_id != self.bot_id:
            raise NotYourServer(f"server {server.id} ({server.host}) is not mapped to this bot")
        return server

    def open_endpoint_run(
        self, bot_id: int | None, targets: list[str] | None, ports: str | list[int], options: ScanOptions,
        flow_run_id: str | None,
    ) -> OpenedRun:  # fmt: skip
        with session_scope() as s:
            bot = self._bot(s, bot_id, scans_networks=targets is not None)
            chosen = list(targets) if targets is not None else registered_endpoints(s, bot)
            run = DiscoveryRun(
                kind="tls",
                bot_id=bot.id,
                flow_run_id=flow_run_id,
                scope={
                    "targets": chosen[:200],
                    "ports": ports if isinstance(ports, str) else list(ports),
                    **dataclasses.asdict(options),
                },
                endpoints_total=0,
            )
            s.add(run)
            s.flush()
            scope = f"{len(chosen)} target(s)" if targets is not None else "its registered servers"
            repo.audit(s, actor=f"bot:{bot.name}", action="discover-endpoints", obj=run, detail=scope)
            return OpenedRun(run_id=run.id, bot_id=bot.id, targets=chosen, known_names=_known_names(s, bot.id))

    def set_plan(self, run_id: int, endpoints_total: int, notes: list[str]) -> None:
        with session_scope() as s:
            run = self._run(s, run_id)
            run.endpoints_total = endpoints_total
            run.errors = [*(run.errors or []), *notes][:MAX_ERRORS_KEPT]

    def open_files_run(
        self, bot_id: int | None, server_ids: list[int] | None, extra_paths: list[str], flow_run_id: str | None
    ) -> OpenedRun:
        with session_scope() as s:
            bot = self._bot(s, bot_id, scans_networks=False)
            if server_ids:
                servers = [self._server(s, i).id for i in server_ids]  # an unknown id fails before any scan
            else:
                where = servers_of(bot)
                servers = list(s.scalars(select(Server.id).where(where).order_by(Server.id)))  # type: ignore[arg-type]
            if not servers:
                raise DiscoveryError(f"no server is mapped to bot {bot.name!r}; map servers to it before scanning")
            run = DiscoveryRun(
                kind="files",
                bot_id=bot.id,
                flow_run_id=flow_run_id,
                scope={"server_ids": servers, "extra_paths": list(extra_paths)},
                endpoints_total=0,
            )
            s.add(run)
            s.flush()
            repo.audit(
                s, actor=f"bot:{bot.name}", action="discover-server-files", obj=run, detail=f"{len(servers)} server(s)"
            )
            return OpenedRun(run_id=run.id, bot_id=bot.id, server_ids=servers)

    def file_scan_job(self, run_id: int, server_id: int, extra_paths: list[str]) -> FileScanJob:
        with session_scope() as s:
            self._run(s, run_id)
            server = self._server(s, server_id)
            target_dirs = [
                path.rsplit("/", 1)[0]
                for path in s.scalars(
                    select(DeploymentTarget.cert_path).where(
                        DeploymentTarget.server_id == server_id, DeploymentTarget.cert_path.is_not(None)
                    )
                )
                if path and "/" in path
            ]
            known = s.scalars(
                select(CertificateLocation.locator).where(
                    CertificateLocation.server_id == server_id,
                    CertificateLocation.kind == "file",
                    CertificateLocation.last_status == LocationStatus.ACTIVE,
                )
            ).all()
            return FileScanJob(
                server=server_access(server),
                folders=server_folders(server, [*target_dirs, *extra_paths]),
                known_files=list(known),
            )

    def record(self, run_id: int, sightings: Sequence[Sighting], misses: Sequence[Miss]) -> RecordSummary:
        with session_scope() as s:
            run = self._run(s, run_id)
            bot_id = run.bot_id
            if self.bot_id is not None:
                for server_id in {x.server_id for x in sightings if x.server_id is not None}:
                    self._server(s, server_id)
        return record(sightings, misses, now=utcnow(), bot_id=bot_id, run_id=run_id)

    def add_counts(self, run_id: int, counts: RunCounts) -> None:
        with session_scope() as s:
            self._run(s, run_id)
            s.execute(
                update(DiscoveryRun)
                .where(DiscoveryRun.id == run_id)
                .values(
                    endpoints_scanned=DiscoveryRun.endpoints_scanned + counts.scanned,
                    endpoints_answered=DiscoveryRun.endpoints_answered + counts.answered,
                    certificates_found=DiscoveryRun.certificates_found + counts.certificates,
                    certificates_new=DiscoveryRun.certificates_new + counts.new_certificates,
                )
            )

    def finish(self, run_id: int, status: str, errors: Sequence[str] = ()) -> None:
        with session_scope() as s:
            run = self._run(s, run_id)
            run.status = status
            run.finished_at = utcnow()
            if errors:
                run.errors = [*(run.errors or []), *errors][:MAX_ERRORS_KEPT]
