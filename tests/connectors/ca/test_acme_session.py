"""One ACME session per connector and account in a process: what a batch of orders sends to the CA.

Counted on the wire by the fault proxy in front of Pebble (real http-01 validation): the directory is fetched
once for many orders and threads, nonces come from the answers, an order is finalized as soon as its
authorizations are valid, and a failed call makes the next order start a new session.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from certfleet.ca_admin.forms import AcmeForm, AdvancedOptions
from certfleet.ca_admin.runtime import RuntimeHooks, build_remote_ca
from certfleet.connectors.base import IssueRequest
from certfleet.connectors.ca.acme import MemoryAccountStore
from certfleet.connectors.errors import TransientConnectorError
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures
from tests.emulators.fixtures import EAB_KID, AcmeStack, stored
from tests.emulators.pki import TlsIdentity
from tests.emulators.server import Faults


def _request(cn: str, key: str) -> IssueRequest:
    csr = build_csr(generate_private_key(KeySpec.parse("ec-p256")), cn, [cn])
    return IssueRequest(csr_pem=csr_to_pem(csr), idempotency_key=key)


def _form(stack: AcmeStack, tls: TlsIdentity) -> AcmeForm:
    from pydantic import SecretStr

    return AcmeForm(
        name="acme",
        directory_url=stack.proxy.directory_url,
        eab_key_id=EAB_KID,
        eab_hmac_key=SecretStr(stack.eab_hmac),
        http01_listen=f"127.0.0.1:{stack.http_port}",
        advanced=AdvancedOptions(tls_ca_bundle=tls.ca_pem),
    )


def _sent(stack: AcmeStack) -> Counter[str]:
    """Requests per kind of ACME resource: the path's first segment (`dir`, `nonce-plz`, `order-plz`, ...)."""
    return Counter(f"{method} {path.split('/')[1]}" for method, path, _ in stack.proxy.log)


def test_orders_of_one_connector_share_the_directory_nonces_and_account(
    acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    acme_http_stack.reset()
    acme_http_stack.proxy.log.clear()
    store = MemoryAccountStore()
    form = _form(acme_http_stack, emulator_tls)
    # Each order builds its connector, as each task of a batch does (build_ca per certificate).
    for n in range(3):
        ca = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store))
        assert ca.issue(_request(f"seq-{n}.example.test", f"seq-{n}")).issued
    sent = _sent(acme_http_stack)
    assert sent["GET dir"] == 1
    assert sent["HEAD nonce-plz"] == 1  # the first request's; later ones sign with the nonce of an answer
    assert sent["POST sign-me-up"] == 1
    assert sent["POST order-plz"] == 3

    # Eight threads at once share the same session: no second directory, every order placed once.
    def issue(n: int) -> bool:
        ca = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store))
        return ca.issue(_request(f"par-{n}.example.test", f"par-{n}")).issued

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(issue, range(16)))
    sent = _sent(acme_http_stack)
    assert sent["GET dir"] == 1
    assert sent["POST order-plz"] == 3 + 16
    assert sent["POST sign-me-up"] == 1


def test_an_order_is_finalized_once_its_authorizations_are_valid(
    acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    acme_http_stack.reset()
    ca = build_remote_ca(stored(_form(acme_http_stack, emulator_tls)), RuntimeHooks(acme_accounts=MemoryAccountStore()))
    ca.check_credentials()
    acme_http_stack.proxy.log.clear()
    assert ca.issue(_request("final.example.test", "final")).issued
    kinds = [path.split("/")[1] for _, path, _ in acme_http_stack.proxy.log]
    at = kinds.index("finalize-order")
    assert kinds[at - 1] == "authZ"  # the poll that saw the authorization valid; no poll of the order for "ready"
    assert "my-order" not in kinds[:at]


def test_a_failed_call_makes_the_next_order_fetch_the_directory_again(
    acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    acme_http_stack.reset()
    store = MemoryAccountStore()
    form = _form(acme_http_stack, emulator_tls)
    build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store)).check_credentials()
    acme_http_stack.proxy.log.clear()
    acme_http_stack.proxy.faults = Faults(queue=["503"], applies_to=lambda r: r.path.startswith("/order-plz"))
    with pytest.raises(TransientConnectorError):
        build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store)).issue(_request("f.example.test", "f1"))
    assert _sent(acme_http_stack)["GET dir"] == 0  # the session check_credentials made was used
    again = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store))
    assert again.issue(_request("f.example.test", "f2")).issued
    assert _sent(acme_http_stack)["GET dir"] == 1


def test_a_rate_limited_connector_never_sends_through_an_unlimited_session(
    acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    acme_http_stack.reset()
    store = MemoryAccountStore()
    form = _form(acme_http_stack, emulator_tls)
    unlimited = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store))
    assert unlimited.issue(_request("u.example.test", "u")).issued
    slots: list[int] = []
    limited = build_remote_ca(stored(form), RuntimeHooks(acme_accounts=store, throttle=lambda: slots.append(1)))
    acme_http_stack.proxy.log.clear()
    assert limited.issue(_request("l.example.test", "l")).issued
    assert len(slots) == len(acme_http_stack.proxy.log) > 0  # every request it sent took a slot first
