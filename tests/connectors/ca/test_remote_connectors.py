"""What each REST CA connector does beyond the shared contract, against its emulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import SecretStr

from certfleet.ca_admin.forms import ADCSForm, AdvancedOptions, DigiCertForm, EmCAForm, EmSignForm
from certfleet.ca_admin.runtime import RuntimeHooks, build_remote_ca
from certfleet.connectors.base import IssueRequest
from certfleet.connectors.ca.emca import dialect_for
from certfleet.connectors.ca.http import RateLimited
from certfleet.connectors.ca.journal import MemoryOrderJournal
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emca import EmCAEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures
from tests.emulators.fixtures import EMCA_PFX_PASSWORD, stored
from tests.emulators.pki import TlsIdentity


def _request(cn: str = "shop.example.test", *sans: str, days: int | None = None, key: str = "k1") -> IssueRequest:
    csr = build_csr(generate_private_key(KeySpec.parse("ec-p256")), cn, [cn, *sans])
    return IssueRequest(csr_pem=csr_to_pem(csr), validity_days=days, idempotency_key=key)


def _adv(tls: TlsIdentity) -> AdvancedOptions:
    return AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=5)


# -- DigiCert --------------------------------------------------------------------------------------------


def _digicert(dc: DigiCertEmulator, tls: TlsIdentity, **overrides: object):  # type: ignore[no-untyped-def]
    form = DigiCertForm(
        name="dc",
        api_base_url=dc.base_url,
        api_key=SecretStr(dc.api_key),
        organization_id=dc.organization_id,
        server_platform_id=45,
        container_id=9,
        certificate_validity=120,
        payment_type="Profile",
        advanced=_adv(tls),
    ).model_copy(update=overrides)
    return build_remote_ca(stored(form), RuntimeHooks(journal=MemoryOrderJournal()))


def test_digicert_order_carries_the_connectors_settings(
    digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity
) -> None:
    ca = _digicert(digicert_emulator, emulator_tls)
    result = ca.issue(_request("shop.example.test", "www.shop.example.test", key="order-7"))
    assert result.pem_chain is not None
    assert "\r" not in result.pem_chain
    assert result.validation_status == "Issued"
    (order,) = digicert_emulator.orders.values()
    assert order.product == "ssl_basic"
    body = order.body
    assert body["certificate"]["common_name"] == "shop.example.test"
    assert body["certificate"]["dns_names"] == ["www.shop.example.test"]
    assert body["certificate"]["server_platform"] == {"id": 45}
    assert body["container"] == {"id": 9}
    assert body["organization"] == {"id": digicert_emulator.organization_id}
    assert body["order_validity"] == {"days": 120}  # the connector's Certificate Validity
    assert body["payment_method"] == "profile"
    assert body["comments"] == "certfleet-order:order-7"  # the idempotency key, for finding a lost order


def test_digicert_reports_the_orders_status_as_validation_status(
    digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity
) -> None:
    digicert_emulator.mode = "pending"
    ca = _digicert(digicert_emulator, emulator_tls)
    pending = ca.issue(_request(key="approval-1"))
    assert (pending.issued, pending.validation_status) == (False, "Pending")
    assert pending.ca_order_id is not None
    digicert_emulator.approve(int(pending.ca_order_id))
    done = ca.status(pending.ca_order_id)
    assert (done.issued, done.validation_status) == (True, "Issued")


def test_digicert_refuses_validity_over_397_days_before_ordering(
    digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity
) -> None:
    ca = _digicert(digicert_emulator, emulator_tls)
    with pytest.raises(PermanentConnectorError, match="exceeds DigiCert's 397-day limit"):
        ca.issue(_request(days=500))
    assert digicert_emulator.placed == 0


def test_untrusted_tls_is_a_configuration_error(digicert_emulator: DigiCertEmulator, emulator_tls: TlsIdentity) -> None:
    ca = _digicert(digicert_emulator, emulator_tls, advanced=AdvancedOptions(timeout_s=5))  # system trust only
    with pytest.raises(PermanentConnectorError, match=r"not trusted.*TLS CA bundle"):
        ca.check_credentials()


# -- AD CS -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_adcs_speaks_whichever_authentication_iis_offers(emulator_tls: TlsIdentity, tmp_path: Path, auth: str) -> None:
    adcs = ADCSEmulator(emulator_tls, tmp_path, auth=auth).start()
    try:
        form = ADCSForm(
            name="adcs",
            base_url=adcs.base_url,
            ca_setup_type="Enterprise CA",
            username=adcs.login,
            password=SecretStr(adcs.password),
            template="WebServer",
            advanced=_adv(emulator_tls),
        )
        ca = build_remote_ca(stored(form))
        result = ca.issue(_request())
        assert result.issued
        assert result.ca_order_id == "1"
        assert result.validation_status == "Issued"
        bad = build_remote_ca(stored(form.model_copy(update={"password": SecretStr("wrong")})))
        with pytest.raises(PermanentConnectorError, match="rejected the credentials"):
            bad.issue(_request(key="k2"))
        assert adcs.placed == 1
    finally:
        adcs.stop()


def test_adcs_standalone_request_stays_pending_until_a_manager_approves(
    emulator_tls: TlsIdentity, tmp_path: Path
) -> None:
    adcs = ADCSEmulator(emulator_tls, tmp_path, setup="standalone").start()
    try:
        form = ADCSForm(
            name="adcs",
            base_url=adcs.base_url,
            ca_setup_type="Standalone CA",
            username=adcs.login,
            password=SecretStr(adcs.password),
            advanced=_adv(emulator_tls),
        )
        ca = build_remote_ca(stored(form))
        pending = ca.issue(_request())
        assert pending.ca_order_id
        assert not pending.issued
        assert pending.validation_status == "Pending CA manager approval"
        assert "CertificateTemplate" not in str(adcs.requests)  # a standalone CA gets no template
        assert not ca.status(pending.ca_order_id).issued
        adcs.deny(int(pending.ca_order_id), "the CA manager: host name not registered")
        with pytest.raises(PermanentConnectorError, match="host name not registered"):
            ca.status(pending.ca_order_id)
    finally:
        adcs.stop()


# -- emSign ----------------------------------------------------------------------------------------------


def _emsign(em: EmSignEmulator, tls: TlsIdentity):  # type: ignore[no-untyped-def]
    form = EmSignForm(
        name="em",
        api_base_url=em.base_url,
        account_number=em.account_number,
        access_key=SecretStr(em.access_key),
        full_name="PKI Operations",
        email="pki@example.test",
        advanced=_adv(tls),
    )
    return build_remote_ca(stored(form), RuntimeHooks(journal=MemoryOrderJournal()))


def test_emsign_tracks_dcv_until_the_order_is_fulfilled(
    emsign_emulator: EmSignEmulator, emulator_tls: TlsIdentity
) -> None:
    emsign_emulator.mode = "pending"
    ca = _emsign(emsign_emulator, emulator_tls)
    pending = ca.issue(_request("shop.example.test", "api.example.test"))
    assert (pending.issued, pending.dcv_status) == (False, "Pending")
    assert pending.validation_status in ("Placed", "Accepted", "In progress")
    (order,) = emsign_emulator.orders.values()
    assert order.details["certificateInformation"] == {
        "domainName": "shop.example.test",
        "additionalDomains": ["api.example.test"],
        "autoSecureWWW": "0",
    }
    assert order.details["requestorInformation"] == {
        "requestorName": "PKI Operations",
        "requestorEmail": "pki@example.test",
    }
    emsign_emulator.verify(order.number)
    done = ca.status(order.number)
    assert (done.issued, done.dcv_status, done.validation_status) == (True, "Verified", "Fulfilled")
    # Every call was signed with a fresh transaction id (the emulator refuses a reused one).
    assert emsign_emulator.auth_failures == 0
    assert len(emsign_emulator.seen_txns) == 4


def test_emsign_http_200_errors_become_errors(emsign_emulator: EmSignEmulator, emulator_tls: TlsIdentity) -> None:
    ca = _emsign(emsign_emulator, emulator_tls)
    emsign_emulator.faults.queue.append("429")  # the burst limit, worded as emSign words it
    with pytest.raises(RateLimited, match="Inactive Account User"):
        ca.issue(_request())
    with pytest.raises(PermanentConnectorError, match="EMS-1201 Order not found"):
        ca.status("999")
    with pytest.raises(PermanentConnectorError, match="no emSign order for serial"):
        ca.revoke(12345, x509.ReasonFlags.key_compromise)


# -- emCA ------------------------------------------------------------------------------------------------


def test_emca_logs_in_again_when_the_token_expires(
    emulator_tls: TlsIdentity, emca_client_file: tuple[bytes, object]
) -> None:
    emca = EmCAEmulator(emulator_tls, emca_client_file[1], version="4.3.1", password=EMCA_PFX_PASSWORD).start()  # type: ignore[arg-type]
    try:
        form = EmCAForm(
            name="emca",
            version="4.3.1",
            base_url=emca.base_url,
            username=emca.username,
            issuing_ca=emca.issuing_ca,
            subscriber_id=emca.subscriber_id,
            password=SecretStr(EMCA_PFX_PASSWORD),
            uploaded_file=emca_client_file[0],
            advanced=_adv(emulator_tls),
        )
        ca = build_remote_ca(stored(form))
        first = ca.issue(_request(key="a"))
        assert (first.issued, first.validation_status) == (True, "Authorised")
        assert emca.tokens_issued == 1  # one login serves many calls
        emca.expire_tokens()
        time.sleep(1.1)
        assert ca.issue(_request(key="b")).issued
        assert emca.tokens_issued == 2
        # A 5.x server takes the token in X-Emca-Api-Key: a 4.3.1 client is refused there.
        emca.version = "5"
        with pytest.raises(PermanentConnectorError, match="rejected the login token"):
            ca.issue(_request(key="c"))
    finally:
        emca.stop()


@pytest.mark.parametrize(("version", "dialect"), [("4.3.1", "4.3.1"), ("v5.0.0", "5"), ("5", "5"), ("5.1", "5")])
def test_emca_versions_select_the_dialect(version: str, dialect: str) -> None:
    assert dialect_for(version) == dialect


@pytest.mark.parametrize("version", ["4.2.6", "4.0.17", "6.0", "latest"])
def test_emca_unsupported_versions_say_what_is_supported(version: str) -> None:
    with pytest.raises(PermanentConnectorError, match=r"supports emCA 4\.3\.1 and 5\.x .* 4\.2\.x and older"):
        dialect_for(version)


def test_der_certificates_with_crlf_bytes_are_read_intact() -> None:
    """CAs send DER (emCA, AD CS p7b): CR LF bytes inside binary data must not be "normalised" away."""
    from cryptography.hazmat.primitives import serialization

    from certfleet.connectors.ca.common import pem_chain_from
    from tests.emulators.pki import IssuingCA

    ca = IssuingCA("CRLF")
    csr = csr_to_pem(build_csr(generate_private_key(KeySpec.parse("ec-p256")), "crlf.example.test"))
    while b"\r\n" not in (der := ca.sign(csr).public_bytes(serialization.Encoding.DER)):
        pass
    pem = pem_chain_from(der, ca="test")
    assert x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER) == der
