"""The CA accepts an order and certfleet dies (or loses the answer) before recording it: the retry reconciles with
the CA and orders nothing twice, for emSign, AD CS and ACME.

Two faults per CA: the answer lost on the wire after the CA took the order (the emulator or a proxy creates the
order, then answers 502), and the worker dying right after the CA answered, before the journal recorded the
order (the journal's `placed` raises once). The retry runs with the same journal, as the flow's retry does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import SecretStr

from certfleet.ca_admin.forms import AcmeForm, ADCSForm, AdvancedOptions, EmSignForm
from certfleet.ca_admin.runtime import RuntimeHooks, build_remote_ca
from certfleet.connectors.base import IssueRequest
from certfleet.connectors.ca.acme import MemoryAccountStore
from certfleet.connectors.ca.common import leaf_serial
from certfleet.connectors.ca.journal import MemoryOrderJournal
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures
from tests.emulators.fixtures import EAB_KID, AcmeStack, stored
from tests.emulators.pki import TlsIdentity
from tests.emulators.server import Faults


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


# -- ACME (Pebble behind the fault proxy) -----------------------------------------------------------------


def _acme(stack: AcmeStack, tls: TlsIdentity, journal: MemoryOrderJournal, accounts: MemoryAccountStore):  # type: ignore[no-untyped-def]
    form = AcmeForm(
        name="acme",
        directory_url=stack.proxy.directory_url,
        eab_key_id=EAB_KID,
        eab_hmac_key=SecretStr(stack.eab_hmac),
        http01_listen=f"127.0.0.1:{stack.http_port}",
        advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem),
    )
    return build_remote_ca(stored(form), RuntimeHooks(journal=journal, acme_accounts=accounts))


@pytest.fixture
def acme_stack(acme_http_stack: AcmeStack) -> AcmeStack:
    acme_http_stack.reset()
    return acme_http_stack


def test_acme_new_order_answer_lost(acme_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    journal, accounts = MemoryOrderJournal(), MemoryAccountStore()
    request = _request("lost.example.test")
    _acme(acme_stack, emulator_tls, journal, accounts).check_credentials()  # the account exists beforehand
    acme_stack.proxy.lose_order_answers = 1  # Pebble creates the order; certfleet gets a 502
    with pytest.raises(TransientConnectorError, match="502"):
        _acme(acme_stack, emulator_tls, journal, accounts).issue(request)
    assert acme_stack.proxy.orders_placed == 1
    assert journal.orders == {}
    result = _acme(acme_stack, emulator_tls, journal, accounts).issue(request)
    assert acme_stack.proxy.orders_placed == 1  # the account's orders list gave the order back
    assert result.issued
    assert result.ca_order_id == journal.orders[request.idempotency_key]


def test_acme_worker_dies_after_new_order(acme_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    journal, accounts = DiesBeforeRecording(), MemoryAccountStore()
    request = _request("died.example.test")
    other = _request("other.example.test", key="cert-2-gen-1")  # another order of the account, other names
    assert _acme(acme_stack, emulator_tls, MemoryOrderJournal(), accounts).issue(other).issued
    with pytest.raises(WorkerDied):
        _acme(acme_stack, emulator_tls, journal, accounts).issue(request)
    assert acme_stack.proxy.orders_placed == 2
    result = _acme(acme_stack, emulator_tls, journal, accounts).issue(request)
    assert acme_stack.proxy.orders_placed == 2
    assert result.pem_chain is not None
    leaf = x509.load_pem_x509_certificate(result.pem_chain.encode())
    assert leaf.public_key() == x509.load_pem_x509_csr(request.csr_pem.encode()).public_key()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["died.example.test"]


def test_acme_with_nothing_to_reconcile_orders_once(acme_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    """An earlier attempt that failed before the CA took anything (a 503 on newOrder): one new order."""
    journal, accounts = MemoryOrderJournal(), MemoryAccountStore()
    request = _request("fresh.example.test")
    ca = _acme(acme_stack, emulator_tls, journal, accounts)
    ca.check_credentials()
    acme_stack.proxy.faults = Faults(queue=["503"], applies_to=lambda r: r.path.startswith("/order-plz"))
    with pytest.raises(TransientConnectorError):
        ca.issue(request)
    assert _acme(acme_stack, emulator_tls, journal, accounts).issue(request).issued
    assert acme_stack.proxy.orders_placed == 1


# -- AD CS -----------------------------------------------------------------------------------------------


def _adcs(em: ADCSEmulator, tls: TlsIdentity, journal: MemoryOrderJournal, template: str = "WebServer"):  # type: ignore[no-untyped-def]
    form = ADCSForm(
        name="adcs",
        base_url=em.base_url,
        username=em.login,
        password=SecretStr(em.password),
        ca_setup_type="Enterprise CA" if em.setup == "enterprise" else "Standalone CA",
        template=template if em.setup == "enterprise" else None,
        advanced=_adv(tls),
    )
    return build_remote_ca(stored(form), RuntimeHooks(journal=journal))


def _key_of(pem_chain: str | None) -> object:
    assert pem_chain is not None
    return x509.load_pem_x509_certificate(pem_chain.encode()).public_key()


def test_adcs_worker_dies_after_the_request_was_issued(adcs_emulator: ADCSEmulator, emulator_tls: TlsIdentity) -> None:
    journal = DiesBeforeRecording(deaths=0)
    earlier = _adcs(adcs_emulator, emulator_tls, journal).issue(_request("earlier.example.test", key="cert-9-gen-1"))
    assert earlier.issued  # certfleet knows request 1
    journal.deaths = 1
    request = _request()
    with pytest.raises(WorkerDied):
        _adcs(adcs_emulator, emulator_tls, journal).issue(request)
    assert journal.refs[request.idempotency_key] == f"after:{earlier.ca_order_id}"
    # Someone else's request lands after ours, before the retry.
    _adcs(adcs_emulator, emulator_tls, MemoryOrderJournal()).issue(_request("someone.example.test", key="x"))
    assert adcs_emulator.placed == 3
    result = _adcs(adcs_emulator, emulator_tls, journal).issue(request)
    assert adcs_emulator.placed == 3
    ours = adcs_emulator.requests[int(result.ca_order_id or 0)]
    assert ours.csr_pem == request.csr_pem
    assert _key_of(result.pem_chain) == x509.load_pem_x509_csr(request.csr_pem.encode()).public_key()
    assert journal.orders[request.idempotency_key] == result.ca_order_id


def test_adcs_first_submission_answer_lost(adcs_emulator: ADCSEmulator, emulator_tls: TlsIdentity) -> None:
    """The connector's first order: no request id known yet, the walk starts at request 1."""
    journal = MemoryOrderJournal()
    request = _request()
    adcs_emulator.lose_answers = 1
    with pytest.raises(TransientConnectorError, match="502"):
        _adcs(adcs_emulator, emulator_tls, journal).issue(request)
    assert adcs_emulator.placed == 1
    result = _adcs(adcs_emulator, emulator_tls, journal).issue(request)
    assert adcs_emulator.placed == 1
    assert result.issued
    assert _key_of(result.pem_chain) == x509.load_pem_x509_csr(request.csr_pem.encode()).public_key()


