"""The bots' testbed: a Prefect server on PostgreSQL with an auth string, certfleet's API behind an nginx TLS proxy,
and two bot agents started as separate processes with only `--url`, `--token` and `--ca-bundle`, each with its own
local TLS listeners (servers mapped to it). A test module sets how many with a `fleet_certs` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfleet.bots import service as bot_service
from certfleet.bots.testbed import AgentProcess, PrefectServer, issue_with_builtin_ca
from certfleet.connectors.servers.probe import fetch_served_chain
from certfleet.dashboard.server import DashboardThread
from certfleet.demo.fleet import DemoHost, plan_fleet, register_fleet
from certfleet.demo.listener import ListenerProcess, free_port
from certfleet.deployments.names import bot_queue
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from certfleet.pki.parse import serial_hex
from certfleet.settings import get_settings
from tests.bots.tls_proxy import TlsProxy


@dataclass
class Fleet:
    boot: Bootstrapped
    prefect: PrefectServer
    url: str  # certfleet's API
    bots: dict[str, int]  # name -> id
    tokens: dict[str, str]
    agents: dict[str, AgentProcess]
    hosts: dict[int, DemoHost]  # certificate id -> its listener
    bot_of: dict[int, str]  # certificate id -> bot name
    ca_bundle: Path  # trusts the TLS proxy in front of the API

    def served(self, cert_id: int) -> str:
        host = self.hosts[cert_id]
        return serial_hex(fetch_served_chain("127.0.0.1", host.port, server_name=host.fqdn, timeout=5)[0].serial_number)


def _launch(listeners: list[ListenerProcess]) -> None:
    # 100 Python processes started 8 at a time: on a busy 2-core CI one can take longer than the 15 s a single
    # listener gets by default (a CI run failed here with the machine still busy from its setup).
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda listener: listener.launch(ready_timeout=180), listeners))


@pytest.fixture
def fleet(
    database: str, postgres_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet_certs: int
) -> Iterator[Fleet]:
    """Two bots (bot-east, bot-west), each with `fleet_certs` / 2 listeners of its own, agents running."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("CERTFLEET_BOT_HEARTBEAT_SECONDS", "1")
    get_settings.cache_clear()
    boot = initialize()
    prefect = PrefectServer(postgres_admin_url, tmp_path / "prefect")
    prefect.start()
    monkeypatch.setenv("PREFECT_API_URL", prefect.api_url)  # what the dashboard's Stop/Start use
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", prefect.auth)
    dashboard = DashboardThread("127.0.0.1", free_port())
    proxy: TlsProxy | None = None
    listeners: list[ListenerProcess] = []
    agents: dict[str, AgentProcess] = {}
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect.api_url, PREFECT_API_AUTH_STRING: prefect.auth}):
            from certfleet.deployments.serve import register, runner_deployments

            register(runner_deployments(bot_queue(boot.local_bot_id)))
            dashboard.start()
            # The API behind TLS, as the README's scale-out step 4 sets it up: nginx terminates TLS with a
            # certificate from a private CA, and the agents trust that CA with --ca-bundle.
            proxy = TlsProxy(tmp_path / "tls-proxy", dashboard.server.config.port)
            proxy.start()
            url = proxy.url
            bots, tokens, hosts, bot_of = {}, {}, {}, {}
            with session_scope() as s:
                for name in ("bot-east", "bot-west"):
                    made = bot_service.create_bot(s, bot_service.BotFields(name=name), "test")
                    bots[name], tokens[name] = made.bot.id, made.token
            for n, name in enumerate(bots):
                planned = plan_fleet(tmp_path / name, fleet_certs // 2)
                ids = register_fleet(planned, ca_connector_id=boot.ca_connector_id, bot_id=bots[name])
                hosts.update(zip(ids, planned, strict=True))
                bot_of.update(dict.fromkeys(ids, name))
                listeners += [h.listener() for h in planned]
                assert n < 2
            issue_with_builtin_ca(sorted(hosts))
            _launch(listeners)
            for name in bots:
                agents[name] = AgentProcess(url, tokens[name], tmp_path / f"agent-{name}", proxy.ca_bundle)
                agents[name].start()
            yield Fleet(boot, prefect, url, bots, tokens, agents, hosts, bot_of, proxy.ca_bundle)
    finally:
        for agent in agents.values():
            agent.stop()
        if proxy is not None:
            proxy.stop()
        dashboard.stop()
        for listener in listeners:
            listener.stop()
        _drop_concurrency_services()
        prefect.stop()


def _drop_concurrency_services() -> None:
    """Prefect's concurrency-slot services keep the client of the server they first talked to, keyed by the limit
    names: left running, a later test's rotate-batch would ask this (stopped) server for `rotate-ca-1`'s slots."""
    from prefect.concurrency.services import (
        ConcurrencySlotAcquisitionService,
        ConcurrencySlotAcquisitionWithLeaseService,
    )

    kinds = (ConcurrencySlotAcquisitionService, ConcurrencySlotAcquisitionWithLeaseService)
    for service in list(ConcurrencySlotAcquisitionWithLeaseService._instances.values()):
        if isinstance(service, kinds):
            service.drain()
