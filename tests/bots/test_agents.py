"""Bots that really carry out the work (issue 10): a Prefect server on PostgreSQL with an auth string,
certfleet's API behind an nginx TLS proxy, and two bot agents started as separate processes with only `--url`,
`--token` and `--ca-bundle`.

The agents' environment has no database URL and no key file; they fetch each job (bundle, server access)
from certfleet's API with their token and journal through it. Servers mapped to each bot are local TLS
listeners; every deployment must run on its own bot's queue and be proven by a handshake.
"""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from certfleet.bots import service as bot_service
from certfleet.bots.liveness import mark_silent_bots
from certfleet.bots.routing import start_deploy_runs
from certfleet.bots.testbed import basic, issue_with_builtin_ca
from certfleet.demo.listener import free_port
from certfleet.deployments.names import BOT_POOL, bot_queue
from certfleet.jobs.store import api_trust
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotStatus,
    Certificate,
    CertificateLocation,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentStep,
    DiscoveryRun,
    Server,
    ServerConnection,
    ServerStatus,
    utcnow,
)
from tests.bots.conftest import Fleet

pytestmark = pytest.mark.parametrize("database", ["postgresql"], indirect=True)

CERTS = int(os.environ.get("CERTFLEET_TEST_BOT_CERTS", "100"))  # split evenly over the two bots


@pytest.fixture
def fleet_certs() -> int:
    return CERTS


def _status(bot_id: int) -> BotStatus:
    with session_scope() as s:
        return repo.get(s, Bot, bot_id).status