def test_adcs_pending_request_whose_answer_was_lost_is_waited_for(emulator_tls: TlsIdentity, tmp_path: Path) -> None:
    adcs = ADCSEmulator(emulator_tls, tmp_path / "adcs", setup="standalone").start()
    try:
        journal = MemoryOrderJournal()
        request = _request()
        adcs.lose_answers = 1
        with pytest.raises(TransientConnectorError, match="502"):
            _adcs(adcs, emulator_tls, journal).issue(request)
        (pending,) = adcs.requests
        with pytest.raises(TransientConnectorError, match=f"requests {pending} are pending"):
            _adcs(adcs, emulator_tls, journal).issue(request)
        assert adcs.placed == 1
        adcs.approve(pending)
        result = _adcs(adcs, emulator_tls, journal).issue(request)
        assert adcs.placed == 1
        assert result.ca_order_id == str(pending)
        assert result.issued
    finally:
        adcs.stop()


def test_adcs_denied_request_is_not_reconciled(adcs_emulator: ADCSEmulator, emulator_tls: TlsIdentity) -> None:
    """A submission AD CS answered (denied) left nothing to find: the retry submits again, once."""
    journal = MemoryOrderJournal()
    request = _request()
    with pytest.raises(PermanentConnectorError, match="not supported"):
        _adcs(adcs_emulator, emulator_tls, journal, template="NoSuchTemplate").issue(request)
    assert journal.refs[request.idempotency_key].startswith("answered:")
    assert _adcs(adcs_emulator, emulator_tls, journal).issue(request).issued
    assert adcs_emulator.placed == 2
