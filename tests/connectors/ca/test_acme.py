"""ACME beyond the contract: dns-01 through RFC 2136 on BIND, wildcards, accounts, the bot's responder."""

from __future__ import annotations

import socket

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from pydantic import SecretStr

from certfleet.ca_admin.forms import AcmeForm, AdvancedOptions
from certfleet.ca_admin.runtime import RuntimeHooks, build_remote_ca
from certfleet.connectors.base import IssueRequest
from certfleet.connectors.ca.acme import MemoryAccountStore
from certfleet.connectors.ca.acme_challenges import Http01Responder
from certfleet.connectors.ca.journal import MemoryOrderJournal
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from tests.emulators.acme_env import Named
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures
from tests.emulators.fixtures import EAB_KID, AcmeStack, stored
from tests.emulators.pki import TlsIdentity


def _request(cn: str, *sans: str, key: str = "k1") -> IssueRequest:
    csr = build_csr(generate_private_key(KeySpec.parse("ec-p256")), cn, [cn, *sans])
    return IssueRequest(csr_pem=csr_to_pem(csr), idempotency_key=key)


def _form(stack: AcmeStack, tls: TlsIdentity, **fields: object) -> AcmeForm:
    return AcmeForm(
        name="acme",
        directory_url=stack.pebble.directory_url,
        contact_email="pki@example.test",
        eab_key_id=EAB_KID,
        eab_hmac_key=SecretStr(stack.eab_hmac),
        advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem),
        **fields,  # type: ignore[arg-type]
    )


def _dns_form(stack: AcmeStack, tls: TlsIdentity, secret: str | None = None) -> AcmeForm:
    named = stack.dns
    assert isinstance(named, Named)
    return _form(
        stack,
        tls,
        challenge_type="dns-01",
        dns_server="127.0.0.1",
        dns_port=named.port,
        tsig_key_name=named.key_name,
        tsig_secret=SecretStr(secret or named.secret),
    )


def _txt(named: Named, name: str) -> list[str]:
    answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), "127.0.0.1", port=named.port, timeout=5)
    return [r.to_text() for rrset in answer.answer for r in rrset]


def test_dns01_wildcard_through_rfc2136_updates(acme_dns_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    ca = build_remote_ca(
        stored(_dns_form(acme_dns_stack, emulator_tls)), RuntimeHooks(acme_accounts=MemoryAccountStore())
    )
    result = ca.issue(_request("*.example.test", "example.test"))
    assert result.pem_chain is not None
    leaf = x509.load_pem_x509_certificate(result.pem_chain.encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert set(names) == {"*.example.test", "example.test"}
    named = acme_dns_stack.dns
    assert isinstance(named, Named)
    assert _txt(named, "_acme-challenge.example.test") == []  # the TXT records were removed afterwards


def test_dns01_with_a_wrong_tsig_key_says_so(acme_dns_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    form = _dns_form(acme_dns_stack, emulator_tls, secret="d3Jvbmcgc2VjcmV0IGtleSB3cm9uZyBzZWNyZXQga2V5IQ==")
    ca = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=MemoryAccountStore()))
    with pytest.raises(PermanentConnectorError, match="TSIG"):
        ca.issue(_request("www.example.test"))


def test_http01_on_the_bot_cannot_do_wildcards(acme_http_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    form = _form(acme_http_stack, emulator_tls, http01_listen=f"127.0.0.1:{acme_http_stack.http_port}")
    ca = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=MemoryAccountStore()))
    with pytest.raises(PermanentConnectorError, match=r"no http-01 challenge for \*\.example\.test.*need dns-01"):
        ca.issue(_request("*.example.test"))


def test_the_bots_responder_answers_during_the_order_and_then_frees_its_port(
    acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    port = acme_http_stack.http_port
    form = _form(acme_http_stack, emulator_tls, http01_listen=f"127.0.0.1:{port}")
    ca = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=MemoryAccountStore()))
    assert ca.issue(_request("a.example.test", "b.example.test")).issued
    assert ("127.0.0.1", port) not in Http01Responder._registry
    with socket.socket() as sock:  # the port is free again (TIME_WAIT of the CA's connections aside)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_one_account_per_connector(acme_http_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    store = MemoryAccountStore()
    form = _form(acme_http_stack, emulator_tls, http01_listen=f"127.0.0.1:{acme_http_stack.http_port}")
    first = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store))
    first.issue(_request("one.example.test", key="a"))
    account = store.account
    assert account is not None
    second = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store))  # another task, same connector
    second.issue(_request("two.example.test", key="b"))
    assert store.account == account
    assert second.check_credentials().endswith(account.uri)


def test_an_acme_ca_that_requires_eab_says_so(acme_http_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    form = _form(acme_http_stack, emulator_tls).model_copy(update={"eab_key_id": None, "eab_hmac_key": None})
    ca = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=MemoryAccountStore()))
    with pytest.raises(PermanentConnectorError, match="requires external account binding"):
        ca.check_credentials()


def test_an_order_the_ca_no_longer_knows_is_replaced(acme_http_stack: AcmeStack, emulator_tls: TlsIdentity) -> None:
    journal = MemoryOrderJournal()
    form = _form(acme_http_stack, emulator_tls, http01_listen=f"127.0.0.1:{acme_http_stack.http_port}")
    ca = build_remote_ca(stored(form), RuntimeHooks(journal=journal, acme_accounts=MemoryAccountStore()))
    gone = acme_http_stack.pebble.directory_url.replace("/dir", "/my-order/expired-and-purged")
    journal.placed("k-gone", gone)  # an earlier attempt's order, long expired at the CA
    result = ca.issue(_request("again.example.test", key="k-gone"))
    assert result.issued
    assert (result.validation_status, result.dcv_status) == ("Order valid", "Valid")
    assert result.ca_order_id != gone
    assert journal.orders["k-gone"] == result.ca_order_id
