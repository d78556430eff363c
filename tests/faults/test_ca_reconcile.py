"""The CA accepts an order and certfleet dies (or loses the answer) before recording it: the retry reconciles with
the CA and orders nothing twice, for emSign, AD CS and ACME.

Two faults per CA: the answer lost on the wire after the CA took the order (the emulator or a proxy creates the
order, then answers 502), and the worker dying right after the CA answered, before the journal recorded the
order (the journal's `placed` raises once). The retry runs with the same journal, as the flow's retry does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from certfleet.ca_admin.forms import AdvancedOptions, EmSignForm
from certfleet.ca_admin.runtime import RuntimeHooks, build_remote_ca
from certfleet.connectors.base import IssueRequest
from certfleet.connectors.ca.common import leaf_serial
from certfleet.connectors.ca.journal import MemoryOrderJournal
from certfleet.connectors.errors import TransientConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures
from tests.emulators.fixtures import stored
from tests.emulators.pki import TlsIdentity


class WorkerDied(Exception):
    """Stands for the process dying: raised where the CA's answer would have been recorded."""


@dataclass
class DiesBeforeRecording(MemoryOrderJournal):
    """A journal whose first `placed` kills the attempt: the CA has the order, certfleet has no record of it."""

    deaths: int = 1

    def placed(self, idempotency_key: str, ca_order_id: str) -> None:
        if self.deaths > 0:
            self.deaths -= 1
            raise WorkerDied(f"killed after the CA answered {ca_order_id}, before it was recorded")
        super().placed(idempotency_key, ca_order_id)


def _request(cn: str = "shop.example.test", key: str = "cert-1-gen-1") -> IssueRequest:
    csr = build_csr(generate_private_key(KeySpec.parse("ec-p256")), cn, [cn])
    return IssueRequest(csr_pem=csr_to_pem(csr), idempotency_key=key)


def _adv(tls: TlsIdentity) -> AdvancedOptions:
    return AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=5)


# -- emSign ----------------------------------------------------------------------------------------------


def _emsign(em: EmSignEmulator, tls: TlsIdentity, journal: MemoryOrderJournal):  # type: ignore[no-untyped-def]
    form = EmSignForm(
        name="em",
        api_base_url=em.base_url,
        account_number=em.account_number,
        access_key=SecretStr(em.access_key),
        full_name="PKI Operations",
        email="pki@example.test",
        advanced=_adv(tls),
    )
    return build_remote_ca(stored(form), RuntimeHooks(journal=journal))


def test_emsign_worker_dies_after_the_order_was_accepted(
    emsign_emulator: EmSignEmulator, emulator_tls: TlsIdentity
) -> None:
    journal = DiesBeforeRecording()
    request = _request()
    with pytest.raises(WorkerDied):
        _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    assert emsign_emulator.placed == 1
    assert journal.orders == {}
    assert journal.refs[request.idempotency_key].startswith("txn:")  # written before the call
    # The retry (a new process: a new connector) finds the order by its remarks in GetOrderReport.
    result = _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    (order,) = emsign_emulator.orders.values()
    assert emsign_emulator.placed == 1
    assert result.ca_order_id == order.number == journal.orders[request.idempotency_key]
    assert result.pem_chain is not None
    assert order.certificate is not None
    assert leaf_serial(result.pem_chain) == order.certificate.serial_number


def test_emsign_answer_lost_and_order_not_listed_yet(
    emsign_emulator: EmSignEmulator, emulator_tls: TlsIdentity
) -> None:
    journal = MemoryOrderJournal()
    request = _request()
    emsign_emulator.lose_answers = 1  # emSign takes the order; the gateway answers 502
    emsign_emulator.hide_from_report = True  # ...and the order report does not show it yet
    with pytest.raises(TransientConnectorError, match="HTTP 502"):
        _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    # The retry sends the same transaction id again: emSign refuses it, so nothing is ordered twice.
    with pytest.raises(TransientConnectorError, match="already received this order"):
        _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    assert emsign_emulator.placed == 1
    emsign_emulator.hide_from_report = False
    result = _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    (order,) = emsign_emulator.orders.values()
    assert emsign_emulator.placed == 1
    assert result.ca_order_id == order.number
    assert result.issued


def test_emsign_refused_order_is_placed_again_with_a_new_transaction(
    emsign_emulator: EmSignEmulator, emulator_tls: TlsIdentity
) -> None:
    """A call emSign answered with an error placed nothing: the retry orders (once) with a fresh transaction id."""
    journal = MemoryOrderJournal()
    request = _request()
    emsign_emulator.faults.queue.append("429")
    with pytest.raises(TransientConnectorError, match="Inactive Account User"):
        _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    assert journal.refs[request.idempotency_key].startswith("answered:")
    result = _emsign(emsign_emulator, emulator_tls, journal).issue(request)
    assert emsign_emulator.placed == 1
    assert result.issued