def _wait_for(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _runs_states(run_ids: list[str]) -> dict[str, str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {rid: (client.read_flow_run(rid).state_name or "") for rid in run_ids}


def _queue_paused(fleet: Fleet, queue: str) -> bool:
    answer = httpx.get(
        f"{fleet.prefect.api_url}/work_pools/{BOT_POOL}/queues/{queue}", headers=basic(fleet.prefect.auth)
    )
    answer.raise_for_status()
    return bool(answer.json()["is_paused"])


# The whole scenario (100 deployments, a killed agent, Stop/Start, a revoked token, discovery on both bots) takes
# 5-8 minutes on an idle 2-core machine: more than the suite's 600 s when CI shares the cores.
@pytest.mark.timeout(1800)
def test_two_bots_deploy_their_own_servers_and_hold_no_secrets(fleet: Fleet) -> None:
    from certfleet.deployments.starts import wait_for_runs

    # Both agents check in: Active (servers are mapped to them), with version, OS and address recorded.
    _wait_for("both bots Active", lambda: all(_status(b) is BotStatus.ACTIVE for b in fleet.bots.values()))
    with session_scope() as s:
        for bot_id in fleet.bots.values():
            bot = repo.get(s, Bot, bot_id)
            assert bot.version
            assert bot.os
            assert bot.ip_address == "127.0.0.1"

    # An anonymous call to the Prefect API is refused.
    assert httpx.get(f"{fleet.prefect.api_url}/flow_runs/filter").status_code in (401, 405)
    assert httpx.post(f"{fleet.prefect.api_url}/flow_runs/filter", json={}).status_code == 401

    # Deploy every certificate: one run each, on the queue of the bot its server is mapped to.
    placeholders = {cid: fleet.served(cid) for cid in fleet.hosts}
    runs = [run for cid in sorted(fleet.hosts) for run in start_deploy_runs(cid, as_subflow=False)]
    ended = wait_for_runs(runs, timeout=900)
    assert [r.state_name for r in ended] == ["Completed"] * len(runs), [
        (r.name, r.state_name, r.state and r.state.message) for r in ended if r.state_name != "Completed"
    ]
    with session_scope() as s:
        for cid in fleet.hosts:
            cert = repo.get(s, Certificate, cid)
            assert cert.status is CertificateStatus.DEPLOYED
            assert fleet.served(cid) == cert.serial_number != placeholders[cid]
    for run in ended:
        cid = run.parameters["certificate_id"]
        bot = fleet.bot_of[cid]
        assert run.work_queue_name == bot_queue(fleet.bots[bot])
        # The run was submitted by that bot's own worker (its log names every run it started), not the other's.
        assert str(run.id) in fleet.agents[bot].worker_log()
        other = next(n for n in fleet.bots if n != bot)
        assert str(run.id) not in fleet.agents[other].worker_log()

    # "Check connectivity" of a west server runs on bot-west, through the API, and records Active.
    from certfleet.deployments.starts import start_flow_run

    west_server = _server_of(west_certs_of(fleet)[0])
    check = start_flow_run(
        "check-server",
        {"server_id": west_server, "actor": "test"},
        queue=bot_queue(fleet.bots["bot-west"]),
        as_subflow=False,
    )
    (checked,) = wait_for_runs([check], timeout=300)
    assert checked.state_name == "Completed", checked.state and checked.state.message
    assert str(check.id) in fleet.agents["bot-west"].worker_log()
    with session_scope() as s:
        server = repo.get(s, Server, west_server)
        assert server.status is ServerStatus.ACTIVE
        assert server.last_checked_at is not None

    # An SSH server with a password, checked by bot-west: the password reaches the bot over the API, is used,
    # and is refused by nothing listening; it must not end up in Prefect (swept below).
    password = "pw-" + os.urandom(12).hex()
    with session_scope() as s:
        ssh_server = Server(description="ssh-west", host="127.0.0.1", ssh_port=free_port(), username="deploy",
                            password=password, connection=ServerConnection.SSH, server_type="nginx",
                            app_path="/etc/nginx", bot_id=fleet.bots["bot-west"])  # fmt: skip
        s.add(ssh_server)
        s.flush()
        ssh_id = ssh_server.id
    parameters = {"server_id": ssh_id, "actor": "test"}
    (unreachable,) = wait_for_runs(
        [start_flow_run("check-server", parameters, queue=bot_queue(fleet.bots["bot-west"]), as_subflow=False)],
        timeout=300,
    )
    assert unreachable.state_name == "Completed"
    with session_scope() as s:
        assert repo.get(s, Server, ssh_id).status is ServerStatus.UNREACHABLE

    # Discovery runs on the bots too. The nightly discover-fleet (central) starts a TLS scan and a file scan on each
    # bot that has servers, on its queue; each bot scans its own servers and records through the API.
    _discover_on_the_bots(fleet)

    # Neither bot ever had a database or a key: nothing was created in their data directories.
    for agent in fleet.agents.values():
        assert list((agent.folder / "data").iterdir()) == []

    east, west = fleet.bots["bot-east"], fleet.bots["bot-west"]
    east_certs = sorted(c for c, b in fleet.bot_of.items() if b == "bot-east")
    west_certs = sorted(c for c, b in fleet.bot_of.items() if b == "bot-west")

    # Kill the west agent (and its worker): its runs wait, it turns Inactive; restarted, the runs finish.
    fleet.agents["bot-west"].kill()
    waiting = [run for cid in west_certs[:2] for run in start_deploy_runs(cid, as_subflow=False)]
    time.sleep(6)  # three polls of a worker that would have taken them
    assert set(_runs_states([str(r.id) for r in waiting]).values()) <= {"Scheduled", "Late", "Pending"}
    with session_scope() as s:  # east checks in every second; west has been silent for six
        assert mark_silent_bots(s, now=utcnow(), silence=timedelta(seconds=4)) == ["bot-west"]
    assert _status(west) is BotStatus.INACTIVE
    fleet.agents["bot-west"].start()
    assert [r.state_name for r in wait_for_runs(waiting, timeout=300)] == ["Completed"] * 2
    _wait_for("bot-west Active again", lambda: _status(west) is BotStatus.ACTIVE)

    # Stop the east bot: its queue is paused and its runs wait; Start: they run.
    with session_scope() as s:
        bot_service.set_running(s, east, False, "test")
    assert _queue_paused(fleet, bot_queue(east))
    held = [run for cid in east_certs[:1] for run in start_deploy_runs(cid, as_subflow=False)]
    time.sleep(6)
    assert set(_runs_states([str(r.id) for r in held]).values()) <= {"Scheduled", "Late", "Pending"}
    assert _status(east) is BotStatus.STOPPED  # its heartbeats go on, the status stays Stopped
    with session_scope() as s:
        bot_service.set_running(s, east, True, "test")
    # Resumed at once, and no check-in answered before Start pauses it again (tests/bots/test_queue_state.py).
    assert not _queue_paused(fleet, bot_queue(east))
    assert [r.state_name for r in wait_for_runs(held, timeout=300)] == ["Completed"]

    # A token revoked mid-run: the next API call is refused, the run fails saying so, and the server keeps
    # serving exactly what it served before (the run put back the files it had replaced).
    victim = east_certs[-1]
    host = fleet.hosts[victim]
    before_files = {p: p.read_bytes() for p in (host.cert_path, host.key_path)}
    before_serial = fleet.served(victim)
    gate = host.cert_path.parent / "release-reload"
    with session_scope() as s:  # the reload waits for the test, so the revocation lands mid-run
        server = repo.get(s, Certificate, victim).targets[0].server
        server.reload_command = f"sh -c 'while [ ! -e {gate} ]; do sleep 0.1; done'; {server.reload_command}"
    issue_with_builtin_ca([victim])  # a new certificate to deploy
    (run,) = start_deploy_runs(victim, as_subflow=False)
    _wait_for("the reload step to start", lambda: _reload_started(victim), timeout=120)
    with session_scope() as s:
        bot_service.revoke_token(s, east, "test")
    gate.touch()
    (ended_run,) = wait_for_runs([run], timeout=120)
    assert ended_run.state_name == "Failed"
    assert "refused this bot's token" in (ended_run.state.message if ended_run.state else "")
    assert {p: p.read_bytes() for p in before_files} == before_files
    assert fleet.served(victim) == before_serial
    # The agent learns at its next check-in: one line, and a non-zero exit.
    assert fleet.agents["bot-east"].wait(timeout=60) == 2
    assert re.search(r"^error: certfleet refused the bot token", fleet.agents["bot-east"].log(), re.M)

    # A sweep of everything Prefect stored finds no token, password or private key.
    dump = fleet.prefect.dump()
    assert "PRIVATE KEY" not in dump
    assert password not in dump
    for token in fleet.tokens.values():
        assert token not in dump
        assert token[4:] not in dump
    with session_scope() as s:
        key_pem = (repo.get(s, Certificate, victim).private_key or b"").decode()
    assert key_pem.splitlines()[1] not in dump


def _discover_on_the_bots(fleet: Fleet) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from certfleet.deployments.starts import wait_for_runs
    from certfleet.flows.discovery import discover_fleet

    started = discover_fleet()
    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(UUID(run_id)) for run_id in started]
    kinds = sorted((r.work_queue_name, r.name.rsplit("-bot-", 1)[0]) for r in runs)
    expected = [
        (bot_queue(b), k) for b in sorted(fleet.bots.values()) for k in ("discover-endpoints", "discover-server-files")
    ]
    assert kinds == expected  # the local bot has no servers here: nothing for it
    ended = wait_for_runs(runs, timeout=600)
    assert [r.state_name for r in ended] == ["Completed"] * len(runs), [
        (r.name, r.state and r.state.message) for r in ended
    ]
    for run in ended:
        bot = next(name for name, bot_id in fleet.bots.items() if run.work_queue_name == bot_queue(bot_id))
        assert str(run.id) in fleet.agents[bot].worker_log()
    with session_scope() as s:
        for name, bot_id in fleet.bots.items():
            mine = [c for c, b in fleet.bot_of.items() if b == name]
            tls, files = (
                s.scalars(select(DiscoveryRun).where(DiscoveryRun.bot_id == bot_id, DiscoveryRun.kind == kind)).one()
                for kind in ("tls", "files")
            )
            assert (tls.status, tls.endpoints_total, tls.endpoints_answered) == ("Completed", len(mine), len(mine))
            assert files.status == "Completed", files.errors
            assert files.certificates_found >= len(mine)
            for cid in mine:  # the served certificate, seen by that bot on its port and in its server's folder
                places = s.scalars(select(CertificateLocation).where(CertificateLocation.certificate_id == cid)).all()
                assert {(p.kind, p.discovery_bot_id) for p in places} >= {("tls", bot_id), ("file", bot_id)}
    # A bot cannot scan another bot's servers, nor record into its runs.
    east = {"Authorization": f"Bearer {fleet.tokens['bot-east']}"}
    west_server = _server_of(west_certs_of(fleet)[0])
    refused = httpx.post(
        f"{fleet.url}/api/v1/agent/discovery/file-runs",
        json={"server_ids": [west_server]},
        headers=east,
        verify=api_trust(str(fleet.ca_bundle)),
    )
    assert refused.status_code == 403, refused.text
    assert "is not mapped to this bot" in refused.json()["detail"]
    with session_scope() as s:
        west_run = s.scalars(select(DiscoveryRun.id).where(DiscoveryRun.bot_id == fleet.bots["bot-west"])).first()
    finish = httpx.post(
        f"{fleet.url}/api/v1/agent/discovery/runs/{west_run}/finish",
        json={"status": "Failed"},
        headers=east,
        verify=api_trust(str(fleet.ca_bundle)),
    )
    assert finish.status_code == 403, finish.text


def west_certs_of(fleet: Fleet) -> list[int]:
    return sorted(c for c, b in fleet.bot_of.items() if b == "bot-west")


def _server_of(cert_id: int) -> int:
    with session_scope() as s:
        return repo.get(s, Certificate, cert_id).targets[0].server_id


def _reload_started(cert_id: int) -> bool:
    with session_scope() as s:
        deployment = s.scalars(
            select(Deployment).where(Deployment.certificate_id == cert_id).order_by(Deployment.id.desc())
        ).first()
        if deployment is None or deployment.status is not DeploymentStatus.RUNNING:
            return False
        return any(
            st.action == "reload"
            for st in s.scalars(select(DeploymentStep).where(DeploymentStep.deployment_id == deployment.id))
        )
