"""The per-connector Prefect rate limit keeps a burst of CA requests inside what the CA allows.

The emulator counts requests in a rolling one-second window, as CertCentral does. The same load is sent
twice from eight task threads: through the connector as `build_ca` makes it (rate limited) and through
a connector without the limit, which proves the load would overrun the CA's window.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr

from certfleet.ca_admin import service
from certfleet.ca_admin.forms import AdvancedOptions, DigiCertForm
from certfleet.ca_admin.runtime import RuntimeHooks, StoredConnector, build_remote_ca
from certfleet.connectors.base import IssueRequest
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from certfleet.tasks.build import build_ca
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.pki import TlsIdentity

RATE, BURST = 15.0, 5
WINDOW = (25, 1.0)  # at most 25 requests in any second: above what RATE and BURST let through
CALLS_PER_TASK, TASKS = 8, 8


@task(cache_policy=NO_CACHE)
def poll_many(connector_id: int, order_id: str, limited: bool) -> int:
    with session_scope() as s:
        row = repo.get(s, CAConnector, connector_id)
        ca = build_ca(s, row) if limited else build_remote_ca(StoredConnector.of(row), RuntimeHooks())
    for _ in range(CALLS_PER_TASK):
        ca.status(order_id)
    return CALLS_PER_TASK


@flow(name="test-rate-limit", task_runner=ThreadPoolTaskRunner(max_workers=TASKS))
def burst(connector_id: int, order_id: str, limited: bool) -> int:
    return sum(poll_many.map([connector_id] * TASKS, [order_id] * TASKS, [limited] * TASKS).result())


@pytest.fixture
def digicert(emulator_tls: TlsIdentity) -> Iterator[DigiCertEmulator]:
    emulator = DigiCertEmulator(emulator_tls, mode="pending").start()
    yield emulator
    emulator.stop()


def test_rate_limit_keeps_requests_inside_the_cas_window(
    boot: Bootstrapped, digicert: DigiCertEmulator, emulator_tls: TlsIdentity
) -> None:
    form = DigiCertForm(
        name="DigiCert limited",
        api_base_url=digicert.base_url,
        api_key=SecretStr(digicert.api_key),
        organization_id=digicert.organization_id,
        advanced=AdvancedOptions(
            tls_ca_bundle=emulator_tls.ca_pem, timeout_s=10, rate_limit_per_second=RATE, rate_limit_burst=BURST
        ),
    )
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="test")
    with session_scope() as s:  # one pending order to ask about
        ca = build_remote_ca(StoredConnector.of(repo.get(s, CAConnector, connector_id)))
    csr = csr_to_pem(build_csr(generate_private_key(KeySpec.parse("ec-p256")), "rate.example.test"))
    order_id = ca.issue(IssueRequest(csr_pem=csr, idempotency_key="rate-1")).ca_order_id
    assert order_id is not None
    digicert.faults.requests = 0

    digicert.faults.window = WINDOW
    assert burst(connector_id, order_id, limited=True) == CALLS_PER_TASK * TASKS
    assert digicert.faults.burst_violations == 0
    assert digicert.faults.requests == CALLS_PER_TASK * TASKS

    # The same load without the limit overruns the window: the check above can fail.
    with pytest.raises(Exception, match="rate limiting"):
        burst(connector_id, order_id, limited=False)
    assert digicert.faults.burst_violations > 0
