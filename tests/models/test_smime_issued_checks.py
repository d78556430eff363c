"""What a CA sends for an S/MIME order is checked before it is recorded: the user's address as rfc822Name, the
emailProtection EKU and the CSR's key (certfleet.smime.rollout.record_result)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from certfleet.connectors.base import IssueResult
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.models.bootstrap import initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import SmimeOrder, SmimeStatus
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key
from certfleet.smime import rollout, service
from tests.emulators.pki import IssuingCA


def test_record_result_refuses_what_is_not_the_users_smime_certificate(database: str) -> None:
    boot = initialize()
    ca = IssuingCA("Check")
    with session_scope() as s:
        user_id = service.import_user(s, name="Ann", email="ann@example.com", designation=None, actor="t").id
        order_id = rollout.open_order(s, user_id, boot.ca_connector_id)
    with session_scope() as s:
        rollout.make_csr(s, order_id, KeySpec.parse("p256"))
        csr = s.get(SmimeOrder, order_id).csr_pem  # type: ignore[union-attr]
    assert csr is not None
    other_key = generate_private_key(KeySpec.parse("p256"))
    cases = {
        "emailProtection": ca.sign(csr, email=False),  # a TLS certificate
        "rfc822Name ann@example.com": ca.sign(csr_to_pem(build_csr(other_key, "bob", ["bob@example.com"])), email=True),
        "another key": ca.sign(csr_to_pem(build_csr(other_key, "ann", ["ann@example.com"])), email=True),
    }
    for expected, leaf in cases.items():
        chain = leaf.public_bytes(serialization.Encoding.PEM).decode() + "".join(ca.chain_pems())
        with pytest.raises(PermanentConnectorError, match=expected), session_scope() as s:
            rollout.record_result(s, order_id, IssueResult(ca_order_id="1", pem_chain=chain))
    good = ca.full_chain_pem(ca.sign(csr, email=True))
    with session_scope() as s:
        assert rollout.record_result(s, order_id, IssueResult(ca_order_id="1", pem_chain=good))
    with session_scope() as s:
        order = s.get(SmimeOrder, order_id)
        assert order is not None
        assert (order.state, order.ca_order_id) == (SmimeStatus.CERTIFICATE_ISSUED.value, "1")
