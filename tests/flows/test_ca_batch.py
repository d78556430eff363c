"""A batch of 50 orders against a CA that answers 429 every few requests: exactly 50 orders, none twice.

The DigiCert emulator refuses every 5th request with 429 and also enforces a rolling window (as CertCentral
does with 100 requests / 5 s); the connector's Prefect rate limit must keep the batch inside that window,
and the retries must never turn a refused or repeated request into a second order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr
from sqlalchemy import func, select

from certfleet.ca_admin import service
from certfleet.ca_admin.forms import AdvancedOptions, DigiCertForm
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, CertificateStatus, Order, OrderState
from certfleet.tasks.ca_runtime import limit_name
from certfleet.tasks.issuance import create_order, poll_order, record_issued, submit_order
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.pki import TlsIdentity

BATCH = 50
RATE, BURST = 20.0, 10  # the connector's rate limit: 20 requests/s, bursts of 10
WINDOW = (60, 1.0)  # the CA refuses more than 60 requests in any second: 2x what the limit can let through


@flow(name="test-issue-batch", task_runner=ThreadPoolTaskRunner(max_workers=8))
def issue_batch(certificate_ids: list[int]) -> dict[int, str]:
    """One certificate-step per task, mapped like a batch rotation; a task that gives up stays failed."""
    order_ids = create_order.map(certificate_ids).result()
    submitted = submit_order.map(order_ids)
    submitted.wait()
    issued, pending = [], []
    for order_id, future in zip(order_ids, submitted, strict=True):
        if future.state.is_completed():
            (issued if future.result() else pending).append(order_id)
    polled = poll_order.map(pending)
    polled.wait()
    issued += [o for o, f in zip(pending, polled, strict=True) if f.state.is_completed()]
    recorded = record_issued.map(issued)
    recorded.wait()
    return {o: str(f.state.name) for o, f in zip(issued, recorded, strict=True)}


@pytest.fixture
def digicert(emulator_tls: TlsIdentity) -> Iterator[DigiCertEmulator]:
    emulator = DigiCertEmulator(emulator_tls, mode="pending", auto_approve_after=1).start()
    emulator.faults.every_nth_429 = 5
    emulator.faults.window = WINDOW
    yield emulator
    emulator.stop()


def _not_issued(ids: list[int]) -> list[int]:
    with session_scope() as s:
        rows = s.scalars(select(Certificate).where(Certificate.id.in_(ids)))
        return sorted(c.id for c in rows if c.status is not CertificateStatus.ISSUED)


def test_fifty_orders_with_429s_place_exactly_fifty(
    boot: Bootstrapped, digicert: DigiCertEmulator, emulator_tls: TlsIdentity
) -> None:
    form = DigiCertForm(
        name="DigiCert batch",
        api_base_url=digicert.base_url,
        api_key=SecretStr(digicert.api_key),
        organization_id=digicert.organization_id,
        certificate_validity=90,
        advanced=AdvancedOptions(
            tls_ca_bundle=emulator_tls.ca_pem, timeout_s=10, rate_limit_per_second=RATE, rate_limit_burst=BURST
        ),
    )
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="test")
        certs = [
            Certificate(
                common_name=f"batch-{n:02d}.example.test",
                sans=[f"batch-{n:02d}.example.test"],
                ca_connector_id=connector_id,
                key_spec="ec-p256",
                validity_days=90,
                batch_name="batch-50",
            )
            for n in range(BATCH)
        ]
        s.add_all(certs)
        s.flush()
        ids = [c.id for c in certs]

    # An operator re-runs a batch until everything is issued; a re-run reuses the orders under way.
    for _ in range(3):
        remaining = _not_issued(ids)
        if not remaining:
            break
        issue_batch(remaining)
    assert _not_issued(ids) == []

    # On the CA's side: exactly one order per certificate, none twice.
    assert digicert.placed == BATCH
    assert digicert.duplicates == 0
    per_name = Counter(o.body["certificate"]["common_name"] for o in digicert.orders.values())
    assert set(per_name.values()) == {1}
    assert len(per_name) == BATCH
    # The 429s happened, and the rate limit kept the batch inside the CA's window.
    assert digicert.faults.refused_429 >= 10
    assert digicert.faults.burst_violations == 0

    with session_scope() as s:
        orders = list(s.scalars(select(Order).where(Order.certificate_id.in_(ids))))
        assert len(orders) == BATCH
        assert {o.state for o in orders} == {OrderState.ISSUED}
        assert len({o.ca_order_id for o in orders}) == BATCH
        assert (
            s.scalar(
                select(func.count())
                .select_from(Certificate)
                .where(Certificate.ca_order_id.is_(None), Certificate.id.in_(ids))
            )
            == 0
        )

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name(connector_id))
    assert (limit.limit, limit.slot_decay_per_second) == (BURST, RATE)
